"""A static check of PowerShell beyond parsing: every command a script invokes exists, with the parameters it names.

The script is parsed with tree-sitter-powershell. Each invoked command must be a function the script (or the
runner it runs inside) defines, a cmdlet in ``powershell_cmdlets.json`` — signatures from Microsoft's reference
pages for Windows PowerShell 5.1 and WebAdministration — whose module is loaded automatically or imported by the
script, an alias the table allows, or a native program it names (``tar.exe``). Every named parameter (``-Name``,
``-Force:$true``) and every key of a splatted hashtable (``New-Service @create``) must be a parameter, alias,
provider parameter or common parameter of that command. An abbreviation (``-Lit`` for ``-LiteralPath``) is refused
even when unique: PowerShell resolves it against the real, longer parameter list of the target's version, where it
may be ambiguous. Dynamic invocations (``& $block``) are not checked.

This finds misspelt cmdlets and parameters before a customer's server does; it does not check parameter *values*,
parameter-set combinations, .NET method calls or what the commands do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tree_sitter
import tree_sitter_powershell

TABLE_FILE = Path(__file__).with_name("powershell_cmdlets.json")
PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def load_table(path: Path = TABLE_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


@dataclass
class Function:
    name: str
    parameters: set[str] = field(default_factory=set)
    advanced: bool = False
    """[CmdletBinding()] or [Parameter()]: common parameters apply too."""


def _text(source: bytes, node: tree_sitter.Node) -> str:
    return source[node.start_byte:node.end_byte].decode("utf-8", "replace")


def _walk(node: tree_sitter.Node) -> list[tree_sitter.Node]:
    found, stack = [], [node]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(reversed(current.children))
    return found


def functions(source: bytes) -> dict[str, Function]:
    """Functions a script defines (scope prefixes such as ``global:`` dropped), lower-cased name → Function."""
    defined: dict[str, Function] = {}
    for node in _walk(PARSER.parse(source).root_node):
        if node.type != "function_statement":
            continue
        name_node = next(c for c in node.children if c.type == "function_name")
        name = _text(source, name_node).split(":")[-1]
        function = Function(name)
        for part in _walk(node):
            if part is not node and part.type == "function_statement":
                continue
            if part.type == "script_parameter" and _declares_for(part, node):
                variable = next((c for c in part.children if c.type == "variable"), None)
                if variable is not None:
                    function.parameters.add(_text(source, variable).lstrip("$").split(":")[-1].lower())
                if re.search(r"\[\s*Parameter\s*[(\]]", _text(source, part), re.I):
                    function.advanced = True
            elif part.type == "attribute" and re.match(r"\[\s*CmdletBinding", _text(source, part), re.I):
                function.advanced = True
        defined[name.lower()] = function
    return defined


def _declares_for(parameter: tree_sitter.Node, function: tree_sitter.Node) -> bool:
    """True when ``parameter`` belongs to ``function`` itself, not to a nested function or script block."""
    node = parameter.parent
    while node is not None and node != function:
        if node.type in ("function_statement", "script_block_expression"):
            return False
        node = node.parent
    return True


@dataclass
class Call:
    name: str
    line: int
    parameters: list[str]
    splats: list[str]


def calls(source: bytes) -> list[Call]:
    """Every command invocation with a literal name: its named parameters and splatted variables."""
    found = []
    for node in _walk(PARSER.parse(source).root_node):
        if node.type != "command":
            continue
        name_node = next((c for c in node.children if c.type == "command_name"), None)
        if name_node is None:
            expr = next((c for c in node.children if c.type == "command_name_expr"), None)
            name_node = next((c for c in expr.children if c.type == "command_name"), None) if expr else None
        if name_node is None:
            continue  # & $scriptBlock, . $file: dynamic
        parameters: list[str] = []
        splats: list[str] = []
        stack = [c for c in node.children if c.type in ("command_elements", "command_name_expr")]
        while stack:
            part = stack.pop()
            if part.type == "command":
                continue  # a nested command is checked on its own
            if part.type == "command_parameter":
                parameters.append(_text(source, part).lstrip("-").rstrip(":"))
            elif part.type == "variable" and _text(source, part).startswith("@"):  # only splatting spells @name
                splats.append(_text(source, part)[1:])
            stack.extend(c for c in part.children if c.type not in ("script_block_expression", "command"))
        found.append(Call(_text(source, name_node), node.start_point[0] + 1, parameters, splats))
    return found


def splat_keys(source: str, variable: str) -> list[str]:
    """Keys a script puts into a splatted hashtable: ``$v = @{ Key = …; … }`` and ``$v['Key'] = …``."""
    keys: list[str] = []
    name = re.escape(variable)
    for match in re.finditer(r"\$" + name + r"\s*=\s*@\{(.*?)\}\s*$", source, re.M | re.I | re.S):
        keys += re.findall(r"(?:^|[;{\s])([A-Za-z_][A-Za-z0-9_]*)\s*=", match.group(1))
    keys += re.findall(r"\$" + name + r"\[\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]\s*\]\s*=", source, re.I)
    return keys


def _imports(source: str) -> set[str]:
    pattern = r"^\s*Import-Module\s+(?:-Name\s+)?['\"]?([A-Za-z0-9_.]+)"
    return {m.lower() for m in re.findall(pattern, source, re.M | re.I)}


def _resolve(name: str, names: dict[str, str], what: str) -> str | None:
    """None when ``name`` is a parameter of the command; else the problem."""
    lowered = name.lower()
    if lowered in names:
        return None
    prefixed = sorted({full for spelled, full in names.items() if spelled.startswith(lowered)})
    if len(prefixed) == 1:
        return f"-{name} abbreviates -{prefixed[0]} of {what}: write it out"
    if prefixed:
        return f"-{name} is ambiguous for {what} (-{', -'.join(prefixed)})"
    return f"{what} has no parameter -{name}"


def check(source: bytes, table: dict[str, Any], *, also_defined: dict[str, Function] | None = None) -> list[str]:
    """Every problem as 'line N: …' (empty when the script passes)."""
    text = source.decode("utf-8")
    defined = {**(also_defined or {}), **functions(source)}
    imported = _imports(text)
    auto = {m.lower() for m in table["auto_loaded_modules"]}
    cmdlets = {k.lower(): (k, v) for k, v in table["cmdlets"].items()}
    natives = {k.lower() for k in table["native_commands"]}
    aliases = {k.lower(): v for k, v in table.get("aliases", {}).items()}
    problems: list[str] = []
    for call in calls(source):
        lowered = call.name.lower()
        where = f"line {call.line}"
        if lowered in natives:
            continue
        names: dict[str, str] = {}
        if lowered in defined:
            function = defined[lowered]
            names = {p: p for p in function.parameters}
            if function.advanced:
                for common, short in table["common_parameters"].items():
                    names.update({common.lower(): common, **{s.lower(): common for s in short}})
            what = f"function {function.name}"
        else:
            lowered = aliases.get(lowered, lowered).lower()
            if lowered not in cmdlets:
                problems.append(f"{where}: {call.name} is not a function of the script, a known cmdlet, an allowed "
                                "alias or an allowed native command")
                continue
            spelled, entry = cmdlets[lowered]
            if entry["module"].lower() not in auto and entry["module"].lower() not in imported:
                problems.append(f"{where}: {spelled} is in module {entry['module']}, which the script does not import")
            groups = [entry["parameters"], entry.get("provider_parameters", {}), table["common_parameters"]]
            if entry.get("should_process"):
                groups.append(table["should_process_parameters"])
            for group in groups:
                for full, short in group.items():
                    names.update({full.lower(): full, **{s.lower(): full for s in short}})
            what = spelled
        for parameter in call.parameters:
            problem = _resolve(parameter, names, what)
            if problem:
                problems.append(f"{where}: {problem}")
        for variable in call.splats:
            keys = splat_keys(text, variable)
            if not keys:
                problems.append(f"{where}: @{variable} is splatted but the script builds it in a way this check "
                                "cannot read (a literal @{{...}} and $v['Key'] = … are read)")
            for key in keys:
                problem = _resolve(key, names, what)
                if problem:
                    problems.append(f"{where}: @{variable}: {problem}")
    return problems
