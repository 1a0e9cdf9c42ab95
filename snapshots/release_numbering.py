"""Which version ``release create`` gives a release when none is named: a named package's version, the
project's version template (Octopus "Release versioning", /docs/releases/release-versioning), or the next
patch after the highest.

A project's ``versioning: {template: ...}`` is an Octostache template rendered with:

* ``Version.(Last|Next)(Major|Minor|Patch)`` (also ``Octopus.Version.…``): the components of the highest
  existing release version (SemVer precedence), 0 when there is none; ``Next`` is ``Last`` + 1 of that
  component alone (``#{Version.LastMajor}.#{Version.NextMinor}.0`` resets the patch itself).
  ``Version.LastSuffix``: its pre-release text without the dash ("" when none).
* ``Date.(Year|Month|Day|DayOfYear)`` and ``Time.(Hour|Minute|Second)`` (also ``Octopus.Date.…`` /
  ``Octopus.Time.…``), in UTC so every worker computes the same version, zero-padded like .NET's
  ``yyyy``/``MM``/``dd``/``HH``/``mm``/``ss`` and a three-digit day of the year.

The result may then be an Octopus *semantic version mask* (``2.1.c.i``: ``c`` current, ``i`` increment),
applied to the highest existing version that shares the mask's fixed leading components, with Octopus's
rules: a component after an incremented one restarts at 0, missing components count as 0, a mask's
pre-release tag replaces the current one. Finally, because SemVer 2 forbids leading zeros in numbers,
zero-padded numeric identifiers are unpadded (``2026.01.07`` → ``2026.1.7``), so the documented date
templates give valid versions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import semver

from snapshots import octostache
from snapshots.errors import ConfigError, TemplateError
from snapshots.store.feed import Package
from snapshots.versions import next_patch, parse_version

_MASK = re.compile(r"(?P<core>(?:\d+|[ic])\.(?:\d+|[ic])(?:\.(?:\d+|[ic]))?)"
                   r"(?:-(?P<tag>[0-9A-Za-z]+(?:\.[0-9A-Za-z]+)*))?")
_VERSIONISH = re.compile(r"(?P<core>\d+(?:\.\d+)*)(?P<rest>[-+].*)?", re.DOTALL)


def _parsed(existing: Iterable[str]) -> list[semver.Version]:
    out = []
    for text in existing:
        try:
            out.append(semver.Version.parse(text))
        except ValueError:
            continue  # not ours to judge here: stored versions were validated when stored
    return out


def template_variables(existing_versions: Iterable[str], now: datetime | None = None) -> dict[str, str]:
    """The special variables of a version template (each also under its ``Octopus.`` spelling)."""
    versions = _parsed(existing_versions)
    last = max(versions) if versions else semver.Version(0, 0, 0)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    values = {
        "Version.LastMajor": str(last.major), "Version.LastMinor": str(last.minor),
        "Version.LastPatch": str(last.patch), "Version.NextMajor": str(last.major + 1),
        "Version.NextMinor": str(last.minor + 1), "Version.NextPatch": str(last.patch + 1),
        "Version.LastSuffix": last.prerelease or "",
        "Date.Year": f"{now.year:04d}", "Date.Month": f"{now.month:02d}", "Date.Day": f"{now.day:02d}",
        "Date.DayOfYear": f"{now.timetuple().tm_yday:03d}", "Time.Hour": f"{now.hour:02d}",
        "Time.Minute": f"{now.minute:02d}", "Time.Second": f"{now.second:02d}",
    }
    return {**values, **{f"Octopus.{name}": value for name, value in values.items()}}


def render_version_template(template: str, existing_versions: list[str], *, now: datetime | None = None,
                            variables: Mapping[str, str] | None = None) -> str:
    """The next release version from ``template``, given the project's existing versions.

    ``variables`` may add project values (Octopus allows unscoped ones); the special ones win. An unknown
    name or a malformed template is a ``ConfigError`` naming the template.
    """
    values = {**(variables or {}), **template_variables(existing_versions, now)}
    try:
        rendered = octostache.render(template, values, where=f"versioning template {template!r}").strip()
    except TemplateError as exc:
        raise ConfigError(str(exc)) from None
    if is_mask(rendered):
        rendered = apply_mask(rendered, existing_versions)
    return _unpad(rendered)


def is_mask(text: str) -> bool:
    """Octopus's rule: a mask has ``i``/``c`` in a number, or a pre-release tag ending in ``.i``/``.c``."""
    m = _MASK.fullmatch(text)
    if m is None:
        return False
    tag = m["tag"] or ""
    return any(p in ("i", "c") for p in m["core"].split(".")) or tag.endswith((".i", ".c"))


