"""SemVer 2 versions: parsing with a clear error, and ordering (the ``latest`` of anything)."""

from __future__ import annotations

from collections.abc import Iterable

import semver

from snapshots.errors import ConfigError


def parse_version(text: str, *, what: str = "version") -> semver.Version:
    try:
        return semver.Version.parse(text.strip())
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid {what} {text!r}: not SemVer 2 (MAJOR.MINOR.PATCH[-pre][+build])") from exc


def is_version(text: str) -> bool:
    return semver.Version.is_valid(text)


def sort_key(text: str) -> semver.Version:
    return semver.Version.parse(text)


def latest(versions: Iterable[str], *, stable_only: bool = False) -> str | None:
    """Highest version by SemVer precedence (optionally ignoring pre-releases)."""
    candidates = [v for v in versions if not (stable_only and semver.Version.parse(v).prerelease)]
    return max(candidates, key=sort_key, default=None)


def next_patch(versions: Iterable[str]) -> str:
    """The version after the highest: 0.0.1 when there is none; 1.2.4 after 1.2.3 and after 1.2.4-rc.1."""
    highest = latest(versions)
    if highest is None:
        return "0.0.1"
    version = semver.Version.parse(highest)
    if version.prerelease:
        return str(version.finalize_version())
    return str(version.bump_patch())
