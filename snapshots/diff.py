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
            variables.append(f"- {_variable_key(old)} = {_shown(old)}")
        elif new and not old:
            variables.append(f"+ {_variable_key(new)} = {_shown(new)}")
        elif old and new and not _same(old, new):
            if old.get("sensitive") or new.get("sensitive"):
                variables.append(f"~ {_variable_key(new)}: {MASK} (sensitive value changed)")
            else:
                variables.append(f"~ {_variable_key(new)}: {_shown(old)} → {_shown(new)}")
    old_text = yaml.safe_dump(a.process, sort_keys=False, allow_unicode=True).splitlines()
    new_text = yaml.safe_dump(b.process, sort_keys=False, allow_unicode=True).splitlines()
    process = list(difflib.unified_diff(old_text, new_text, f"{a.version}/process", f"{b.version}/process",
                                        lineterm="", n=2))
    return {"packages": packages, "variables": variables, "process": process}
