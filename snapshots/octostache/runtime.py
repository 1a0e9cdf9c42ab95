"""Per-render state the compiled Jinja template calls back into: lookups, ``#{each}`` groups, messages."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from snapshots.errors import TemplateError
from snapshots.octostache import json_values
from snapshots.octostache.compile import compile_template, jinja
from snapshots.octostache.json_values import ABSENT
from snapshots.octostache.syntax import FAILED, MISSING, CompileError, Sentinel, Tok, canon, show
from snapshots.octostache.table import VariableTable

_MAX_NESTING = 32  # values referring to values referring to ... deeper than this is a mistake, not a design


def is_truthy(value: str | None) -> bool:
    """Octopus truthiness: undefined, empty, ``False``, ``No`` and ``0`` (any case, surrounding blanks) are false."""
    if value is None:
        return False
    return value.strip().lower() not in ("", "false", "no", "0")


@dataclass(frozen=True)
class Item:
    """One ``#{each}`` item: a group member ``Coll[key]`` (path set), one entry of a comma list, or an element or
    property of a JSON value (``node`` set: the element, or the property's value)."""

    path: str | None
    key: str
    node: Any = ABSENT


def _bracket_end(text: str, start: int) -> int | None:
    """Index of the ``]`` matching the ``[`` at ``start`` (indexes nest: ``Package[container[0]]``)."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"[": 1, "]": -1}.get(text[i], 0)
        if depth == 0:
            return i
    return None


class Runtime:
    """Per-render state the compiled template calls back into: variables, strictness, warnings, recursion."""

    def __init__(self, variables: Mapping[str, str], *, strict: bool, warnings: list[str] | None, where: str,
                 unknown_is_empty: bool = False) -> None:
        table = variables if isinstance(variables, VariableTable) else VariableTable(variables)
        self.values: dict[str, str] = table._values
        self._table = table
        self.strict, self.where, self.unknown_is_empty = strict, where, unknown_is_empty
        self.warnings = warnings if warnings is not None else []
        self.resolved: dict[str, str] = {}
        self.stack: list[tuple[str, str, Tok]] = []  # (lower name, name, token) of values being evaluated
        self.groups: dict[str, list[Item]] = {}

    # -- messages

    def _sensitive_in_stack(self) -> str | None:
        """The outermost variable being evaluated whose value is sensitive (a ``VariableSet`` knows), if any."""
        is_sensitive = getattr(self._table, "is_sensitive", None)
        if is_sensitive is None:
            return None
        return next((name for _, name, _ in self.stack if is_sensitive(name)), None)

    def message(self, tok: Tok, text: str) -> str:
        if self.stack and (secret := self._sensitive_in_stack()) is not None:
            # inside a secret's value: any detail (a name, a position) would be a fragment of the secret
            outer = self.stack[0][2]
            loc = f"line {outer.line}, column {outer.col}"
            text = (f"the value of sensitive variable '{secret}' does not evaluate as a template "
                    "(its text is not shown)")
            return f"{self.where}: {loc}: {text}" if self.where else f"{loc}: {text}"
        if self.stack:  # inside a value: point at the top-level token, never quote the value's text
            outer = self.stack[0][2]
            chain = " -> ".join(f"'{name}'" for _, name, _ in self.stack)
            loc = f"line {outer.line}, column {outer.col}"
            text = f"{text} (in the value of variable {chain}, line {tok.line}, column {tok.col})"
        else:
            loc = f"line {tok.line}, column {tok.col}"
            if tok.text:
                text = f"{text} in {show(tok.text)}"
        return f"{self.where}: {loc}: {text}" if self.where else f"{loc}: {text}"

    def error(self, tok: Tok, text: str, variable: str | None = None) -> TemplateError:
        """The error with its position as fields: the line and column of the template's own token (inside a
        value, the use that led there) and the variable at fault (named, or else the value being evaluated)."""
        at = self.stack[0][2] if self.stack else tok
        if variable is None and self.stack:
            variable = self.stack[-1][1]
        if self.stack and (secret := self._sensitive_in_stack()) is not None:
            variable = secret
        err = TemplateError(self.message(tok, text), variable=variable, line=at.line or None, column=at.col or None)
        err.where = self.where  # type: ignore[attr-defined]  # extra context, not a TemplateError field
        return err

    def fail(self, tok: Tok, text: str) -> Sentinel:
        if self.strict:
            raise self.error(tok, text)
        self.warnings.append(self.message(tok, text))
        return FAILED

    # -- evaluation

    @property
    def names(self) -> Iterable[str]:
        """Canonical names in the caller's order, for ``#{each}`` groups."""
        return self._table._names.values()

    def run(self, template: str) -> str:
        try:
            compiled = compile_template(template)
        except CompileError as exc:
            raise self.error(exc.tok, exc.message) from None
        if compiled.simple is not None:  # text and plain #{Name}s: exactly what the Jinja code would do
            toks = compiled.toks
            return "".join(piece if isinstance(piece, str) else self.out(self.get(piece[0], toks[piece[1]], False),
                                                                         toks[piece[1]])
                           for piece in compiled.simple)
        return jinja(compiled.source).render(_t=compiled.consts, _tok=compiled.toks, _rt=self)

    def _resolve(self, name: str, tok: Tok) -> str | None:
        """The value of a variable with its own ``#{...}`` evaluated (once per render), or None if undefined."""
        key = name.lower()
        if key in self.resolved:
            return self.resolved[key]
        raw = self.values.get(key)
        if raw is None or "#{" not in raw:
            return raw
        value = self._evaluate(key, name, tok, raw)
        self.resolved[key] = value
        return value

    def _missing(self, name: str, tok: Tok, lenient: bool, text: str = "") -> str | Sentinel:
        """An unknown name: empty in a condition; otherwise an error in strict mode, and in Octopus mode the token
        is echoed as written (``FAILED``), as Octostache does; a run condition (``unknown_is_empty``) reads empty."""
        if lenient:
            return ""
        text = text or f"unknown variable '{name}'"
        if self.strict and not self.unknown_is_empty:
            raise self.error(tok, text, variable=name)
        self.warnings.append(self.message(tok, text))
        return MISSING if self.unknown_is_empty else FAILED

    def _evaluate(self, key: str, name: str, tok: Tok, text: str) -> str:
        """Evaluate ``text`` (a value holding ``#{...}``) as the value of ``name``, guarding against cycles."""
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
            return self.run(text)
        finally:
            self.stack.pop()

    def _json_node(self, name: str, tok: Tok) -> tuple[str, Any] | None:
        """For an undefined ``name`` such as ``Test.Items[1].Name``: the longest defined prefix whose value is JSON
        and the node the rest of the name selects (``ABSENT`` if there is none); None if no prefix is JSON.  A
        prefix being evaluated right now does not count (its value cannot be read while it is being built)."""
        cuts = [i for i, c in enumerate(name) if c in ".[" and name[:i].count("[") == name[:i].count("]")]
        for cut in reversed(cuts):
            prefix, key = name[:cut], name[:cut].lower()
            raw = self.values.get(key)
            if raw is None or any(k == key for k, _, _ in self.stack):
                continue
            doc = json_values.parse(raw)
            if doc is ABSENT and "#{" in raw and raw.lstrip().startswith(("{", "[", "#{")):
                try:  # JSON built from other variables ({#{Prop}: "#{Val}"}): its evaluated text
                    doc = json_values.parse(self._resolve(prefix, tok) or "")
                except TemplateError:
                    continue  # a prefix that cannot be evaluated is not a JSON value; the name stays unknown
            segments = json_values.split_path(name[cut:])
            if doc is ABSENT or segments is None:
                continue
            return prefix, json_values.walk(doc, segments)
        return None

    def _json_text(self, name: str, node: Any, tok: Tok, lenient: bool, owner: str) -> str | Sentinel:
        """A selected JSON node as text (a string leaf may itself hold ``#{...}``); a missing property is empty in
        Octopus mode, as Octostache has it, and an error in strict mode."""
        if node is ABSENT:
            if lenient or not self.strict or self.unknown_is_empty:
                return ""
            raise self.error(tok, f"the JSON value of '{owner}' has no '{name[len(owner):]}'", variable=owner)
        text = json_values.as_text(node)
        return self._evaluate(name.lower(), name, tok, text) if "#{" in text else text

    def get(self, name: str, tok: Tok, lenient: bool) -> str | Sentinel:
        name = canon(name)
        value = self._resolve(name, tok)
        if value is not None:
            return value
        if "[*]" in name and (match := self._wildcard(name)) is not None:
            return self._resolve(match, tok) or ""
        if (found := self._json_node(name, tok)) is not None:
            return self._json_text(name, found[1], tok, lenient, found[0])
        return self._missing(name, tok, lenient)

    def _wildcard(self, name: str) -> str | None:
        """``Octopus.Action[*].Name``: the first defined name with any index there (Octostache picks one)."""
        pattern = re.compile(re.escape(name).replace(r"\[\*\]", r"\[[^\]]*\]"), re.IGNORECASE)
        return next((candidate for candidate in self.names if pattern.fullmatch(candidate)), None)

    def item_get(self, item: Item, rest: str, tok: Tok, lenient: bool) -> str | Sentinel:
        """``#{e}``, ``#{e.Address}``, ``#{e.Key}`` for an ``#{each e in ...}`` item."""
        rest = canon(rest)
        if item.node is not ABSENT:
            return self._json_item(item, rest, tok, lenient)
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

    def _json_item(self, item: Item, rest: str, tok: Tok, lenient: bool) -> str | Sentinel:
        """``#{x}``, ``#{x.Key}``, ``#{x.Value}``, ``#{x.Value.Error}``, ``#{x.Name}`` of a JSON item."""
        low = rest.lower()
        if low in ("", ".key"):
            return item.key
        if low == ".value" or low.startswith((".value.", ".value[")):
            rest = rest[len(".value"):]
        node = json_values.walk(item.node, json_values.split_path(rest) or []) if rest else item.node
        if node is ABSENT and not (lenient or not self.strict or self.unknown_is_empty):
            raise self.error(tok, f"an #{{each}} item of a JSON value has no '{rest}'")
        return "" if node is ABSENT else json_values.as_text(node)

    def _items(self, node: Any) -> list[Item]:
        return [Item(None, key, value) for key, value in json_values.entries(node)]

    def each(self, name: str, tok: Tok) -> list[Item]:
        """A defined variable iterates its JSON array or object, else its comma-separated entries; otherwise the
        node a JSON path selects, or the indexes of ``Name[...]``."""
        name = canon(name)
        value = self._resolve(name, tok)
        if value is not None:
            doc = json_values.parse(value)
            if doc is not ABSENT:
                return self._items(doc)
            return [Item(None, e) for e in (p.strip() for p in value.split(",")) if e]
        if (found := self._json_node(name, tok)) is not None:
            node = found[1]
            if isinstance(node, str) and (doc := json_values.parse(node)) is not ABSENT:
                node = doc
            return self._items(node)
        key = name.lower()
        if key not in self.groups:
            seen: dict[str, Item] = {}
            for candidate in self.names:
                if not candidate.lower().startswith(key + "["):
                    continue
                close = _bracket_end(candidate, len(name))
                if close is None or candidate[close + 1:close + 2] not in ("", ".", "["):
                    continue
                index = candidate[len(name) + 1:close]
                seen.setdefault(index.lower(), Item(f"{name}[{index}]", index))
            self.groups[key] = list(seen.values())
        return self.groups[key]

    def each_item(self, item: Item, rest: str, tok: Tok) -> list[Item]:
        if item.node is not ABSENT:
            low = canon(rest).lower()
            sub = canon(rest)[len(".value"):] if low.startswith(".value") else canon(rest)
            return self._items(json_values.walk(item.node, json_values.split_path(sub) or []) if sub else item.node)
        if item.path is not None:
            return self.each(item.path + canon(rest), tok)
        if canon(rest):
            return []
        return [Item(None, e) for e in (p.strip() for p in item.key.split(",")) if e]

    def out(self, value: str | Sentinel | None, tok: Tok, echo: str = "") -> str:
        """What a substitution prints: its value, or in Octopus mode the token when it could not be evaluated
        (with filters, re-spelled as Octostache prints it: ``#{foo | Match "a" "b"}``)."""
        if value is FAILED:
            return echo or tok.text
        return value if isinstance(value, str) else ""

    def bad(self, tok: Tok, reason: str) -> str:
        self.fail(tok, reason)
        return tok.text

    @staticmethod
    def truthy(value: str) -> bool:
        return is_truthy(value)

    def cond_value(self, value: str | Sentinel | None, tok: Tok) -> str:
        """A filtered operand of a condition. A filter that cannot apply has no value to compare: Octopus mode
        would have to guess, so it is an error in both modes (the warning says which filter)."""
        if value is FAILED:
            raise self.error(tok, "a filter in this condition could not apply")
        return value if isinstance(value, str) else ""

    def num(self, value: str | Sentinel, tok: Tok) -> float:
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*", value):
            return float(value)
        if isinstance(value, str):
            self.fail(tok, "#{calc}: an operand is not a number")
        return math.nan

    def div(self, left: float, right: float, tok: Tok) -> float:
        if right == 0:
            self.fail(tok, "#{calc}: division by zero")
            return math.nan
        return left / right

    def mod(self, left: float, right: float, tok: Tok) -> float:
        """Octostache's ``%``: whole numbers only, never by zero (there is no answer otherwise)."""
        if math.isnan(left) or math.isnan(right):
            return math.nan
        if left != int(left) or right != int(right) or right == 0:
            self.fail(tok, "#{calc}: % needs whole numbers and a divisor other than 0")
            return math.nan
        return float(math.fmod(int(left), int(right)))

    def calc_out(self, result: float, tok: Tok) -> str:
        if math.isinf(result):
            self.fail(tok, "#{calc}: the result is too large")
        if not math.isfinite(result):  # echoed as Octostache does: the expression without "calc"
            return re.sub(r"^#\{\s*calc\s+", "#{", tok.text, flags=re.IGNORECASE)
        if result == int(result) and abs(result) < 1e15:
            return str(int(result))
        return repr(result)


