"""Masking of sensitive values in everything that leaves a step: log lines, artifacts, errors.

A secret rarely leaks verbatim only: scripts base64 it into an ``Authorization`` header, URL-encode it
into a connection string, JSON-escape it into a payload, hex-dump it (``xxd -p``, ``od``, a digest tool's
input echoed back), or print a multi-line key line by line. The
masker therefore also knows those forms of each value, and masks them with ``********``.

Like Octopus, values of 3 characters or fewer are not masked (masking every ``yes`` or ``123`` in a log
would destroy it and reveal more than it hides). This module uses only the standard library: it runs
inside Prefect's logging handlers, on every line.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "********"
MIN_LENGTH = 4  # values (and encoded forms) shorter than this are not masked
_MIN_SHIFTED_BASE64 = 6  # shorter cores of a secret inside a longer base64 blob would mask random text


def _base64_forms(data: bytes) -> set[str]:
    """The base64 texts that can reveal ``data``.

    Whole-value encodings (standard/urlsafe, with and without padding), plus — for a secret embedded in
    a longer encoded string such as ``base64("user:" + password)`` — the characters that depend only on
    the secret at each of the three byte alignments.
    """
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(data).decode("ascii")
        forms.update({whole, whole.rstrip("=")})
        for shift in range(3):
            encoded = encode(b"\0" * shift + data).decode("ascii").rstrip("=")
            first = -(-8 * shift // 6)  # first character free of the prefix bits
            last = 8 * (shift + len(data)) // 6  # characters after this mix in whatever follows
            core = encoded[first:last]
            if len(core) >= _MIN_SHIFTED_BASE64:
                forms.add(core)
    return forms


def encoded_forms(value: str) -> set[str]:
    """Every text form of ``value`` the masker looks for (including ``value`` itself)."""
    forms = {value, value.strip()}
    if "\n" in value or "\r" in value:
        forms.update(line.strip("\r") for line in value.split("\n"))
        forms.update(line.strip() for line in re.split(r"\r\n|\r|\n", value))
    for text in list(forms):
        if len(text) < MIN_LENGTH:
            continue
        forms.update(_base64_forms(text.encode("utf-8")))
        forms.update({quote(text), quote(text, safe=""), quote_plus(text), quote_plus(text, safe="")})
        forms.update({json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]})
        hexed = text.encode("utf-8").hex()  # byte-aligned, so a secret inside a longer hex dump matches too
        forms.update({hexed, hexed.upper()})
    return {form for form in forms if len(form) >= MIN_LENGTH}


def _trie_regex(forms: Iterable[str]) -> str:
    """One regex for all forms, factored as a prefix trie.

    Equivalent to a longest-first alternation (at each node the longer continuation is tried first,
    and sibling branches start with different characters), but a line without secrets costs about one
    character test per position instead of one per form.
    """
    trie: dict[str, dict] = {}
    for form in forms:
        node = trie
        for ch in form:
            node = node.setdefault(ch, {})
        node[""] = {}  # end of a form

    def build(node: dict[str, dict]) -> str:
        branches = []
        for ch in sorted(k for k in node if k):
            child, literal = node[ch], re.escape(ch)
            while len(child) == 1 and "" not in child:  # compress single-child chains into one literal
                (nxt, child), = child.items()
                literal += re.escape(nxt)
            branches.append(literal + build(child))
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


def _compile(forms: set[str]) -> re.Pattern[str] | None:
    if not forms:
        return None
    try:
        return re.compile(_trie_regex(forms))
    except (RecursionError, re.error, OverflowError):  # pathological nesting: plain alternation
        return re.compile("|".join(re.escape(f) for f in sorted(forms, key=lambda f: (-len(f), f))))


class Masker:
    """Replaces sensitive values, and their common encodings, with ``********``.

    One compiled regex (a longest-first alternation, factored as a trie) is rebuilt lazily after values
    are added, so ``mask`` on a line without secrets is a single regex scan. Overlapping secrets are
    masked as one run, so no part of either survives.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._dirty = False
        self._lock = threading.Lock()
        for value in values:
            self.add(value)

    def add(self, value: str) -> None:
        """Register one more sensitive value (ignored if 3 characters or fewer)."""
        if not isinstance(value, str) or len(value) < MIN_LENGTH or value in self._values:
            return
        with self._lock:
            self._values.add(value)
            self._forms.update(encoded_forms(value))
            self._dirty = True

    def _compiled(self) -> re.Pattern[str] | None:
        if self._dirty:
            with self._lock:
                if self._dirty:
                    self._pattern = _compile(self._forms)
                    self._dirty = False
        return self._pattern

    def mask(self, text: str) -> str:
        """``text`` with every occurrence of every sensitive form replaced by ``********``."""
        pattern = self._compiled()
        if pattern is None or not text:
            return text
        match = pattern.search(text)
        if match is None:
            return text
        # Collect the longest match starting at *every* position (not just non-overlapping ones) and merge
        # the spans: with secrets "abcd" and "cdef", "abcdef" must not come out as "********ef".
        spans: list[list[int]] = []
        while match is not None:
            start, end = match.span()
            if spans and start <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
            match = pattern.search(text, start + 1)
        out, pos = [], 0
        for start, end in spans:
            out.append(text[pos:start])
            out.append(MASK)
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def mask_obj(self, obj: Any) -> Any:
        """A copy of ``obj`` with every string inside dicts, lists and tuples masked (keys included)."""
        if isinstance(obj, str):
            return self.mask(obj)
        if isinstance(obj, dict):
            return {self.mask_obj(k): self.mask_obj(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.mask_obj(item) for item in obj]
        if isinstance(obj, tuple):
            return tuple(self.mask_obj(item) for item in obj)
        return obj


class MaskingFilter(logging.Filter):
    """Masks a record before any handler formats it: message with its args, traceback, stack info.

    Attach it to *handlers* (records propagated from child loggers skip the parents' logger filters).
    The traceback is rendered here and ``exc_info`` cleared, because some formatters (Prefect's JSON
    formatter, for one) render ``exc_info`` themselves and would bypass ``exc_text``.
    """

    _formatter = logging.Formatter()

    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        masker = self.masker
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must not turn into an exception at the call site
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = masker.mask(message), None
        if "message" in record.__dict__:
            record.message = record.msg
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        record.exc_info = None
        if record.exc_text:
            record.exc_text = masker.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = masker.mask(record.stack_info)
        return True


def install_masking_filter(
    masker: Masker,
    logger_names: Iterable[str] = ("prefect", "prefect.flow_runs", "prefect.task_runs", ""),
) -> Callable[[], None]:
    """Attach one MaskingFilter to every handler of the named loggers (``""`` is the root logger).

    Returns a callable that removes exactly the filters added here. Handlers added to those loggers
    later are not covered: call this after Prefect has configured logging.
    """
    masking = MaskingFilter(masker)
    touched: list[logging.Handler] = []
    for name in logger_names:
        logger = logging.getLogger(name) if name else logging.getLogger()
        for handler in logger.handlers:
            if handler not in touched:
                handler.addFilter(masking)
                touched.append(handler)

    def remove() -> None:
        for handler in touched:
            handler.removeFilter(masking)
        touched.clear()

    return remove
