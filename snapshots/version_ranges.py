"""Version ranges for channel rules: NuGet interval notation (what Octopus channels use) and space-separated
comparators (what npm and Cargo users write), compared by SemVer 2 precedence.

NuGet: ``1.0`` (at least 1.0), ``[1.0]`` (exactly), ``[1.0,2.0)``, ``(1.0,)``, ``(,2.0]``.
Comparators: ``>=1.2 <2``, ``>1.0.0``, ``<=3``, ``=1.4.2``, joined by spaces or commas (all must hold).
Partial versions are filled with zeros (``1.2`` is ``1.2.0``); a pre-release on a bound is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import semver

_COMPARATOR = re.compile(r"^(>=|<=|>|<|=|==)?\s*v?(\d+(?:\.\d+){0,2}(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?)$")


class RangeSyntaxError(ValueError):
    """The text is not a version range; the message says what was expected."""


@dataclass(frozen=True)
class Bound:
    version: semver.Version
    inclusive: bool


@dataclass(frozen=True)
class VersionRange:
    """A closed, open or half-open interval of versions (``None``: unbounded on that side)."""

    text: str
    lower: Bound | None
    upper: Bound | None

    def contains(self, version: str | semver.Version) -> bool:
        v = version if isinstance(version, semver.Version) else semver.Version.parse(version)
        if self.lower is not None:
            c = v.compare(self.lower.version)
            if c < 0 or (c == 0 and not self.lower.inclusive):
                return False
        if self.upper is not None:
            c = v.compare(self.upper.version)
            if c > 0 or (c == 0 and not self.upper.inclusive):
                return False
        return True


def _version(text: str, whole: str) -> semver.Version:
    text = text.strip().removeprefix("v")
    core, sep, rest = text.partition("-") if "-" in text else text.partition("+")
    parts = core.split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        raise RangeSyntaxError(f"version range {whole!r}: {text!r} is not a version (e.g. 1.2 or 1.2.3-beta.1)")
    filled = ".".join(parts + ["0"] * (3 - len(parts)))
    try:
        return semver.Version.parse(filled + (sep + rest if sep else ""))
    except ValueError:
        raise RangeSyntaxError(f"version range {whole!r}: {text!r} is not a SemVer version") from None


def parse_range(text: str) -> VersionRange:
    """Parse a range; raises RangeSyntaxError with a one-line message naming the range."""
    whole = text
    text = text.strip()
    if not text:
        raise RangeSyntaxError("version range is empty (e.g. [1.0,2.0) or >=1.2 <2)")
    if text[0] in "[(":
        return _interval(text, whole)
    if (text[0].isdigit() or text.startswith("v")) and "," not in text and " " not in text:
        # NuGet's bare "1.0": at least 1.0
        return VersionRange(whole, Bound(_version(text, whole), True), None)
    return _comparators(text, whole)


def _interval(text: str, whole: str) -> VersionRange:
    if text[-1] not in "])":
        raise RangeSyntaxError(f"version range {whole!r}: an interval ends with ] or )")
    low_inc, high_inc = text[0] == "[", text[-1] == "]"
    inner = text[1:-1]
    if "," not in inner:  # [1.0] exactly
        if not (low_inc and high_inc):
            raise RangeSyntaxError(f"version range {whole!r}: a single version needs square brackets, e.g. [1.0]")
        exact = _version(inner, whole)
        return VersionRange(whole, Bound(exact, True), Bound(exact, True))
    low_text, _, high_text = inner.partition(",")
    if "," in high_text:
        raise RangeSyntaxError(f"version range {whole!r}: an interval has two ends, e.g. [1.0,2.0)")
    lower = Bound(_version(low_text, whole), low_inc) if low_text.strip() else None
    upper = Bound(_version(high_text, whole), high_inc) if high_text.strip() else None
    if lower is None and upper is None:
        raise RangeSyntaxError(f"version range {whole!r}: give at least one end")
    if lower is not None and upper is not None:
        c = lower.version.compare(upper.version)
        if c > 0 or (c == 0 and not (lower.inclusive and upper.inclusive)):
            raise RangeSyntaxError(f"version range {whole!r} is empty: its lower end is above its upper end")
    return VersionRange(whole, lower, upper)


def _comparators(text: str, whole: str) -> VersionRange:
    lower: Bound | None = None
    upper: Bound | None = None
    tokens = re.sub(r"(>=|<=|==|>|<|=)\s+", r"\1", text).replace(",", " ").split()
    for token in tokens:
        match = _COMPARATOR.match(token)
        if match is None:
            raise RangeSyntaxError(f"version range {whole!r}: {token!r} is not a comparison such as >=1.2 or <2.0 "
                                   "(or write an interval such as [1.2,2.0))")
        op, version = match.group(1) or "=", _version(match.group(2), whole)
        if op in ("=", "=="):
            lower, upper = _tighter_low(lower, Bound(version, True)), _tighter_high(upper, Bound(version, True))
        elif op.startswith(">"):
            lower = _tighter_low(lower, Bound(version, op == ">="))
        else:
            upper = _tighter_high(upper, Bound(version, op == "<="))
    if lower is not None and upper is not None:
        c = lower.version.compare(upper.version)
        if c > 0 or (c == 0 and not (lower.inclusive and upper.inclusive)):
            raise RangeSyntaxError(f"version range {whole!r} is empty: no version satisfies all of it")
    return VersionRange(whole, lower, upper)


def _tighter_low(a: Bound | None, b: Bound) -> Bound:
    if a is None:
        return b
    c = a.version.compare(b.version)
    return a if c > 0 or (c == 0 and not a.inclusive) else b


def _tighter_high(a: Bound | None, b: Bound) -> Bound:
    if a is None:
        return b
    c = a.version.compare(b.version)
    return a if c < 0 or (c == 0 and not a.inclusive) else b
