"""The Jinja translation: a syntax tree to Jinja source in which user text is only ever data (``_t[i]``)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

from snapshots.octostache.filters import FILTERS
from snapshots.octostache.parser import Parser
from snapshots.octostache.syntax import Bad, Calc, Cond, Each, If, Lit, Sub, Text, Tok, Value

EACH_SPECIALS = {
    "octopus.template.each.index": "(loop.index0 ~ '')",
    "octopus.template.each.first": "('True' if loop.first else 'False')",
    "octopus.template.each.last": "('True' if loop.last else 'False')",
}
def loop_split(parts: tuple[str | Value, ...], scope: tuple[tuple[str, str], ...]
                ) -> tuple[str, tuple[str | Value, ...]] | None:
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
            if isinstance(n, Text):
                self.out.append(f"{{{{ {self.const(n.text)} }}}}")
            elif isinstance(n, Sub):
                self.out.append(f"{{{{ {self.text(n.value, scope)} }}}}")
            elif isinstance(n, Bad):
                self.out.append(f"{{{{ _rt.bad(_tok[{n.tok}], {self.const(n.reason)}) }}}}")
            elif isinstance(n, If):
                test = self.cond(n.cond, n.tok, scope)
                self.out.append(f"{{% if {'not ' if n.kw == 'unless' else ''}({test}) %}}")
                self.nodes(n.body, scope)
                if n.orelse:
                    self.out.append("{% else %}")
                    self.nodes(n.orelse, scope)
                self.out.append("{% endif %}")
            elif isinstance(n, Each):
                jvar = f"_e{len(scope)}"
                split = loop_split(n.coll, scope)
                if split:
                    coll = f"_rt.each_item({split[0]}, {self.name(split[1], scope)}, _tok[{n.tok}])"
                else:
                    coll = f"_rt.each({self.name(n.coll, scope)}, _tok[{n.tok}])"
                self.out.append(f"{{% for {jvar} in {coll} %}}")
                self.nodes(n.body, (*scope, (n.var, jvar)))
                self.out.append("{% endfor %}")
            elif isinstance(n, Calc):
                self.out.append(f"{{{{ _rt.calc_out({self.calc(n.expr, n.tok, scope)}, _tok[{n.tok}]) }}}}")

    def name(self, parts: tuple[str | Value, ...], scope: tuple[tuple[str, str], ...] = ()) -> str:
        if not parts:
            return "''"
        pieces = [self.const(p) if isinstance(p, str) else self.text(p, scope) for p in parts]
        return "(" + " ~ ".join(pieces) + ")"

    def symbol(self, parts: tuple[str | Value, ...], tok: int, scope: tuple[tuple[str, str], ...],
               lenient: bool) -> str:
        flag = "true" if lenient else "false"
        if scope and len(parts) == 1 and isinstance(parts[0], str) and parts[0].lower() in EACH_SPECIALS:
            return EACH_SPECIALS[parts[0].lower()]
        split = loop_split(parts, scope)
        if split:
            return f"_rt.item_get({split[0]}, {self.name(split[1], scope)}, _tok[{tok}], {flag})"
        return f"_rt.get({self.name(parts, scope)}, _tok[{tok}], {flag})"

    def value(self, v: Value, scope: tuple[tuple[str, str], ...], lenient: bool = False) -> str:
        code = "none" if v.parts is None else self.symbol(v.parts, v.tok, scope, lenient)
        for f in v.filters:
            args = "".join(", " + (self.const(a) if isinstance(a, str) else self.text(a, scope)) for a in f.args)
            code = f"({code} | {f.name}(_tok[{v.tok}]{args}))"
        return code

    def text(self, v: Value, scope: tuple[tuple[str, str], ...]) -> str:
        if v.filters:
            return f"_rt.out({self.value(v, scope)}, _tok[{v.tok}], {self.const(v.echo)})"
        return f"_rt.out({self.value(v, scope)}, _tok[{v.tok}])"

    def cond(self, c: Cond, tok: int, scope: tuple[tuple[str, str], ...]) -> str:
        def operand(o: Lit | Value) -> str:
            if isinstance(o, Lit):
                return self.const(o.text)
            assert o.parts is not None
            if not o.filters:
                return self.symbol(o.parts, tok, scope, True)
            return f"_rt.cond_value({self.value(o, scope, lenient=True)}, _tok[{tok}])"

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
        if kind in "/%":
            return f"_rt.{'div' if kind == '/' else 'mod'}({left}, {right}, _tok[{tok}])"
        return f"({left} {kind} {right})"


@dataclass(frozen=True)
class Compiled:
    nodes: list[Any]
    source: str  # the Jinja source; compiled to a Template only when first rendered (see jinja)
    consts: tuple[str, ...]
    toks: tuple[Tok, ...]
    simple: tuple[str | tuple[str, int], ...] | None
    """Text and plain ``#{Name}`` substitutions only (most values): (name, token index) pairs between texts,
    evaluated without Jinja. None when the template has filters, blocks, nesting or malformed tokens."""


def _simple(nodes: list[Any]) -> tuple[str | tuple[str, int], ...] | None:
    pieces: list[str | tuple[str, int]] = []
    for n in nodes:
        if isinstance(n, Text):
            pieces.append(n.text)
        elif (isinstance(n, Sub) and not n.value.filters and n.value.parts is not None
              and len(n.value.parts) == 1 and isinstance(n.value.parts[0], str)):
            pieces.append((n.value.parts[0], n.value.tok))
        else:
            return None
    return tuple(pieces)


def compile_template(template: str) -> Compiled:
    """Parse and translate once per distinct text; values are compiled the same way, when first used."""
    return _compile_cached(template) if len(template) <= 65536 else _compile_uncached(template)


def _compile_uncached(template: str) -> Compiled:
    parser = Parser(template)
    nodes = parser.parse()
    gen = _Gen()
    gen.nodes(nodes, ())
    return Compiled(nodes, "".join(gen.out), tuple(gen.consts), tuple(parser.toks), _simple(nodes))


# Parsed templates are small: keep every value of a large project (each is parsed once per process, not once
# per target). Compiled Jinja templates weigh more and are needed only for filters and blocks: fewer of them.
_compile_cached = functools.lru_cache(maxsize=16384)(_compile_uncached)  # big files are not worth keeping


@functools.lru_cache(maxsize=512)
def jinja(source: str) -> Template:
    return ENV.from_string(source)


def collect_names(nodes: list[Any], scope: tuple[tuple[str, str], ...], required: set[str],
                   optional: set[str]) -> None:
    def sym(parts: tuple[str | Value, ...], target: set[str]) -> None:
        for p in parts:
            if isinstance(p, Value):
                value(p)
        first = parts[0] if len(parts) == 1 else None
        if isinstance(first, str) and not loop_split(parts, scope) and not (scope and first.lower() in EACH_SPECIALS):
            target.add(first)

    def value(v: Value) -> None:
        if v.parts:
            sym(v.parts, required)
        for f in v.filters:
            for a in f.args:
                if isinstance(a, Value):
                    value(a)

    def calc(e: tuple[Any, ...]) -> None:
        if e[0] == "sym":
            sym(e[1], required)
        elif e[0] != "num":
            for sub in e[1:]:
                calc(sub)

    for n in nodes:
        if isinstance(n, Sub):
            value(n.value)
        elif isinstance(n, Calc):
            calc(n.expr)
        elif isinstance(n, If):
            for o in (n.cond.left, n.cond.right):
                if isinstance(o, Value):
                    if o.parts:
                        sym(o.parts, optional)
                    for f in o.filters:
                        for a in f.args:
                            if isinstance(a, Value):
                                value(a)
            collect_names(n.body, scope, required, optional)
            collect_names(n.orelse, scope, required, optional)
        elif isinstance(n, Each):
            sym(n.coll, optional)
            collect_names(n.body, (*scope, (n.var, "")), required, optional)


# The sandbox evaluates everything; it only knows the filters above and no globals, tests or Python builtins.
ENV = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined)
ENV.filters = dict(FILTERS)
ENV.tests = {}
ENV.globals = {}
