"""Octopus-compatible ("Octostache") ``#{...}`` variable substitution, evaluated by Jinja2's sandbox.

Why a translation rather than an interpreter: the template is tokenized and parsed here, then compiled to Jinja
source in which every piece of user text (literal text, variable names, quoted filter arguments) is a constant
handed in as data, never Jinja syntax.  Jinja's ``ImmutableSandboxedEnvironment`` does the evaluation (output,
``if``/``for`` blocks with their ``loop`` specials, filter calls, ``calc`` arithmetic), so a template can neither
reach Python objects (``#{__class__}`` is just a variable name) nor be read as Jinja (``{{``, ``{%``, ``{#``
are ordinary characters).  Variable values may themselves hold ``#{...}`` and are evaluated recursively, once
per render; what a substitution outputs is never scanned again.

Octopus behaviour followed (docs "Variable substitutions" / "Variable filters", OctopusDeploy/Octostache):
names are case-insensitive; ``##{`` escapes (pairs of ``#`` before ``{`` collapse to one); filters are
case-insensitive and chain left to right; ``#{if}``/``#{unless}``/``#{else}``, ``==``/``!=`` between variables
and quoted literals; ``#{each}`` over comma lists and over ``Name[index]...`` groups with
``Octopus.Template.Each.Index|First|Last``; ``#{calc}``; ``.NET`` ``Format`` strings in the en-US culture.
Deliberate differences: strict mode (``render``); an unknown filter name is an error, not echoed; filters inside
``#{if}`` are an error, not silently false; JSON values are not parsed; Markdown, UriPart, Version*, hash and
Indent filters are not implemented (named as such in the error).
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Any
from urllib.parse import quote

from jinja2 import StrictUndefined, Template, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from snapshots.errors import TemplateError

__all__ = ["VariableTable", "canonical_name", "escape", "evaluate_condition", "is_truthy", "referenced_names",
           "render", "variable_key"]

_MAX_NESTING = 32  # values referring to values referring to ... deeper than this is a mistake, not a design
_EACH_SPECIALS = {
    "octopus.template.each.index": "(loop.index0 ~ '')",
    "octopus.template.each.first": "('True' if loop.first else 'False')",
    "octopus.template.each.last": "('True' if loop.last else 'False')",
}
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_IN = re.compile(r"\s+in\s+", re.IGNORECASE)
# Octopus filters ferry knows of but does not implement: named so the error says "not supported", not "unknown".
_UNSUPPORTED = {
    "markdown", "markdowntohtml", "uripart", "indent", "md5", "sha1", "sha256", "sha384", "sha512",
    "versionmajor", "versionminor", "versionpatch", "versionrevision", "versionprerelease",
    "versionprereleaseprefix", "versionprereleasecounter", "versionmetadata",
}


# ----------------------------------------------------------------------------------------------- public API


def render(template: str, variables: Mapping[str, str], *, where: str = "", strict: bool = True,
           warnings: list[str] | None = None) -> str:
    """Substitute ``#{...}`` in ``template``.

    ``where`` names the template's origin (``"step 'Smoke test' field url"``, ``"web.config"``) and starts every
    error and warning.  ``strict=True`` raises ``TemplateError`` for an unknown variable, for a filter that cannot
    apply (``Substring 99`` on a short value) and for a ``#{`` that is not a valid token.  ``strict=False`` follows
    Octopus: an unknown variable renders as an empty string, the other two are echoed as written, and each case
    appends a message to ``warnings``.  Malformed blocks, unknown filter names and cycles always raise.
    """
    return _Runtime(variables, strict=strict, warnings=warnings, where=where).run(template)


def referenced_names(template: str, *, include_optional: bool = False) -> set[str]:
    """Names a strict ``render`` needs defined, as written, so a release can be validated before it deploys.

    Left out: names relative to an ``#{each}`` item, the ``Octopus.Template.Each.*`` specials inside a loop and
    names only known at render time (``Server[#{Region}]`` contributes ``Region``).  Names that are merely tested
    by ``#{if}``/``#{unless}`` or iterated by ``#{each}`` may legitimately be undefined; they are included only
    with ``include_optional=True``.
    """
    try:
        nodes = _compile(template).nodes
    except _CompileError as exc:
        raise _Runtime({}, strict=True, warnings=None, where="").error(exc.tok, exc.message) from None
    required: set[str] = set()
    optional: set[str] = set()
    _collect_names(nodes, (), required, optional)
    return required | optional if include_optional else required


def is_truthy(value: str | None) -> bool:
    """Octopus truthiness: undefined, empty, ``False``, ``No`` and ``0`` (any case, surrounding blanks) are false."""
    if value is None:
        return False
    return value.strip().lower() not in ("", "false", "no", "0")


def evaluate_condition(expression: str, variables: Mapping[str, str], *, where: str = "",
                       warnings: list[str] | None = None) -> bool:
    """Evaluate a run condition such as ``#{if Octopus.Deployment.Error}true#{/if}``, ``#{Foo}`` or
    ``#{Foo == "bar"}``; the result is ``is_truthy`` of the rendered text.

    As in Octopus, an unknown variable counts as empty (a condition is how one tests for it), noted in
    ``warnings``; syntax errors and unknown filters still raise ``TemplateError``.
    """
    text = expression.strip()
    if text.startswith("#{") and _find_close(text, 0, len(text)) == len(text) - 1:
        inner = text[2:-1]
        if (not re.match(r"\s*(?:if|unless|each|calc)\s", inner, re.IGNORECASE)
                and _find_comparison(inner, 0, len(inner)) is not None):
            text = f"#{{if {inner}}}True#{{/if}}"
    runtime = _Runtime(variables, strict=True, warnings=warnings, where=where, unknown_is_empty=True)
    return is_truthy(runtime.run(text))


def escape(text: str) -> str:
    """Return a template that renders to exactly ``text``: each run of ``#`` before ``{`` is doubled.

    For data that must not be evaluated (a value is otherwise a template itself).
    """
    return re.sub(r"#+(?=\{)", lambda m: m.group(0) * 2, text)


# ------------------------------------------------------------------------------------------------ syntax tree


@dataclass(frozen=True)
class _Tok:
    """A ``#{...}`` token as written, with its 1-based position, for messages and for echoing it back."""

    text: str
    line: int
    col: int


@dataclass
class _Value:
    """``Symbol | Filter args | ...``; ``parts`` are static name text and nested values (``Server[#{Region}]``);
    ``None`` means no input (``#{ | NowDate}``)."""

    parts: tuple[str | _Value, ...] | None
    filters: list[_Filter]
    tok: int


@dataclass
class _Filter:
    name: str  # lower case: the key in _FILTERS and in the Jinja environment
    args: list[str | _Value]


@dataclass
class _Lit:
    text: str


@dataclass
class _Cond:
    left: _Lit | tuple[str | _Value, ...]
    op: str | None = None
    right: _Lit | tuple[str | _Value, ...] | None = None


@dataclass
class _Text:
    text: str


@dataclass
class _Sub:
    value: _Value


@dataclass
class _Bad:
    """Text that starts like a token but is not one: an error in strict mode, echoed otherwise."""

    tok: int
    reason: str


@dataclass
class _If:
    kw: str  # "if" or "unless"
    cond: _Cond
    tok: int
    body: list[Any] = field(default_factory=list)
    orelse: list[Any] = field(default_factory=list)


@dataclass
class _Each:
    var: str
    coll: tuple[str | _Value, ...]
    tok: int
    body: list[Any] = field(default_factory=list)
    kw: str = "each"


@dataclass
class _Calc:
    expr: tuple[Any, ...]
    tok: int


@dataclass
class _Else:
    tok: int


@dataclass
class _End:
    kw: str
    tok: int


class _CompileError(Exception):
    """A template that cannot be compiled at all (blocks, unknown filter); always reported."""

    def __init__(self, message: str, tok: _Tok) -> None:
        super().__init__(message)
        self.message, self.tok = message, tok


class _Unparsable(Exception):
    """A ``#{...}`` that is not a valid substitution; strict mode reports it, lenient mode echoes it."""


@functools.lru_cache(maxsize=65536)  # the same names are looked up in every render of a deployment
def _canon(name: str) -> str:
    """Octostache trims each step of a name: ``Foo . Bar [ x ]`` and ``Foo.Bar[x]`` are the same variable."""
    return re.sub(r"\s*([.\[\]])\s*", r"\1", name.strip())


def variable_key(name: str) -> str:
    """The key under which the engine finds ``name``: case-insensitive, blanks around ``.[]`` ignored."""
    return _canon(name).lower()


def canonical_name(name: str) -> str:
    """``name`` as the engine spells it (blanks around ``.[]`` removed, case kept)."""
    return _canon(name)


class VariableTable(Mapping[str, str]):
    """Variables keyed the way the engine looks them up (``variable_key``), read by ``render`` without copying.

    Why: turning a plain mapping into that lookup is the part of a render that grows with the number of
    variables (a deployment has thousands and renders many templates per target). Build one table per set of
    values, or subclass it, and every render with it skips the work. A name defined twice keeps its first
    spelling and its last value, as a plain mapping passed to ``render`` does.
    """

    __slots__ = ("_names", "_values")

    def __init__(self, variables: Mapping[str, str | None] | Iterable[tuple[str, str | None]] = ()) -> None:
        self._names: dict[str, str] = {}  # key -> canonical spelling (of the first definition)
        self._values: dict[str, str] = {}
        pairs = variables.items() if isinstance(variables, Mapping) else variables
        for name, raw in pairs:
            canon = _canon(name)
            key = canon.lower()
            self._names.setdefault(key, canon)
            self._values[key] = "" if raw is None else str(raw)

    def __getitem__(self, name: str) -> str:
        return self._values[variable_key(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and variable_key(name) in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._values)


def _quoted(src: str, i: int, limit: int) -> tuple[int, str] | None:
    """A ``"..."`` or ``\\"...\\"`` argument starting at ``i`` on one line: (index after it, content)."""
    nl = src.find("\n", i, limit)
    end = limit if nl == -1 else nl
    if src.startswith('\\"', i):
        j = src.find('\\"', i + 2, end)
        return (j + 2, src[i + 2:j]) if j != -1 else None
    if i < limit and src[i] == '"':
        j = src.find('"', i + 1, end)
        return (j + 1, src[i + 1:j]) if j != -1 else None
    return None


def _find_close(src: str, start: int, limit: int) -> int | None:
    """Index of the ``}`` closing the ``#{`` at ``start``, or None.  Nested tokens count, and after ``|``, ``=``
    or ``!`` quoted arguments may hold ``}`` (``Replace "[0-9]{3}" x``)."""
    quoting = [False]
    i = start + 2
    while i < limit:
        if src.startswith("#{", i):
            quoting.append(False)
            i += 2
            continue
        c = src[i]
        if c == "}":
            quoting.pop()
            if not quoting:
                return i
        elif c in "|=!":
            quoting[-1] = True
        elif quoting[-1] and (q := _quoted(src, i, limit)):
            i = q[0]
            continue
        i += 1
    return None


def _find_comparison(src: str, a: int, b: int) -> int | None:
    """Offset of the first ``==``/``!=`` in ``src[a:b]`` outside nested tokens and quotes."""
    i = a
    while i < b:
        if src.startswith("#{", i):
            j = _find_close(src, i, b)
            if j is None:
                return None
            i = j + 1
        elif q := _quoted(src, i, b):
            i = q[0]
        elif src.startswith(("==", "!="), i):
            return i
        else:
            i += 1
    return None


@dataclass
class _Frame:
    node: _If | _Each
    outer: list[Any]
    in_else: bool = False


class _Parser:
    """Tokenizer and parser for one template; positions of every token go to ``toks``."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.toks: list[_Tok] = []
        self._lines = [0] + [m.end() for m in re.finditer("\n", src)]

    def _tok(self, start: int, end: int) -> int:
        row = bisect_right(self._lines, start) - 1
        self.toks.append(_Tok(self.src[start:end], row + 1, start - self._lines[row] + 1))
        return len(self.toks) - 1

    def _lex(self) -> Iterator[tuple[str, Any, int]]:
        """Yield ("text", str, 0), ("token", start, end) and ("unclosed", start, 0)."""
        src, i, text = self.src, 0, []
        while (p := src.find("#{", i)) != -1:
            k = p
            while k > i and src[k - 1] == "#":
                k -= 1
            run = p - k + 1  # hashes in front of "{": pairs collapse to one, an odd one opens a token
            text.append(src[i:k] + "#" * (run // 2))
            if run % 2 == 0:
                text.append("{")
                i = p + 2
                continue
            yield "text", "".join(text), 0
            text = []
            close = _find_close(src, p, len(src))
            if close is None:
                yield "unclosed", p, 0
                i = p + 2
            else:
                yield "token", p, close + 1
                i = close + 1
        text.append(src[i:])
        yield "text", "".join(text), 0

    def parse(self) -> list[Any]:
        """Build the node tree, matching blocks; structural mistakes raise ``_CompileError`` with a position."""
        root: list[Any] = []
        body, stack = root, []
        for kind, a, b in self._lex():
            if kind == "text":
                if a:
                    if body and isinstance(body[-1], _Text):
                        body[-1].text += a
                    else:
                        body.append(_Text(a))
                continue
            if kind == "unclosed":
                body.append(_Bad(self._tok(a, a + 2), "'#{' is never closed by '}' (write ##{ for a literal #{)"))
                continue
            node = self._token(a, b)
            if isinstance(node, _If | _Each):
                body.append(node)
                stack.append(_Frame(node, body))
                body = node.body
            elif isinstance(node, _Else):
                if not stack or not isinstance(stack[-1].node, _If):
                    raise _CompileError("#{else} outside #{if} or #{unless}", self.toks[node.tok])
                if stack[-1].in_else:
                    raise _CompileError("a second #{else} in the same #{if}", self.toks[node.tok])
                stack[-1].in_else = True
                body = stack[-1].node.orelse  # type: ignore[union-attr]
            elif isinstance(node, _End):
                tok = self.toks[node.tok]
                if not stack:
                    raise _CompileError(f"#{{/{node.kw}}} without an opening #{{{node.kw} ...}}", tok)
                opened = stack[-1].node
                if opened.kw != node.kw:
                    at = self.toks[opened.tok]
                    raise _CompileError(f"#{{/{node.kw}}} closes {_show(at.text)} opened at line {at.line}, "
                                        f"column {at.col}; expected #{{/{opened.kw}}}", tok)
                body = stack.pop().outer
            else:
                body.append(node)
        if stack:
            opened = stack[-1].node
            raise _CompileError(f"{_show(self.toks[opened.tok].text)} is never closed (missing #{{/{opened.kw}}})",
                                self.toks[opened.tok])
        return root

    def _token(self, start: int, end: int) -> Any:
        t = self._tok(start, end)
        a, b = start + 2, end - 1
        content = self.src[a:b]
        s = content.strip()
        if not s:
            return _Text(self.src[start:end])  # "#{}" and "#{ }" are echoed, as Octostache does
        lead = a + len(content) - len(content.lstrip())
        stop = lead + len(s)
        low = s.lower()
        if low == "else":
            return _Else(t)
        if low.startswith("/"):
            m = re.fullmatch(r"/\s*(if|unless|each)", low)
            return _End(m.group(1), t) if m else _Bad(t, "unknown closing tag")
        if m := re.match(r"(if|unless)\s+", s, re.IGNORECASE):
            return _If(m.group(1).lower(), self._cond(lead + m.end(), stop, t), t)
        if m := re.match(r"each\s+", s, re.IGNORECASE):
            return self._each(lead + m.end(), stop, t)
        if m := re.match(r"calc\s+", s, re.IGNORECASE):
            return _Calc(self._calc(lead + m.end(), stop, t), t)
        try:
            return _Sub(self._value(a, b, t))
        except _Unparsable as exc:
            return _Bad(t, f"not a valid substitution: {exc} (write ##{{ for a literal #{{)")

    def _fail(self, message: str, t: int) -> _CompileError:
        return _CompileError(message, self.toks[t])

    def _value(self, a: int, b: int, t: int) -> _Value:
        src, segments, seg, i, piped = self.src, [], a, a, False
        while i < b:
            if src.startswith("#{", i):
                j = _find_close(src, i, b)
                if j is None:
                    raise _Unparsable("'#{' is never closed")
                i = j + 1
            elif src[i] == "|":
                segments.append((seg, i))
                seg, i, piped = i + 1, i + 1, True
            elif piped and (q := _quoted(src, i, b)):
                i = q[0]
            else:
                i += 1
        segments.append((seg, b))
        parts = self._symbol(*segments[0])
        filters = [self._filter(fa, fb, t) for fa, fb in segments[1:]]
        if not parts and not filters:
            raise _Unparsable("empty expression")
        return _Value(parts or None, filters, t)

    def _symbol(self, a: int, b: int) -> tuple[str | _Value, ...]:
        """A variable name: identifier characters, dots, ``[index]`` (anything but brackets) and nested tokens."""
        src, parts, buf, depth, i = self.src, [], [], 0, a
        while i < b:
            if src.startswith("#{", i):
                j = _find_close(src, i, b)
                if j is None:
                    raise _Unparsable("'#{' is never closed")
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(self._value(i + 2, j, self._tok(i, j + 1)))
                i = j + 1
                continue
            c = src[i]
            if c == "[":
                depth += 1
            elif c == "]":
                depth -= 1
                if depth < 0:
                    raise _Unparsable("']' without '['")
            elif depth == 0 and not (c.isalnum() or c.isspace() or c in "_-:/~()."):
                raise _Unparsable(f"{c!r} cannot appear in a variable name")
            buf.append(c)
            i += 1
        if depth:
            raise _Unparsable("'[' without ']'")
        if buf:
            parts.append("".join(buf))
        if all(isinstance(p, str) for p in parts):
            name = _canon("".join(parts))  # type: ignore[arg-type]
            return (name,) if name else ()
        return tuple(parts)

    def _filter(self, a: int, b: int, t: int) -> _Filter:
        src, i = self.src, a
        while i < b and src[i].isspace():
            i += 1
        j = i
        while j < b and not src[j].isspace() and not src.startswith("#{", j) and src[j] != '"':
            j += 1
        name = src[i:j]
        if not re.fullmatch(r"[\w\-:/~()]+", name):
            raise _Unparsable("a filter name must follow '|'")
        if name.lower() not in _FILTERS:
            kind = "is not supported by ferry" if name.lower() in _UNSUPPORTED else "is unknown"
            raise self._fail(f"filter '{name}' {kind}", t)
        args: list[str | _Value] = []
        i = j
        while i < b:
            if src[i].isspace():
                i += 1
            elif src.startswith("#{", i):
                k = _find_close(src, i, b)
                if k is None:
                    raise _Unparsable("'#{' is never closed")
                args.append(self._value(i + 2, k, self._tok(i, k + 1)))
                i = k + 1
            elif q := _quoted(src, i, b):
                args.append(q[1])
                i = q[0]
            else:
                k = i
                while k < b and not src[k].isspace() and not src.startswith("#{", k):
                    k += 1
                args.append(src[i:k])
                i = k
        return _Filter(name.lower(), args)

    def _operand(self, a: int, b: int, t: int) -> _Lit | tuple[str | _Value, ...]:
        src = self.src
        while a < b and src[a].isspace():
            a += 1
        while b > a and src[b - 1].isspace():
            b -= 1
        if a == b:
            raise self._fail("a comparison is missing an operand", t)
        q = _quoted(src, a, b)
        if q and q[0] == b:
            return _Lit(q[1])
        try:
            return self._symbol(a, b)
        except _Unparsable as exc:
            hint = "; filters are not supported in conditions, test a variable that holds the filtered value"
            raise self._fail(f"bad condition: {exc}{hint if '|' in src[a:b] else ''}", t) from None

    def _cond(self, a: int, b: int, t: int) -> _Cond:
        op = _find_comparison(self.src, a, b)
        if op is None:
            return _Cond(self._operand(a, b, t))
        return _Cond(self._operand(a, op, t), self.src[op:op + 2], self._operand(op + 2, b, t))

    def _each(self, a: int, b: int, t: int) -> _Each:
        m = _IN.search(self.src, a, b)
        var = self.src[a:m.start()].strip() if m else ""
        if not m or not re.fullmatch(r"[^\s.\[\]#{}|\"]+", var):
            raise self._fail("expected #{each <name> in <Variable>}", t)
        try:
            coll = self._symbol(m.end(), b)
        except _Unparsable as exc:
            raise self._fail(f"bad #{{each}} collection: {exc}", t) from None
        if not coll:
            raise self._fail("#{each} needs a collection", t)
        return _Each(var.lower(), coll, t)

    def _calc(self, a: int, b: int, t: int) -> tuple[Any, ...]:
        """``#{calc}``: numbers, variable names, + - * / and parentheses (a name may hold '-': space it)."""
        src, items, i = self.src, [], a
        while i < b:
            c = src[i]
            if c.isspace():
                i += 1
            elif m := _NUMBER.match(src, i, b):
                if math.isinf(float(m.group())):
                    raise self._fail("#{calc}: a number is too large", t)
                items.append(("num", float(m.group())))
                i = m.end()
            elif c in "+-*/()":
                items.append((c,))
                i += 1
            elif src.startswith("#{", i):
                raise self._fail("write variable names in #{calc} without #{...}", t)
            else:
                j, depth = i, 0
                while j < b and (depth or not (src[j].isspace() or src[j] in "+*/()")):
                    depth += {"[": 1, "]": -1}.get(src[j], 0)
                    j += 1
                try:
                    items.append(("sym", self._symbol(i, j)))
                except _Unparsable as exc:
                    raise self._fail(f"bad #{{calc}} operand: {exc}", t) from None
                i = j
        pos = 0

        def peek() -> str:
            return items[pos][0] if pos < len(items) else ""

        def atom() -> tuple[Any, ...]:
            nonlocal pos
            kind = peek()
            pos += 1
            if kind in ("num", "sym"):
                return items[pos - 1]
            if kind == "-":
                return ("neg", atom())
            if kind == "(":
                inner = expr()
                if peek() != ")":
                    raise self._fail("#{calc}: ')' expected", t)
                pos += 1
                return inner
            raise self._fail("#{calc}: a number or variable expected", t)

        def binary(ops: str, operand: Callable[[], tuple[Any, ...]]) -> tuple[Any, ...]:
            nonlocal pos
            left = operand()
            while peek() and peek() in ops:
                pos += 1
                left = (items[pos - 1][0], left, operand())
            return left

        def expr() -> tuple[Any, ...]:
            return binary("+-", lambda: binary("*/", atom))

        tree = expr()
        if pos != len(items):
            raise self._fail("#{calc}: unexpected text after the expression", t)
        return tree


def _show(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------------------ Jinja translation


def _loop_split(parts: tuple[str | _Value, ...], scope: tuple[tuple[str, str], ...]
                ) -> tuple[str, tuple[str | _Value, ...]] | None:
    """If a name starts with an ``#{each}`` variable in scope: (Jinja loop variable, rest of the name)."""
    if not scope or not isinstance(parts[0], str):
        return None
    first = parts[0].lstrip()
    m = re.match(r"[^.\[]*", first)
    assert m is not None
    if m.end() == len(first) and len(parts) > 1:
        return None  # the first step continues into a nested token: not a loop variable
    step = m.group().strip().lower()
    for var, jvar in reversed(scope):
        if var == step:
            rest = (first[m.end():], *parts[1:])
            return jvar, tuple(p for p in rest if p != "")
    return None


class _Gen:
    """Emit Jinja source; user text only ever appears as ``_t[i]`` constants."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.consts: list[str] = []

    def const(self, text: str) -> str:
        self.consts.append(text)
        return f"_t[{len(self.consts) - 1}]"

    def nodes(self, nodes: list[Any], scope: tuple[tuple[str, str], ...]) -> None:
        for n in nodes:
            if isinstance(n, _Text):
                self.out.append(f"{{{{ {self.const(n.text)} }}}}")
            elif isinstance(n, _Sub):
                self.out.append(f"{{{{ {self.text(n.value, scope)} }}}}")
            elif isinstance(n, _Bad):
                self.out.append(f"{{{{ _rt.bad(_tok[{n.tok}], {self.const(n.reason)}) }}}}")
            elif isinstance(n, _If):
                test = self.cond(n.cond, n.tok, scope)
                self.out.append(f"{{% if {'not ' if n.kw == 'unless' else ''}({test}) %}}")
                self.nodes(n.body, scope)
                if n.orelse:
                    self.out.append("{% else %}")
                    self.nodes(n.orelse, scope)
                self.out.append("{% endif %}")
            elif isinstance(n, _Each):
                jvar = f"_e{len(scope)}"
                split = _loop_split(n.coll, scope)
                if split:
                    coll = f"_rt.each_item({split[0]}, {self.name(split[1], scope)}, _tok[{n.tok}])"
                else:
                    coll = f"_rt.each({self.name(n.coll, scope)}, _tok[{n.tok}])"
                self.out.append(f"{{% for {jvar} in {coll} %}}")
                self.nodes(n.body, (*scope, (n.var, jvar)))
                self.out.append("{% endfor %}")
            elif isinstance(n, _Calc):
                self.out.append(f"{{{{ _rt.calc_out({self.calc(n.expr, n.tok, scope)}, _tok[{n.tok}]) }}}}")

    def name(self, parts: tuple[str | _Value, ...], scope: tuple[tuple[str, str], ...] = ()) -> str:
        if not parts:
            return "''"
        pieces = [self.const(p) if isinstance(p, str) else self.text(p, scope) for p in parts]
        return "(" + " ~ ".join(pieces) + ")"

    def symbol(self, parts: tuple[str | _Value, ...], tok: int, scope: tuple[tuple[str, str], ...],
               lenient: bool) -> str:
        flag = "true" if lenient else "false"
        if scope and len(parts) == 1 and isinstance(parts[0], str) and parts[0].lower() in _EACH_SPECIALS:
            return _EACH_SPECIALS[parts[0].lower()]
        split = _loop_split(parts, scope)
        if split:
            return f"_rt.item_get({split[0]}, {self.name(split[1], scope)}, _tok[{tok}], {flag})"
        return f"_rt.get({self.name(parts, scope)}, _tok[{tok}], {flag})"

    def value(self, v: _Value, scope: tuple[tuple[str, str], ...]) -> str:
        code = "none" if v.parts is None else self.symbol(v.parts, v.tok, scope, False)
        for f in v.filters:
            args = "".join(", " + (self.const(a) if isinstance(a, str) else self.text(a, scope)) for a in f.args)
            code = f"({code} | {f.name}(_tok[{v.tok}]{args}))"
        return code

    def text(self, v: _Value, scope: tuple[tuple[str, str], ...]) -> str:
        return f"_rt.out({self.value(v, scope)}, _tok[{v.tok}])"

    def cond(self, c: _Cond, tok: int, scope: tuple[tuple[str, str], ...]) -> str:
        def operand(o: _Lit | tuple[str | _Value, ...]) -> str:
            return self.const(o.text) if isinstance(o, _Lit) else self.symbol(o, tok, scope, True)

        if c.op is None:
            return f"_rt.truthy({operand(c.left)})"
        assert c.right is not None
        return f"{operand(c.left)} {c.op} {operand(c.right)}"

    def calc(self, e: tuple[Any, ...], tok: int, scope: tuple[tuple[str, str], ...]) -> str:
        kind = e[0]
        if kind == "num":
            return repr(e[1])
        if kind == "sym":
            return f"_rt.num({self.symbol(e[1], tok, scope, False)}, _tok[{tok}])"
        if kind == "neg":
            return f"(-{self.calc(e[1], tok, scope)})"
        left, right = self.calc(e[1], tok, scope), self.calc(e[2], tok, scope)
        return f"_rt.div({left}, {right}, _tok[{tok}])" if kind == "/" else f"({left} {kind} {right})"


@dataclass(frozen=True)
class _Compiled:
    nodes: list[Any]
    source: str  # the Jinja source; compiled to a Template only when first rendered (see _jinja)
    consts: tuple[str, ...]
    toks: tuple[_Tok, ...]
    simple: tuple[str | tuple[str, int], ...] | None
    """Text and plain ``#{Name}`` substitutions only (most values): (name, token index) pairs between texts,
    evaluated without Jinja. None when the template has filters, blocks, nesting or malformed tokens."""


def _simple(nodes: list[Any]) -> tuple[str | tuple[str, int], ...] | None:
    pieces: list[str | tuple[str, int]] = []
    for n in nodes:
        if isinstance(n, _Text):
            pieces.append(n.text)
        elif (isinstance(n, _Sub) and not n.value.filters and n.value.parts is not None
              and len(n.value.parts) == 1 and isinstance(n.value.parts[0], str)):
            pieces.append((n.value.parts[0], n.value.tok))
        else:
            return None
    return tuple(pieces)


def _compile(template: str) -> _Compiled:
    """Parse and translate once per distinct text; values are compiled the same way, when first used."""
    return _compile_cached(template) if len(template) <= 65536 else _compile_uncached(template)


def _compile_uncached(template: str) -> _Compiled:
    parser = _Parser(template)
    nodes = parser.parse()
    gen = _Gen()
    gen.nodes(nodes, ())
    return _Compiled(nodes, "".join(gen.out), tuple(gen.consts), tuple(parser.toks), _simple(nodes))


# Parsed templates are small: keep every value of a large project (each is parsed once per process, not once
# per target). Compiled Jinja templates weigh more and are needed only for filters and blocks: fewer of them.
_compile_cached = functools.lru_cache(maxsize=16384)(_compile_uncached)  # big files are not worth keeping


@functools.lru_cache(maxsize=512)
def _jinja(source: str) -> Template:
    return _ENV.from_string(source)


def _collect_names(nodes: list[Any], scope: tuple[tuple[str, str], ...], required: set[str],
                   optional: set[str]) -> None:
    def sym(parts: tuple[str | _Value, ...], target: set[str]) -> None:
        for p in parts:
            if isinstance(p, _Value):
                value(p)
        static = len(parts) == 1 and isinstance(parts[0], str)
        if static and not _loop_split(parts, scope) and not (scope and parts[0].lower() in _EACH_SPECIALS):
            target.add(parts[0])  # type: ignore[arg-type]

    def value(v: _Value) -> None:
        if v.parts:
            sym(v.parts, required)
        for f in v.filters:
            for a in f.args:
                if isinstance(a, _Value):
                    value(a)

    def calc(e: tuple[Any, ...]) -> None:
        if e[0] == "sym":
            sym(e[1], required)
        elif e[0] != "num":
            for sub in e[1:]:
                calc(sub)

    for n in nodes:
        if isinstance(n, _Sub):
            value(n.value)
        elif isinstance(n, _Calc):
            calc(n.expr)
        elif isinstance(n, _If):
            for o in (n.cond.left, n.cond.right):
                if o is not None and not isinstance(o, _Lit):
                    sym(o, optional)
            _collect_names(n.body, scope, required, optional)
            _collect_names(n.orelse, scope, required, optional)
        elif isinstance(n, _Each):
            sym(n.coll, optional)
            _collect_names(n.body, (*scope, (n.var, "")), required, optional)


# ------------------------------------------------------------------------------------------------- runtime


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_MISSING = _Sentinel("MISSING")  # an unknown variable in lenient mode: renders as ""
_FAILED = _Sentinel("FAILED")  # a filter that could not apply in lenient mode: the token is echoed


@dataclass(frozen=True)
class _Item:
    """One ``#{each}`` item: a group member ``Coll[key]`` (path set) or one entry of a comma list."""

    path: str | None
    key: str


def _bracket_end(text: str, start: int) -> int | None:
    """Index of the ``]`` matching the ``[`` at ``start`` (indexes nest: ``Package[container[0]]``)."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"[": 1, "]": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return None


class _Runtime:
    """Per-render state the compiled template calls back into: variables, strictness, warnings, recursion."""

    def __init__(self, variables: Mapping[str, str], *, strict: bool, warnings: list[str] | None, where: str,
                 unknown_is_empty: bool = False) -> None:
        table = variables if isinstance(variables, VariableTable) else VariableTable(variables)
        self.values: dict[str, str] = table._values
        self._table = table
        self.strict, self.where, self.unknown_is_empty = strict, where, unknown_is_empty
        self.warnings = warnings if warnings is not None else []
        self.resolved: dict[str, str] = {}
        self.stack: list[tuple[str, str, _Tok]] = []  # (lower name, name, token) of values being evaluated
        self.groups: dict[str, list[_Item]] = {}

    # -- messages

    def message(self, tok: _Tok, text: str) -> str:
        if self.stack:  # inside a value: point at the top-level token, never quote the value's text
            outer = self.stack[0][2]
            chain = " -> ".join(f"'{name}'" for _, name, _ in self.stack)
            loc = f"line {outer.line}, column {outer.col}"
            text = f"{text} (in the value of variable {chain}, line {tok.line}, column {tok.col})"
        else:
            loc = f"line {tok.line}, column {tok.col}"
            if tok.text:
                text = f"{text} in {_show(tok.text)}"
        return f"{self.where}: {loc}: {text}" if self.where else f"{loc}: {text}"

    def error(self, tok: _Tok, text: str, variable: str | None = None) -> TemplateError:
        err = TemplateError(self.message(tok, text))
        err.where, err.variable = self.where, variable  # type: ignore[attr-defined]
        return err

    def fail(self, tok: _Tok, text: str) -> _Sentinel:
        if self.strict:
            raise self.error(tok, text)
        self.warnings.append(self.message(tok, text))
        return _FAILED

    # -- evaluation

    @property
    def names(self) -> Iterable[str]:
        """Canonical names in the caller's order, for ``#{each}`` groups."""
        return self._table._names.values()

    def run(self, template: str) -> str:
        try:
            compiled = _compile(template)
        except _CompileError as exc:
            raise self.error(exc.tok, exc.message) from None
        if compiled.simple is not None:  # text and plain #{Name}s: exactly what the Jinja code would do
            toks = compiled.toks
            return "".join(piece if isinstance(piece, str) else self.out(self.get(piece[0], toks[piece[1]], False),
                                                                         toks[piece[1]])
                           for piece in compiled.simple)
        return _jinja(compiled.source).render(_t=compiled.consts, _tok=compiled.toks, _rt=self)

    def _resolve(self, name: str, tok: _Tok) -> str | None:
        """The value of a variable with its own ``#{...}`` evaluated (once per render), or None if undefined."""
        key = name.lower()
        if key in self.resolved:
            return self.resolved[key]
        raw = self.values.get(key)
        if raw is None or "#{" not in raw:
            return raw
        if any(k == key for k, _, _ in self.stack):
            loop = " -> ".join([n for _, n, _ in self.stack] + [name])
            self.stack, saved = [], self.stack
            err = self.error(saved[0][2], f"variable '{name}' refers to itself ({loop})", variable=name)
            self.stack = saved
            raise err
        if len(self.stack) >= _MAX_NESTING:
            raise self.error(tok, f"variables nested more than {_MAX_NESTING} deep", variable=name)
        self.stack.append((key, name, tok))
        try:
            value = self.run(raw)
        finally:
            self.stack.pop()
        self.resolved[key] = value
        return value

    def _missing(self, name: str, tok: _Tok, lenient: bool, text: str = "") -> str | _Sentinel:
        if lenient:
            return ""
        text = text or f"unknown variable '{name}'"
        if self.strict and not self.unknown_is_empty:
            raise self.error(tok, text, variable=name)
        self.warnings.append(self.message(tok, text))
        return _MISSING

    def get(self, name: str, tok: _Tok, lenient: bool) -> str | _Sentinel:
        name = _canon(name)
        value = self._resolve(name, tok)
        return self._missing(name, tok, lenient) if value is None else value

    def item_get(self, item: _Item, rest: str, tok: _Tok, lenient: bool) -> str | _Sentinel:
        """``#{e}``, ``#{e.Address}``, ``#{e.Key}`` for an ``#{each e in ...}`` item."""
        rest = _canon(rest)
        if item.path is None:  # an entry of a comma-separated value: its text is data, keep it out of messages
            return item.key if not rest else self._missing(
                rest, tok, lenient, f"an entry of a comma-separated list has no '{rest}'")
        name = item.path + rest
        value = self._resolve(name, tok)
        if value is not None:
            return value
        if rest.lower() in ("", ".key"):
            return item.key
        return self._missing(name, tok, lenient)

    def each(self, name: str, tok: _Tok) -> list[_Item]:
        """A defined variable iterates its comma-separated entries; otherwise the indexes of ``Name[...]``."""
        name = _canon(name)
        value = self._resolve(name, tok)
        if value is not None:
            return [_Item(None, e) for e in (p.strip() for p in value.split(",")) if e]
        key = name.lower()
        if key not in self.groups:
            seen: dict[str, _Item] = {}
            for candidate in self.names:
                if not candidate.lower().startswith(key + "["):
                    continue
                close = _bracket_end(candidate, len(name))
                if close is None or candidate[close + 1:close + 2] not in ("", ".", "["):
                    continue
                index = candidate[len(name) + 1:close]
                seen.setdefault(index.lower(), _Item(f"{name}[{index}]", index))
            self.groups[key] = list(seen.values())
        return self.groups[key]

    def each_item(self, item: _Item, rest: str, tok: _Tok) -> list[_Item]:
        if item.path is not None:
            return self.each(item.path + _canon(rest), tok)
        if _canon(rest):
            return []
        return [_Item(None, e) for e in (p.strip() for p in item.key.split(",")) if e]

    def out(self, value: str | _Sentinel | None, tok: _Tok) -> str:
        if value is _FAILED:
            return tok.text
        return value if isinstance(value, str) else ""

    def bad(self, tok: _Tok, reason: str) -> str:
        self.fail(tok, reason)
        return tok.text

    @staticmethod
    def truthy(value: str) -> bool:
        return is_truthy(value)

    def num(self, value: str | _Sentinel, tok: _Tok) -> float:
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*", value):
            return float(value)
        if isinstance(value, str):
            self.fail(tok, "#{calc}: an operand is not a number")
        return math.nan

    def div(self, left: float, right: float, tok: _Tok) -> float:
        if right == 0:
            self.fail(tok, "#{calc}: division by zero")
            return math.nan
        return left / right

    def calc_out(self, result: float, tok: _Tok) -> str:
        if math.isinf(result):
            self.fail(tok, "#{calc}: the result is too large")
        if not math.isfinite(result):
            return tok.text
        if result == int(result) and abs(result) < 1e15:
            return str(int(result))
        return repr(result)


# ------------------------------------------------------------------------------------------------- filters


class _FilterError(Exception):
    """A filter cannot apply to this input or these arguments (Octostache returns null and echoes the token)."""


_FILTERS: dict[str, Callable[..., Any]] = {}


def _filter(name: str, args: tuple[int, int] = (0, 0), needs: str = "value"
            ) -> Callable[[Callable[..., str]], Callable[..., str]]:
    """Register an Octopus filter.  The wrapper checks the input (``needs``: "value", "none" for NowDate, "any")
    and the number of arguments, so that the body only computes."""
    low, high = args

    def register(fn: Callable[..., str]) -> Callable[..., str]:
        @pass_context
        def jinja_filter(ctx: Context, value: Any, tok: _Tok, *argv: str) -> Any:
            rt: _Runtime = ctx["_rt"]
            if value is _MISSING or value is _FAILED:
                return value
            if needs == "value" and value is None:
                return rt.fail(tok, f"{name} needs an input value")
            if needs == "none" and value is not None:
                return rt.fail(tok, f"{name} takes no input value (write #{{ | {name}}})")
            if not low <= len(argv) <= high:
                expected = f"{low}" if low == high else f"{low} to {high}" if high < 99 else f"at least {low}"
                return rt.fail(tok, f"{name} takes {expected} argument(s), got {len(argv)}")
            try:
                return fn(value, *argv)
            except _FilterError as exc:
                return rt.fail(tok, f"{name}: {exc}")

        _FILTERS[name.lower()] = jinja_filter
        return fn

    return register


def _chars(mapping: dict[str, str]) -> Callable[[str], str]:
    return lambda text: "".join(mapping.get(c, c) for c in text)


_html = _chars({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "/": "&#x2F;"})
_xml = _chars({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"})
_json = _chars({'"': '\\"', "\r": "\\r", "\t": "\\t", "\n": "\\n", "\\": "\\\\"})
_CONTROL = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}


def _u_escape(c: str) -> str:
    """``\\uXXXX`` per UTF-16 code unit, as .NET strings hold them."""
    units = c.encode("utf-16-be")
    return "".join(f"\\u{int.from_bytes(units[i:i + 2], 'big'):04x}" for i in range(0, len(units), 2))


def _properties(text: str, key: bool) -> str:
    out = []
    for i, c in enumerate(text):
        if (c == " " and (key or i == 0)) or (key and c in ":="):
            out.append("\\" + c)
        else:
            out.append(_CONTROL.get(c) or (c if ord(c) < 0xFF else _u_escape(c)))
    return "".join(out)


_filter("ToLower")(str.lower)
_filter("ToUpper")(str.upper)
_filter("HtmlEscape")(_html)
_filter("XmlEscape")(_xml)
_filter("JsonEscape")(_json)
_filter("PropertiesKeyEscape")(lambda v: _properties(v, key=True))
_filter("PropertiesValueEscape")(lambda v: _properties(v, key=False))
_filter("UriEscape")(lambda v: quote(v, safe="!#$&'()*+,/:;=?@[]~"))
_filter("UriDataEscape")(lambda v: quote(v, safe="~"))


@_filter("YamlSingleQuoteEscape")
def _yaml_single(value: str) -> str:
    # YAML folds one line break into a space, so every run of breaks gets one more.
    value = re.sub(r"(?:\r?\n)+", lambda m: ("\r\n" if m.group().startswith("\r") else "\n") + m.group(), value)
    return value.replace("'", "''")


@_filter("YamlDoubleQuoteEscape")
def _yaml_double(value: str) -> str:
    return "".join(_CONTROL.get(c) or ('\\"' if c == '"' else c if " " <= c <= "~" else _u_escape(c))
                   for c in value)


def _encoding(args: tuple[str, ...]) -> str:
    name = args[0].lower() if args else "utf8"
    if name in ("utf8", "utf-8"):
        return "utf-8"
    if name == "unicode":
        return "utf-16-le"
    raise _FilterError(f"unknown encoding '{args[0]}' (utf8 or unicode)")


@_filter("ToBase64", (0, 1))
def _to_base64(value: str, *args: str) -> str:
    return base64.b64encode(value.encode(_encoding(args))).decode("ascii")


@_filter("FromBase64", (0, 1))
def _from_base64(value: str, *args: str) -> str:
    try:
        data = base64.b64decode(re.sub(r"\s+", "", value), validate=True)
    except (binascii.Error, ValueError):
        raise _FilterError("the value is not valid base64") from None
    return data.decode(_encoding(args), errors="replace")


@_filter("Replace", (1, 2))
def _replace(value: str, pattern: str, replacement: str = "") -> str:
    """A .NET regular expression replace: ``$1``, ``${name}``, ``$&``, ``$$`` in the replacement."""

    def expand(m: re.Match[str]) -> str:
        def group(ref: re.Match[str]) -> str:
            token, name = ref.group(), ref.group(1) or ref.group(2)
            if name is None:
                return "$" if token == "$$" else m.group(0)
            try:
                return m.group(int(name) if name.isdigit() else name) or ""
            except IndexError:
                return token  # .NET leaves a reference to a group that does not exist as text

        return re.sub(r"\$(?:\{(\w+)\}|(\d+)|[$&])", group, replacement)

    return _regex(pattern).sub(expand, value)


def _regex(pattern: str) -> re.Pattern[str]:
    """Compile a .NET pattern with Python's ``re`` (named groups translated)."""
    pattern = re.sub(r"\(\?<(?=[A-Za-z_])", "(?P<", pattern)
    pattern = re.sub(r"\\k<(\w+)>", r"(?P=\1)", pattern)
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise _FilterError(f"invalid regular expression: {exc}") from None


def _int_arg(text: str) -> int:
    if not re.fullmatch(r"\d+", text):
        raise _FilterError(f"'{text}' is not a non-negative whole number")
    return int(text)


@_filter("Substring", (1, 2))
def _substring(value: str, *args: str) -> str:
    start, length = (0, _int_arg(args[0])) if len(args) == 1 else (_int_arg(args[0]), _int_arg(args[1]))
    if start + length > len(value):
        raise _FilterError(f"the range ends at {start + length}, beyond the value's {len(value)} characters")
    return value[start:start + length]


@_filter("Truncate", (1, 1))
def _truncate(value: str, length: str) -> str:
    n = _int_arg(length)
    return value if len(value) <= n else value[:n] + "..."


@_filter("Trim", (0, 1))
def _trim(value: str, *args: str) -> str:
    side = args[0].lower() if args else ""
    if side not in ("", "start", "end"):
        raise _FilterError(f"'{args[0]}' is not start or end")
    return value.lstrip() if side == "start" else value.rstrip() if side == "end" else value.strip()


def _bool(flag: bool) -> str:
    return "true" if flag else "false"


_filter("StartsWith", (1, 1))(lambda v, arg: _bool(v.startswith(arg)))
_filter("EndsWith", (1, 1))(lambda v, arg: _bool(v.endswith(arg)))
_filter("Contains", (1, 1))(lambda v, arg: _bool(arg in v))
_filter("Match", (1, 1))(lambda v, arg: _bool(_regex(arg).search(v) is not None))
_filter("Append", (1, 99), needs="any")(lambda v, *args: (v or "") + "".join(args))
_filter("Prepend", (1, 99), needs="any")(lambda v, *args: "".join(args) + (v or ""))


@_filter("NowDate", (0, 1), needs="none")
def _now_date(_: None, *args: str) -> str:
    now = datetime.now()
    return _format_date(_When(now.replace(microsecond=0), now.microsecond * 10, "unspecified"),
                        args[0] if args else "O")


@_filter("NowDateUtc", (0, 1), needs="none")
def _now_date_utc(_: None, *args: str) -> str:
    now = datetime.now(UTC).replace(tzinfo=None)
    return _format_date(_When(now.replace(microsecond=0), now.microsecond * 10, "utc"), args[0] if args else "O")


@_filter("Format", (1, 2))
def _format(value: str, *args: str) -> str:
    """.NET ``ToString(format)`` in en-US: one argument tries decimal then DateTimeOffset; two name the type
    first (Int32/Int, Double, Decimal, Date/DateTime, DateTimeOffset)."""
    fmt = args[-1]
    kind = args[0].lower() if len(args) == 2 else "auto"
    if kind in ("auto", "decimal") and (d := _parse_number(value, "decimal")) is not None:
        return _format_number(d, fmt, "decimal", None)
    if kind in ("int", "int32") and (d := _parse_number(value, "int")) is not None:
        return _format_number(d, fmt, "int", None)
    if kind == "double" and (d := _parse_number(value, "double")) is not None:
        double = float(d)  # .NET Core 3+ formats the exact binary value: 1.005 rounds to "1.00"
        return _format_number(Decimal(double), fmt, "double", double)
    if kind in ("auto", "datetimeoffset", "date", "datetime") and (when := _parse_date(value)):
        return _format_date(when.as_datetime() if kind in ("date", "datetime") else when.as_offset(), fmt)
    if kind not in ("auto", "decimal", "int", "int32", "double", "date", "datetime", "datetimeoffset"):
        raise _FilterError(f"unknown type '{args[0]}'")
    raise _FilterError("the value is not a " + ("number or date" if kind == "auto" else args[0]))


# ------------------------------------------------------------------------------- .NET numbers, en-US culture


def _parse_number(text: str, kind: str) -> Decimal | None:
    """``decimal``/``int``/``double.TryParse`` with the en-US culture (thousands separators allowed)."""
    if kind == "int":
        m = re.fullmatch(r"\s*([+-]?\d+)\s*", text)
        return Decimal(m.group(1)) if m and -(2**31) <= int(m.group(1)) < 2**31 else None
    exponent = r"(?:[eE][+-]?\d+)?" if kind == "double" else ""
    m = re.fullmatch(rf"\s*([+-]?)(\d[\d,]*)?(?:\.(\d*))?({exponent})\s*", text)
    if not m or not (m.group(2) or m.group(3)):
        return None
    try:
        return Decimal(f"{m.group(1)}{(m.group(2) or '0').replace(',', '')}.{m.group(3) or '0'}{m.group(4)}")
    except InvalidOperation:
        return None


def _fixed(d: Decimal, places: int) -> str:
    with localcontext() as ctx:
        ctx.prec, ctx.rounding = 200, ROUND_HALF_UP
        return format(d.quantize(Decimal(1).scaleb(-places)), "f")


def _grouped(digits: str) -> str:
    whole, _, frac = digits.partition(".")
    return f"{int(whole):,}" + ("." + frac if frac else "")


def _signed(negative: bool, text: str) -> str:
    return "-" + text if negative and re.search(r"[1-9]", text) else text


def _exponent(mantissa: str, letter: str, exp: int, digits: int) -> str:
    return f"{mantissa}{letter}{'+' if exp >= 0 else '-'}{abs(exp):0{digits}d}"


def _format_number(d: Decimal, fmt: str, kind: str, double: float | None) -> str:
    m = re.fullmatch(r"([A-Za-z])(\d{0,9})", fmt)
    if not m:
        return _custom_number(d, fmt)
    letter, prec = m.group(1), int(m.group(2)) if m.group(2) else None
    up, neg = letter.upper(), d < 0
    with localcontext() as ctx:
        ctx.prec, ctx.rounding = 200, ROUND_HALF_UP
        if up in "CNFP":
            text = _fixed(abs(d) * (100 if up == "P" else 1), 2 if prec is None else prec)
            text = text if up == "F" else _grouped(text)
            return _signed(neg, {"C": "$" + text, "P": text + " %"}.get(up, text))
        if up in "DX":
            if kind != "int":
                raise _FilterError(f"format '{fmt}' needs a whole number (Format Int32 {fmt})")
            n = int(d)
            if up == "D":
                return _signed(neg, str(abs(n)).zfill(prec or 0))
            return format(n & 0xFFFFFFFF, letter).zfill(prec or 0)
        if up == "E":
            places = 6 if prec is None else prec
            if d == 0:
                return _exponent(f"0.{'0' * places}".rstrip("."), letter, 0, 3)
            mantissa, _, exp = format(abs(d), f".{places}E").partition("E")
            return _signed(neg, _exponent(mantissa, letter, int(exp), 3))
        if up == "G" and prec:
            mantissa, _, exp = format(d, f".{prec}G").partition("E")
            return _exponent(mantissa, "E" if letter == "G" else "e", int(exp), 2) if exp else mantissa
        if up in "GR" and double is not None:
            text = repr(double).removesuffix(".0")
            mantissa, _, exp = text.partition("e")
            return _exponent(mantissa, "E", int(exp), 2) if exp else text
        if up == "G":
            return format(d, "f")  # a decimal keeps its scale: "4.30" stays "4.30"
    raise _FilterError(f"'{fmt}' is not a supported number format")


def _custom_number(d: Decimal, fmt: str) -> str:
    """.NET custom numeric formats: ``0 # . ,`` (grouping and scaling), ``%``, ``‰``, quotes, ``\\`` and
    ``;`` sections.  Exponent notation (``0.0E+0``) is not supported."""
    sections: list[list[tuple[str, str]]] = [[]]
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "\\" and i + 1 < len(fmt):
            sections[-1].append(("lit", fmt[i + 1]))
            i += 1
        elif c in "'\"":
            j = fmt.find(c, i + 1)
            j = len(fmt) if j == -1 else j
            sections[-1].append(("lit", fmt[i + 1:j]))
            i = j
        elif c == ";":
            sections.append([])
        else:
            sections[-1].append((c if c in "0#.,%‰" else "lit", c))
        i += 1
    tokens, minus = sections[0], True
    if d < 0 and len(sections) > 1 and sections[1]:
        tokens, minus = sections[1], False
    text, zero = _number_section(tokens, abs(d))
    if zero and len(sections) > 2 and sections[2]:
        return _number_section(sections[2], Decimal(0))[0]
    return "-" + text if d < 0 and minus and not zero else text


def _number_section(tokens: list[tuple[str, str]], value: Decimal) -> tuple[str, bool]:
    """Format a non-negative value with one section; also say whether it rounded to zero."""
    point = next((k for k, t in enumerate(tokens) if t[0] == "."), len(tokens))
    int_part, frac_part = tokens[:point], tokens[point + 1:]
    ph = [k for k, t in enumerate(int_part) if t[0] in "0#"]
    scale = 0
    while ph and ph[-1] + 1 + scale < len(int_part) and int_part[ph[-1] + 1 + scale][0] == ",":
        scale += 1  # commas right after the last digit placeholder divide by 1000 each
    grouping = bool(ph) and any(t[0] == "," for t in int_part[ph[0]:ph[-1]])
    percent = sum(t[0] == "%" for t in tokens)
    permille = sum(t[0] == "‰" for t in tokens)
    value = value * Decimal(100) ** percent * Decimal(1000) ** permille / Decimal(1000) ** scale
    frac_ph = [t[0] for t in frac_part if t[0] in "0#"]
    fixed = _fixed(value, len(frac_ph))
    whole, _, frac = fixed.partition(".")
    first_zero = next((k for k in ph if int_part[k][0] == "0"), None)
    whole = whole.lstrip("0").zfill(sum(1 for k in ph if first_zero is not None and k >= first_zero))
    frac = frac.rstrip("0").ljust(max((k + 1 for k, p in enumerate(frac_ph) if p == "0"), default=0), "0")
    assigned: dict[int, str] = {}
    if grouping:
        assigned[ph[0]] = f"{int(whole):,}" if whole else ""
    elif ph:
        rest = whole
        for k in reversed(ph[1:]):  # digits fill placeholders from the right, the leftmost takes the rest
            assigned[k], rest = rest[-1:], rest[:-1]
        assigned[ph[0]] = rest
    out = [assigned.get(k, "") if t[0] in "0#" else t[1] for k, t in enumerate(int_part) if t[0] != ","]
    if point < len(tokens):
        out.append(("" if ph else whole) + ("." if frac else ""))
    digits = iter(frac)
    out.extend(next(digits, "") if t[0] in "0#" else t[1] for t in frac_part if t[0] not in ".,")
    return "".join(out), not re.search(r"[1-9]", fixed)


# --------------------------------------------------------------------------------- .NET dates, en-US culture

_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_TIME = (r"(?:(?:T|\s+)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<F>\d+))?)?(?:\s*(?P<ampm>[AaPp][Mm]))?)?"
         r"\s*(?P<tz>Z|GMT|UTC|[+-]\d{1,2}(?::?\d{2})?)?")
_DATES = [re.compile(r"\s*" + d + _TIME + r"\s*") for d in (
    r"(?P<y>\d{4})[-/.](?P<mo>\d{1,2})[-/.](?P<d>\d{1,2})",
    r"(?P<mo>\d{1,2})/(?P<d>\d{1,2})/(?P<y>\d{4})",
    r"(?:[A-Za-z]+,?\s+)?(?P<d>\d{1,2})\s+(?P<mon>[A-Za-z]{3,})\.?,?\s+(?P<y>\d{4})",
    r"(?:[A-Za-z]+,?\s+)?(?P<mon>[A-Za-z]{3,})\.?\s+(?P<d>\d{1,2}),?\s+(?P<y>\d{4})",
)]
_STANDARD_DATES = {
    "d": "M/d/yyyy", "D": "dddd, MMMM d, yyyy", "f": "dddd, MMMM d, yyyy h:mm tt",
    "F": "dddd, MMMM d, yyyy h:mm:ss tt", "g": "M/d/yyyy h:mm tt", "G": "M/d/yyyy h:mm:ss tt",
    "M": "MMMM d", "m": "MMMM d", "O": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK",
    "o": "yyyy'-'MM'-'dd'T'HH':'mm':'ss'.'fffffffK", "R": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
    "r": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'", "s": "yyyy'-'MM'-'dd'T'HH':'mm':'ss", "t": "h:mm tt",
    "T": "h:mm:ss tt", "u": "yyyy'-'MM'-'dd HH':'mm':'ss'Z'", "U": "dddd, MMMM d, yyyy h:mm:ss tt",
    "Y": "MMMM yyyy", "y": "MMMM yyyy",
}


@dataclass(frozen=True)
class _When:
    """A .NET DateTime (kind "unspecified", "local", "utc") or DateTimeOffset (kind "offset")."""

    wall: datetime  # naive wall-clock time, whole seconds
    ticks: int  # fraction of the second in 100 ns units, .NET's precision
    kind: str
    offset: timedelta | None = None  # parsed offset; for kind "offset" the instance's own

    def utcoffset(self) -> timedelta:
        if self.kind == "utc":
            return timedelta(0)
        if self.kind == "offset" and self.offset is not None:
            return self.offset
        return self.wall.astimezone().utcoffset() or timedelta(0)  # naive = the server's local time

    def as_offset(self) -> _When:
        """DateTimeOffset.Parse: an explicit offset is kept, none means the server's local offset."""
        return _When(self.wall, self.ticks, "offset", self.offset if self.offset is not None else self.utcoffset())

    def as_datetime(self) -> _When:
        """DateTime.Parse: a value with an offset is converted to the server's local time."""
        if self.offset is None:
            return self
        local = self.wall.replace(tzinfo=timezone(self.offset)).astimezone()
        return _When(local.replace(tzinfo=None), self.ticks, "local")

    def to_utc(self) -> _When:
        return _When(self.wall - self.utcoffset(), self.ticks, "utc")


def _parse_date(text: str) -> _When | None:
    for pattern in _DATES:
        m = pattern.fullmatch(text)
        if not m:
            continue
        g = m.groupdict()
        try:
            month = int(g["mo"]) if g.get("mo") else next(
                k + 1 for k, name in enumerate(_MONTHS) if name.lower().startswith(g["mon"].lower()))
            hour = int(g["H"] or 0)
            if g["ampm"]:
                if not 1 <= hour <= 12:
                    return None
                hour = hour % 12 + (12 if g["ampm"].lower() == "pm" else 0)
            wall = datetime(int(g["y"]), month, int(g["d"]), hour, int(g["M"] or 0), int(g["S"] or 0))
        except (StopIteration, ValueError):
            return None
        ticks = int(((g["F"] or "") + "0000000")[:7])
        tz, offset = g["tz"], None
        if tz and tz.upper() in ("Z", "GMT", "UTC"):
            offset = timedelta(0)
        elif tz:
            sign, hours, minutes = re.fullmatch(r"([+-])(\d{1,2}):?(\d{2})?", tz).groups()  # type: ignore[union-attr]
            offset = (-1 if sign == "-" else 1) * timedelta(hours=int(hours), minutes=int(minutes or 0))
        return _When(wall, ticks, "unspecified", offset)
    return None


def _format_date(when: _When, fmt: str) -> str:
    if len(fmt) == 1:
        if fmt not in _STANDARD_DATES:
            raise _FilterError(f"'{fmt}' is not a standard date format")
        if (fmt in "RruU" and when.kind == "offset") or fmt == "U":
            when = when.to_utc()
        fmt = _STANDARD_DATES[fmt]
    elif len(fmt) == 2 and fmt[0] == "%":
        fmt = fmt[1]
    out, i = [], 0
    while i < len(fmt):
        c = fmt[i]
        if c in "'\"":
            j = fmt.find(c, i + 1)
            if j == -1:
                raise _FilterError("unterminated quote in the date format")
            out.append(fmt[i + 1:j])
            i = j + 1
            continue
        if c == "\\":
            out.append(fmt[i + 1:i + 2])
            i += 2
            continue
        n = 1
        while i + n < len(fmt) and fmt[i + n] == c:
            n += 1
        out.append(_date_part(when, c, n) if c in "dfFghHKmMstyz" else ("" if c == "%" else c * n))
        i += n
    return "".join(out)


def _date_part(w: _When, c: str, n: int) -> str:
    t = w.wall
    if c == "d":
        return (str(t.day), f"{t.day:02d}", _DAYS[t.weekday()][:3])[n - 1] if n < 4 else _DAYS[t.weekday()]
    if c == "M":
        return (str(t.month), f"{t.month:02d}", _MONTHS[t.month - 1][:3])[n - 1] if n < 4 else _MONTHS[t.month - 1]
    if c in "fF":
        if n > 7:
            raise _FilterError("at most 7 fraction digits")
        digits = f"{w.ticks:07d}"[:n]
        return digits if c == "f" else digits.rstrip("0")
    if c == "y":
        return str(t.year % 100) if n == 1 else f"{t.year % 100:02d}" if n == 2 else f"{t.year:0{n}d}"
    if c == "K":
        return "" if w.kind == "unspecified" else "Z" if w.kind == "utc" else _offset(w.utcoffset(), 3)
    if c == "z":
        return _offset(w.utcoffset(), n)
    if c == "g":
        return "A.D."
    if c == "t":
        return ("AM" if t.hour < 12 else "PM")[:n]
    number = {"h": t.hour % 12 or 12, "H": t.hour, "m": t.minute, "s": t.second}[c]
    return str(number) if n == 1 else f"{number:02d}"


def _offset(offset: timedelta, n: int) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign, minutes = ("-" if minutes < 0 else "+"), abs(minutes)
    if n == 1:
        return f"{sign}{minutes // 60}"
    return f"{sign}{minutes // 60:02d}" + (f":{minutes % 60:02d}" if n >= 3 else "")


# The sandbox evaluates everything; it only knows the filters above and no globals, tests or Python builtins.
_ENV = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
_ENV.filters = dict(_FILTERS)
_ENV.tests = {}
_ENV.globals = {}
