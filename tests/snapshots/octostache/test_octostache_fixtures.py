"""Octostache's own test fixtures as a standing conformance suite (cases in ``octostache_fixtures.json``).

Each case runs in Octopus (non-strict) mode, which must print what Octostache prints, and in strict mode, which
must print the same or, where Octostache reported an error, raise. A listed deviation must raise in both modes:
ferry never renders differently from Octostache without saying so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from snapshots.errors import TemplateError
from snapshots.octostache import render

DATA = json.loads((Path(__file__).parent / "octostache_fixtures.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = DATA["cases"]
DEVIATIONS = (Path(__file__).resolve().parents[3] / "snapshots" / "octostache" / "DEVIATIONS.md").read_text()


def _id(case: dict[str, Any]) -> str:
    return f"{case['fixture'].split('.')[0]}.{case['test']}"


def _normalized(case: dict[str, Any], text: str) -> str:
    return text.replace('"', "") if case.get("normalize") == "strip_quotes" else text


PARAMS = [pytest.param(c, id=f"{_id(c)}-{n}") for n, c in enumerate(CASES)]


@pytest.mark.parametrize("case", PARAMS)
def test_octopus_mode_matches_octostache(case: dict[str, Any]) -> None:
    if case.get("deviation") or case["expected"] is None:
        with pytest.raises(TemplateError):
            render(case["template"], case["variables"], strict=False)
        return
    got = _normalized(case, render(case["template"], case["variables"], strict=False))
    assert got in case.get("expected_any", [_normalized(case, case["expected"])])


@pytest.mark.parametrize("case", PARAMS)
def test_strict_mode_matches_or_raises(case: dict[str, Any]) -> None:
    if case.get("deviation") or case.get("strict") == "raises":
        with pytest.raises(TemplateError):
            render(case["template"], case["variables"])
        return
    got = _normalized(case, render(case["template"], case["variables"]))
    assert got in case.get("expected_any", [_normalized(case, case["expected"])])


def test_every_deviation_is_listed_and_the_pass_rate_holds() -> None:
    deviations = {c["deviation"] for c in CASES if c.get("deviation")}
    for name in deviations:
        assert f"`{name}`" in DEVIATIONS, f"deviation {name} is not in DEVIATIONS.md"
    passing = sum(1 for c in CASES if not c.get("deviation"))
    assert len(CASES) >= 600 and passing / len(CASES) >= 0.95
