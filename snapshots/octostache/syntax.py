"""Tokens and the syntax tree of an Octostache template, and the scanning helpers the parser and the
public helpers share (closing braces, quoted arguments, comparisons, canonical names)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Tok:
    """A ``#{...}`` token as written, with its 1-based position, for messages and for echoing it back."""

    text: str
    line: int
    col: int


@dataclass
class Value:
    """``Symbol | Filter args | ...``; ``parts`` are static name text and nested values (``Server[#{Region}]``);
    ``None`` means no input (``#{ | NowDate}``)."""

    parts: tuple[str | Value, ...] | None
    filters: list[Filter]
    tok: int
    echo: str = ""
    """With filters: the token as Octostache prints it back when it cannot be evaluated (arguments quoted)."""


@dataclass
class Filter:
    written: str  # as the template spells it, for echoes
    name: str  # lower case: the key in FILTERS and in the Jinja environment
    args: list[str | Value]


@dataclass
class Lit:
    text: str


@dataclass
class Cond:
    """``left``, or ``left == right`` / ``left != right``; an operand is a quoted literal or a variable with
    optional filters (``Hello | ToLower``)."""

    left: Lit | Value
    op: str | None = None
    right: Lit | Value | None = None


@dataclass
class Text:
    text: str


@dataclass
class Sub:
    value: Value


@dataclass
class Bad:
    """Text that starts like a token but is not one: an error in strict mode, echoed otherwise."""

    tok: int
    reason: str


@dataclass
class If:
    kw: str  # "if" or "unless"
    cond: Cond
    tok: int
    body: list[Any] = field(default_factory=list)
    orelse: list[Any] = field(default_factory=list)


@dataclass
class Each:
    var: str
    coll: tuple[str | Value, ...]
    tok: int
    body: list[Any] = field(default_factory=list)
    kw: str = "each"


@dataclass
class Calc:
    expr: tuple[Any, ...]
    tok: int


@dataclass
class Else:
    tok: int


@dataclass
class ElseIf:
    """``#{elseif <condition>}``: a clause of ``#{if}``; parsed into an ``If`` in the ``orelse`` of the one before."""

    cond: Cond
    tok: int


@dataclass
class End:
    kw: str
    tok: int


class CompileError(Exception):
    """A template that cannot be compiled at all (blocks, unknown filter); always reported."""

    def __init__(self, message: str, tok: Tok) -> None:
        super().__init__(message)
        self.message, self.tok = message, tok

class FilterError(Exception):
    """A filter cannot apply to this input or these arguments (Octostache returns null and echoes the token).
    ``shown`` is what Octostache prints instead of the echo, where it prints something (``UriPart``'s errors)."""

    def __init__(self, message: str, shown: str | None = None) -> None:
        super().__init__(message)
        self.shown = shown


class Unparsable(Exception):
    """A ``#{...}`` that is not a valid substitution; strict mode reports it, lenient mode echoes it."""


@functools.lru_cache(maxsize=65536)  # the same names are looked up in every render of a deployment
def canon(name: str) -> str:
    """Octostache trims each step of a name: ``Foo . Bar [ x ]`` and ``Foo.Bar[x]`` are the same variable."""
    return re.sub(r"\s*([.\[\]])\s*", r"\1", name.strip())


def variable_key(name: str) -> str:
    """The key under which the engine finds ``name``: case-insensitive, blanks around ``.[]`` ignored."""
    return canon(name).lower()


def canonical_name(name: str) -> str:
    """``name`` as the engine spells it (blanks around ``.[]`` removed, case kept)."""
    return canon(name)
def quoted(src: str, i: int, limit: int) -> tuple[int, str] | None:
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


_CALC = re.compile(r"\s*calc\s", re.IGNORECASE)


def find_close(src: str, start: int, limit: int) -> int | None:
    """Index of the ``}`` closing the ``#{`` at ``start``, or None.  Nested tokens count, and after ``|``, ``=``
    or ``!`` quoted arguments may hold ``}`` (``Replace "[0-9]{3}" x``); ``#{calc}`` names variables as ``{B}``."""
    quoting = [False]
    braces = 0 if _CALC.match(src, start + 2, limit) else -1  # -1: plain braces are text, not nesting
    i = start + 2
    while i < limit:
        if src.startswith("#{", i):
            quoting.append(False)
            i += 2
            continue
        c = src[i]
        if braces >= 0 and len(quoting) == 1 and c in "{}" and (c == "{" or braces > 0):
            braces += 1 if c == "{" else -1
        elif c == "}":
            quoting.pop()
            if not quoting:
                return i
        elif c in "|=!":
            quoting[-1] = True
        elif quoting[-1] and (q := quoted(src, i, limit)):
            i = q[0]
            continue
        i += 1
    return None


def find_comparison(src: str, a: int, b: int) -> int | None:
    """Offset of the first ``==``/``!=`` in ``src[a:b]`` outside nested tokens and quotes."""
    i = a
    while i < b:
        if src.startswith("#{", i):
            j = find_close(src, i, b)
            if j is None:
                return None
            i = j + 1
        elif q := quoted(src, i, b):
            i = q[0]
        elif src.startswith(("==", "!="), i):
            return i
        else:
            i += 1
    return None


def show(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."

# ------------------------------------------------------------------------------------- runtime values


class Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


MISSING = Sentinel("MISSING")  # an unknown variable in lenient mode: renders as ""
FAILED = Sentinel("FAILED")  # a filter that could not apply in lenient mode: the token is echoed

