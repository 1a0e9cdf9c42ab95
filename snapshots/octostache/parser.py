"""Tokenizer and parser: template text to the syntax tree of ``syntax.py``, with every token's position."""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from snapshots.octostache.filters import FILTERS, UNSUPPORTED
from snapshots.octostache.syntax import (
    Bad,
    Calc,
    CompileError,
    Cond,
    Each,
    Else,
    ElseIf,
    End,
    Filter,
    If,
    Lit,
    Sub,
    Text,
    Tok,
    Unparsable,
    Value,
    canon,
    find_close,
    find_comparison,
    quoted,
    show,
)

_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_IN = re.compile(r"\s+in\s+", re.IGNORECASE)
@dataclass
class _Frame:
    node: If | Each
    outer: list[Any]
    in_else: bool = False
    current: If | None = None  # the latest #{if}/#{elseif} clause: where #{elseif} and #{else} attach


class Parser:
    """Tokenizer and parser for one template; positions of every token go to ``toks``."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.toks: list[Tok] = []
        self._lines = [0] + [m.end() for m in re.finditer("\n", src)]

    def _tok(self, start: int, end: int) -> int:
        row = bisect_right(self._lines, start) - 1
        self.toks.append(Tok(self.src[start:end], row + 1, start - self._lines[row] + 1))
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
            close = find_close(src, p, len(src))
            if close is None:
                yield "unclosed", p, 0
                i = p + 2
            else:
                yield "token", p, close + 1
                i = close + 1
        text.append(src[i:])
        yield "text", "".join(text), 0

    def parse(self) -> list[Any]:
        """Build the node tree, matching blocks; structural mistakes raise ``CompileError`` with a position."""
        root: list[Any] = []
        body, stack = root, []
        for kind, a, b in self._lex():
            if kind == "text":
                if a:
                    if body and isinstance(body[-1], Text):
                        body[-1].text += a
                    else:
                        body.append(Text(a))
                continue
            if kind == "unclosed":
                body.append(Bad(self._tok(a, a + 2), "'#{' is never closed by '}' (write ##{ for a literal #{)"))
                continue
            node = self._token(a, b)
            if isinstance(node, If | Each):
                body.append(node)
                stack.append(_Frame(node, body))
                body = node.body
            elif isinstance(node, Else):
                if not stack or not isinstance(stack[-1].node, If):
                    raise CompileError("#{else} outside #{if} or #{unless}", self.toks[node.tok])
                if stack[-1].in_else:
                    raise CompileError("a second #{else} in the same #{if}", self.toks[node.tok])
                stack[-1].in_else = True
                body = (stack[-1].current or stack[-1].node).orelse
            elif isinstance(node, ElseIf):
                if not stack or not isinstance(stack[-1].node, If) or stack[-1].node.kw != "if":
                    raise CompileError("#{elseif} outside #{if}", self.toks[node.tok])
                if stack[-1].in_else:
                    raise CompileError("#{elseif} after #{else}", self.toks[node.tok])
                clause = If("if", node.cond, node.tok)
                (stack[-1].current or stack[-1].node).orelse.append(clause)
                stack[-1].current = clause
                body = clause.body
            elif isinstance(node, End):
                tok = self.toks[node.tok]
                if not stack:
                    raise CompileError(f"#{{/{node.kw}}} without an opening #{{{node.kw} ...}}", tok)
                opened = stack[-1].node
                if opened.kw != node.kw:
                    at = self.toks[opened.tok]
                    raise CompileError(f"#{{/{node.kw}}} closes {show(at.text)} opened at line {at.line}, "
                                        f"column {at.col}; expected #{{/{opened.kw}}}", tok)
                body = stack.pop().outer
            else:
                body.append(node)
        if stack:
            opened = stack[-1].node
            raise CompileError(f"{show(self.toks[opened.tok].text)} is never closed (missing #{{/{opened.kw}}})",
                                self.toks[opened.tok])
        return root

    def _token(self, start: int, end: int) -> Any:
        t = self._tok(start, end)
        a, b = start + 2, end - 1
        content = self.src[a:b]
        s = content.strip()
        if not s:
            return Text(self.src[start:end])  # "#{}" and "#{ }" are echoed, as Octostache does
        lead = a + len(content) - len(content.lstrip())
        stop = lead + len(s)
        low = s.lower()
        if low == "else":
            return Else(t)
        if low.startswith("/"):
            m = re.fullmatch(r"/\s*(if|unless|each)", low)
            return End(m.group(1), t) if m else Bad(t, "unknown closing tag")
        if m := re.match(r"elseif(?:\s+|$)", s, re.IGNORECASE):
            return ElseIf(self._cond(lead + m.end(), stop, t), t)
        if m := re.match(r"(if|unless)\s+", s, re.IGNORECASE):
            return If(m.group(1).lower(), self._cond(lead + m.end(), stop, t), t)
        if m := re.match(r"each\s+", s, re.IGNORECASE):
            return self._each(lead + m.end(), stop, t)
        if m := re.match(r"calc\s+", s, re.IGNORECASE):
            return Calc(self._calc(lead + m.end(), stop, t), t)
        try:
            return Sub(self._value(a, b, t))
        except Unparsable as exc:
            return Bad(t, f"not a valid substitution: {exc} (write ##{{ for a literal #{{)")

    def _fail(self, message: str, t: int) -> CompileError:
        return CompileError(message, self.toks[t])

    def _value(self, a: int, b: int, t: int) -> Value:
        src, segments, seg, i, piped = self.src, [], a, a, False
        while i < b:
            if src.startswith("#{", i):
                j = find_close(src, i, b)
                if j is None:
                    raise Unparsable("'#{' is never closed")
                i = j + 1
            elif src[i] == "|":
                segments.append((seg, i))
                seg, i, piped = i + 1, i + 1, True
            elif piped and (q := quoted(src, i, b)):
                i = q[0]
            else:
                i += 1
        segments.append((seg, b))
        parts = self._symbol(*segments[0])
        filters = [self._filter(fa, fb, t) for fa, fb in segments[1:]]
        if not parts and not filters:
            raise Unparsable("empty expression")
        echo = ""
        if filters:
            args = [[a if isinstance(a, str) else self.toks[a.tok].text for a in f.args] for f in filters]
            echo = "#{" + src[segments[0][0]:segments[0][1]].strip() + "".join(
                f" | {f.written}" + "".join(f' "{a}"' for a in fa) for f, fa in zip(filters, args, strict=True)) + "}"
        return Value(parts or None, filters, t, echo)

    def _symbol(self, a: int, b: int) -> tuple[str | Value, ...]:
        """A variable name: identifier characters, dots, ``[index]`` (anything but brackets) and nested tokens."""
        src, depth, i = self.src, 0, a
        parts: list[str | Value] = []
        buf: list[str] = []
        while i < b:
            if src.startswith("#{", i):
                j = find_close(src, i, b)
                if j is None:
                    raise Unparsable("'#{' is never closed")
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
                    raise Unparsable("']' without '['")
            elif depth == 0 and not (c.isalnum() or c.isspace() or c in "_-:/~()."):
                raise Unparsable(f"{c!r} cannot appear in a variable name")
            buf.append(c)
            i += 1
        if depth:
            raise Unparsable("'[' without ']'")
        if buf:
            parts.append("".join(buf))
        if all(isinstance(p, str) for p in parts):
            name = canon("".join(p for p in parts if isinstance(p, str)))
            return (name,) if name else ()
        return tuple(parts)

    def _filter(self, a: int, b: int, t: int) -> Filter:
        src, i = self.src, a
        while i < b and src[i].isspace():
            i += 1
        j = i
        while j < b and not src[j].isspace() and not src.startswith("#{", j) and src[j] != '"':
            j += 1
        name = src[i:j]
        if not re.fullmatch(r"[\w\-:/~()]+", name):
            raise Unparsable("a filter name must follow '|'")
        if name.lower() not in FILTERS:
            kind = "is not supported by ferry" if name.lower() in UNSUPPORTED else "is unknown"
            raise self._fail(f"filter '{name}' {kind}", t)
        args: list[str | Value] = []
        i = j
        while i < b:
            if src[i].isspace():
                i += 1
            elif src.startswith("#{", i):
                k = find_close(src, i, b)
                if k is None:
                    raise Unparsable("'#{' is never closed")
                args.append(self._value(i + 2, k, self._tok(i, k + 1)))
                i = k + 1
            elif q := quoted(src, i, b):
                args.append(q[1])
                i = q[0]
            else:
                k = i
                while k < b and not src[k].isspace() and not src.startswith("#{", k):
                    k += 1
                args.append(src[i:k])
                i = k
        return Filter(name, name.lower(), args)

    def _operand(self, a: int, b: int, t: int) -> Lit | Value:
        """A quoted literal, or a variable with optional filters (``Hello | ToLower``), as Octostache allows on
        either side of a comparison."""
        src = self.src
        while a < b and src[a].isspace():
            a += 1
        while b > a and src[b - 1].isspace():
            b -= 1
        if a == b:
            raise self._fail("a comparison is missing an operand", t)
        q = quoted(src, a, b)
        if q and q[0] == b:
            return Lit(q[1])
        try:
            value = self._value(a, b, t)
        except Unparsable as exc:
            raise self._fail(f"bad condition: {exc}", t) from None
        if value.parts is None:
            raise self._fail("a condition needs a variable or a quoted text", t)
        return value

    def _cond(self, a: int, b: int, t: int) -> Cond:
        op = find_comparison(self.src, a, b)
        if op is None:
            return Cond(self._operand(a, b, t))
        return Cond(self._operand(a, op, t), self.src[op:op + 2], self._operand(op + 2, b, t))

    def _each(self, a: int, b: int, t: int) -> Each:
        m = _IN.search(self.src, a, b)
        var = self.src[a:m.start()].strip() if m else ""
        if not m or not re.fullmatch(r"[^\s.\[\]#{}|\"]+", var):
            raise self._fail("expected #{each <name> in <Variable>}", t)
        try:
            coll = self._symbol(m.end(), b)
        except Unparsable as exc:
            raise self._fail(f"bad #{{each}} collection: {exc}", t) from None
        if not coll:
            raise self._fail("#{each} needs a collection", t)
        return Each(var.lower(), coll, t)

    def _calc(self, a: int, b: int, t: int) -> tuple[Any, ...]:
        """``#{calc}`` as Octostache reads it: numbers, + - * / % and parentheses, variables as ``{Name}`` or bare.
        A bare name runs to a blank or one of ``+*%(){}``, so it may hold '-' and '/' (``B-2`` is one name: write
        ``{B}-2`` or ``B - 2``)."""
        src, i = self.src, a
        items: list[tuple[Any, ...]] = []
        while i < b:
            c = src[i]
            if c.isspace():
                i += 1
            elif m := _NUMBER.match(src, i, b):
                if math.isinf(float(m.group())):
                    raise self._fail("#{calc}: a number is too large", t)
                items.append(("num", float(m.group())))
                i = m.end()
            elif c in "+-*/%()":
                items.append((c,))
                i += 1
            elif src.startswith("#{", i):
                raise self._fail("write variable names in #{calc} without #{...}", t)
            elif c == "{":
                j = src.find("}", i + 1, b)
                if j == -1:
                    raise self._fail("#{calc}: '{' without '}'", t)
                try:
                    items.append(("sym", self._symbol(i + 1, j)))
                except Unparsable as exc:
                    raise self._fail(f"bad #{{calc}} operand: {exc}", t) from None
                i = j + 1
            else:
                j, depth = i, 0
                while j < b and (depth or not (src[j].isspace() or src[j] in "+*%(){}")):
                    depth += {"[": 1, "]": -1}.get(src[j], 0)
                    j += 1
                try:
                    items.append(("sym", self._symbol(i, j)))
                except Unparsable as exc:
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
            return binary("+-", lambda: binary("*/%", atom))

        tree = expr()
        if pos != len(items):
            raise self._fail("#{calc}: unexpected text after the expression", t)
        return tree