def _unpad(text: str) -> str:
    """Strip leading zeros from numeric identifiers of a version-shaped text (SemVer 2 forbids them)."""
    m = _VERSIONISH.fullmatch(text)
    if not m:
        return text
    core = ".".join(str(int(part)) for part in m["core"].split("."))
    rest = m["rest"] or ""
    if rest.startswith("-"):
        pre, plus, build = rest[1:].partition("+")
        pre = ".".join(str(int(p)) if p.isdigit() else p for p in pre.split("."))
        rest = f"-{pre}{plus}{build}"
    return core + rest


def apply_mask(mask: str, existing_versions: Iterable[str]) -> str:
    """Apply an Octopus version mask (``1.2.i``, ``c.c.i``, ``1.0.0-beta.i``) to the latest matching version."""
    m = _MASK.fullmatch(mask)
    if m is None:
        raise ConfigError(f"{mask!r} is not a version mask (e.g. 1.2.i or c.c.i)")
    parts = m["core"].split(".")
    tag = m["tag"]
    current = _latest_matching(parts, _parsed(existing_versions))
    if current is None:
        numbers = ["0" if p in "ic" else p for p in parts]
        tags = ["0" if p in ("i", "c") else p for p in tag.split(".")] if tag else []
    else:
        have = [current.major, current.minor, current.patch]
        numbers = []
        for position, part in enumerate(parts):
            previous_incremented = position > 0 and parts[position - 1] == "i"
            if part in ("i", "c"):
                numbers.append("0" if previous_incremented else str(have[position] + (part == "i")))
            else:
                numbers.append(part)
        tags = _mask_tag(tag, current.prerelease) if tag else []
    numbers += ["0"] * (3 - len(numbers))
    return ".".join(numbers) + (f"-{'.'.join(tags)}" if tags else "")


def _mask_tag(tag: str, current: str | None) -> list[str]:
    identifiers = tag.split(".")
    have = current.split(".") if current else []
    substitutes = identifiers[-1] in ("i", "c")
    out = []
    for k, ident in enumerate(identifiers):
        if k > 0 and identifiers[k - 1] == "i" and substitutes:
            out.append("0")
            continue
        value = int(have[k]) if k < len(have) and have[k].isdigit() else 0
        out.append(str(value + 1) if ident == "i" else str(value) if ident == "c" else ident)
    return out


def _latest_matching(parts: list[str], versions: list[semver.Version]) -> semver.Version | None:
    """The highest version whose components before the mask's first ``i``/``c`` equal the mask's."""
    def fits(v: semver.Version) -> bool:
        for part, have in zip(parts, (v.major, v.minor, v.patch), strict=False):
            if part in ("i", "c"):
                return True
            if int(part) != have:
                return False
        return True

    matching = [v for v in versions if fits(v)]
    return max(matching) if matching else None


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
        unscoped = {v["name"]: v["value"] for v in project_document.get("variables", [])
                    if not v.get("sensitive") and v.get("value") is not None
                    and not any((v.get("scope") or {}).values())}
        rendered = render_version_template(versioning["template"], existing, variables=unscoped)
        return str(parse_version(rendered, what=f"version from template {versioning['template']!r}"))
    return next_patch(existing)


__all__ = ["apply_mask", "is_mask", "next_release_version", "render_version_template", "template_variables"]
