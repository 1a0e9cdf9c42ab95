"""Which version ``release create`` gives a release when none is named."""

from __future__ import annotations

from typing import Any

from snapshots.errors import ConfigError
from snapshots.feed import Package
from snapshots.versions import next_patch, parse_version


def next_release_version(project_document: dict[str, Any], packages: list[Package], existing: list[str]) -> str:
    """From a named package's version, from the project's template, or the next patch after the highest."""
    versioning = project_document.get("versioning") or {}
    if versioning.get("from_package"):
        package_id = versioning["from_package"]
        match = next((p for p in packages if p.package_id == package_id), None)
        if match is None:
            raise ConfigError(f"versioning.from_package {package_id!r} is not one of the release's packages")
        return match.version
    if versioning.get("template"):
        from snapshots.version_template import render_version_template

        unscoped = {v["name"]: v["value"] for v in project_document.get("variables", [])
                    if not v.get("sensitive") and v.get("value") is not None
                    and not any((v.get("scope") or {}).values())}
        rendered = render_version_template(versioning["template"], existing, variables=unscoped)
        return str(parse_version(rendered, what=f"version from template {versioning['template']!r}"))
    return next_patch(existing)
