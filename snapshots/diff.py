"""What changed between two releases: packages, variables (masked) and process, as readable lines."""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from snapshots.canonical import canonical_json
from snapshots.releases import MASK, Release


def _scope_text(scope: dict[str, list[str]]) -> str:
    parts = [f"{kind}={','.join(values)}" for kind, values in sorted(scope.items()) if values]
    return f" [{'; '.join(parts)}]" if parts else ""


def _variable_key(var: dict[str, Any]) -> str:
    return f"{var['name']}{_scope_text(var.get('scope') or {})}"


def _shown(var: dict[str, Any]) -> str:
    return MASK if var.get("sensitive") else repr(var.get("value"))


def _from(var: dict[str, Any]) -> str:
    """`` (library: Database r3)`` for a variable a library set or step template gave, else nothing."""
    return f" ({var['source']})" if var.get("source") else ""


def _moved(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("source") == new.get("source"):
        return _from(new)
    return f" ({old.get('source') or 'project'} → {new.get('source') or 'project'})"


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    strip = ("ciphertext",)
    return canonical_json({k: v for k, v in a.items() if k not in strip}) == \
        canonical_json({k: v for k, v in b.items() if k not in strip})


def diff_releases(a: Release, b: Release) -> dict[str, list[str]]:
    """Sections ``packages``, ``variables``, ``process``, each a list of human-readable change lines."""
    packages = []
    a_pkgs = {p["id"]: p for p in a.packages}
    b_pkgs = {p["id"]: p for p in b.packages}
    for pid in sorted(set(a_pkgs) | set(b_pkgs)):
        old, new = a_pkgs.get(pid), b_pkgs.get(pid)
        if old and not new:
            packages.append(f"- {pid} {old['version']}")
        elif new and not old:
            packages.append(f"+ {pid} {new['version']}")
        elif old and new and old["sha256"] != new["sha256"]:
            packages.append(f"~ {pid} {old['version']} → {new['version']}")
    variables = []
    a_vars = {_variable_key(v).casefold(): v for v in a.variables.variables}
    b_vars = {_variable_key(v).casefold(): v for v in b.variables.variables}
    for key in sorted(set(a_vars) | set(b_vars)):
        old, new = a_vars.get(key), b_vars.get(key)
        if old and not new:
            variables.append(f"- {_variable_key(old)} = {_shown(old)}{_from(old)}")
        elif new and not old:
            variables.append(f"+ {_variable_key(new)} = {_shown(new)}{_from(new)}")
        elif old and new and not _same(old, new):
            if old.get("sensitive") and new.get("sensitive") and old.get("fingerprint") == new.get("fingerprint"):
                variables.append(f"~ {_variable_key(new)}: {MASK}{_moved(old, new)}")  # same secret, new source
            elif old.get("sensitive") or new.get("sensitive"):
                variables.append(f"~ {_variable_key(new)}: {MASK} (sensitive value changed){_moved(old, new)}")
            elif _shown(old) == _shown(new):
                variables.append(f"~ {_variable_key(new)}: {_shown(new)}{_moved(old, new)}")
            else:
                variables.append(f"~ {_variable_key(new)}: {_shown(old)} → {_shown(new)}{_moved(old, new)}")
    old_text = yaml.safe_dump(a.process, sort_keys=False, allow_unicode=True).splitlines()
    new_text = yaml.safe_dump(b.process, sort_keys=False, allow_unicode=True).splitlines()
    process = list(difflib.unified_diff(old_text, new_text, f"{a.version}/process", f"{b.version}/process",
                                        lineterm="", n=2))
    changes = {"packages": packages, "variables": variables, "process": process}
    if a.snapshot.get("library") or b.snapshot.get("library"):  # only releases that used a library get the section
        changes["library"] = _library_changes(a.snapshot.get("library") or {}, b.snapshot.get("library") or {})
    return changes


def _library_changes(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Which library variable set and step template revisions each release froze, where they differ."""
    lines = []
    old_sets = {s["name"]: s["revision"] for s in a.get("variable_sets") or []}
    new_sets = {s["name"]: s["revision"] for s in b.get("variable_sets") or []}
    for name in sorted(set(old_sets) | set(new_sets)):
        if name not in new_sets:
            lines.append(f"- library variable set {name} r{old_sets[name]}")
        elif name not in old_sets:
            lines.append(f"+ library variable set {name} r{new_sets[name]}")
        elif old_sets[name] != new_sets[name]:
            lines.append(f"~ library variable set {name} r{old_sets[name]} → r{new_sets[name]}")
    old_steps = {t["step"]: t for t in a.get("step_templates") or []}
    new_steps = {t["step"]: t for t in b.get("step_templates") or []}
    for step in sorted(set(old_steps) | set(new_steps)):
        old, new = old_steps.get(step), new_steps.get(step)
        if new is None and old is not None:
            lines.append(f"- step {step!r}: template {old['template']} r{old['revision']}")
        elif old is None and new is not None:
            lines.append(f"+ step {step!r}: template {new['template']} r{new['revision']}")
        elif old is not None and new is not None and (old["template"], old["revision"]) != (new["template"],
                                                                                              new["revision"]):
            lines.append(f"~ step {step!r}: template {old['template']} r{old['revision']} → "
                         f"{new['template']} r{new['revision']}")
    return lines
