"""Release version templates: Octopus's Version.* and date variables, masks, and `ferry release create`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from snapshots.errors import ConfigError
from snapshots.release_numbering import apply_mask, is_mask, render_version_template

NOW = datetime(2026, 1, 7, 3, 4, 5, tzinfo=UTC)
EXISTING = ["1.2.3", "1.10.0", "1.9.9", "0.5.0-beta.1"]


@pytest.mark.parametrize(("template", "existing", "expected"), [
    ("#{Version.LastMajor}.#{Version.LastMinor}.#{Version.NextPatch}", EXISTING, "1.10.1"),
    ("#{Octopus.Version.LastMajor}.#{Octopus.Version.LastMinor}.#{Octopus.Version.NextPatch}", [], "0.0.1"),
    ("#{Version.LastMajor}.#{Version.NextMinor}.0", EXISTING, "1.11.0"),
    ("#{Version.NextMajor}.0.0", EXISTING, "2.0.0"),
    ("#{Version.LastMajor}.#{Version.LastMinor}.#{Version.LastPatch}-rc.#{Time.Hour}", EXISTING, "1.10.0-rc.3"),
    ("1.2.#{Octopus.Version.NextPatch}-pre", ["1.2.7"], "1.2.8-pre"),  # the docs' example
    ("#{Octopus.Date.Year}.#{Octopus.Date.Month}.#{Octopus.Date.Day}", [], "2026.1.7"),  # unpadded for SemVer
    ("#{Date.Year}.#{Date.DayOfYear}.#{Time.Hour}#{Time.Minute}#{Time.Second}", [], "2026.7.30405"),
    ("1.0.0-build.#{Date.Month}#{Date.Day}", [], "1.0.0-build.107"),
    ("#{if Version.LastSuffix}#{Version.LastMajor}.#{Version.LastMinor}.#{Version.LastPatch}#{else}"
     "#{Version.LastMajor}.#{Version.LastMinor}.#{Version.NextPatch}#{/if}", ["2.0.0-rc.1"], "2.0.0"),
    ("1.2.i", ["1.2.3", "1.3.0"], "1.2.4"),  # masks: the latest matching 1.2.x, not the global max
    ("c.c.i", ["1.0.1"], "1.0.2"),
])
def test_version_templates(template: str, existing: list[str], expected: str) -> None:
    assert render_version_template(template, existing, now=NOW) == expected


def test_date_parts_are_zero_padded_like_dotnet() -> None:
    from snapshots.release_numbering import template_variables

    values = template_variables([], NOW)
    assert (values["Date.Year"], values["Date.Month"], values["Date.Day"], values["Date.DayOfYear"]) == \
        ("2026", "01", "07", "007")
    assert (values["Octopus.Time.Hour"], values["Time.Minute"], values["Time.Second"]) == ("03", "04", "05")


# Octopus.Client's SemanticVersionMask fixture (mask, current, expected), SemVer-3 cases.
@pytest.mark.parametrize(("mask", "current", "expected"), [
    ("0.i", "0.0.0", "0.1.0"),
    ("1.1.i", "1.1.1234", "1.1.1235"),
    ("c.c.i", "1.0.1", "1.0.2"),
    ("1.i", "1.1.5", "1.2.0"),
    ("1.i.1", "1.1.5", "1.2.1"),
    ("1.c.i", "1.1.5", "1.1.6"),
    ("1.i.i", "1.1.5", "1.2.0"),
    ("1.i.c", "1.1.5", "1.2.0"),
    ("2.19.i-channel", "2.19.30", "2.19.31-channel"),
    ("2.19.i-channel", "2.19.30-baz", "2.19.31-channel"),
    ("2.19.i", "2.19.30-baz", "2.19.31"),
    ("1.2.c-alpha.i", "1.2.3-alpha.4", "1.2.3-alpha.5"),
    ("1.2.0-alpha.c.i.i", "1.2.0-alpha.2.3.4", "1.2.0-alpha.2.4.0"),
])
def test_masks(mask: str, current: str, expected: str) -> None:
    assert apply_mask(mask, [current]) == expected


def test_masks_without_a_matching_release_start_at_zero() -> None:
    assert apply_mask("1.c.i", []) == "1.0.0"
    assert apply_mask("c.i", []) == "0.0.0"
    assert apply_mask("c.i.1-foo", ["3.0.0"]) == "3.1.1-foo"  # a literal after an increment stays
    assert apply_mask("c.i.1-foo", []) == "0.0.1-foo"


@pytest.mark.parametrize(("text", "mask"), [("1.i", True), ("1.0.c.", False), ("1.0.0", False), ("i.i.0", True),
                                            ("1.0.0-alpha.i", True), ("1.0.0-c", False), ("1.-i", False)])
def test_is_mask(text: str, mask: bool) -> None:
    assert is_mask(text) is mask


def test_unknown_variable_names_the_template() -> None:
    with pytest.raises(ConfigError, match=r"versioning template '#\{Nope\}\.0\.0'.*unknown variable 'Nope'"):
        render_version_template("#{Nope}.0.0", [])


# --------------------------------------------------------------------------------- through `ferry release create`


def _ok(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.output
    return result.stdout


def test_release_create_uses_the_project_template(ferry, sample) -> None:  # type: ignore[no-untyped-def]
    sample.edit_project(lambda d: d.update(versioning={
        "template": "#{Octopus.Version.LastMajor}.#{Octopus.Version.LastMinor}.#{Octopus.Version.NextPatch}"}))
    _ok(ferry("apply", str(sample.infrastructure), str(sample.project)))
    _ok(ferry("package", "push", str(sample.package("1.0.0"))))
    assert "release OctoFX 0.0.1 created" in _ok(ferry("release", "create", "OctoFX"))
    _ok(ferry("release", "create", "OctoFX", "--version", "1.4.0"))
    assert "release OctoFX 1.4.1 created" in _ok(ferry("release", "create", "OctoFX"))
    versions = [r["version"] for r in json.loads(_ok(ferry("release", "list", "OctoFX", "--json")))["items"]]
    assert versions == ["1.4.1", "1.4.0", "0.0.1"]


def test_release_create_with_a_date_template_and_a_mask(ferry, sample) -> None:  # type: ignore[no-untyped-def]
    sample.edit_project(lambda d: d.update(versioning={"template": "#{Date.Year}.#{Date.Month}.i"}))
    _ok(ferry("apply", str(sample.infrastructure), str(sample.project)))
    _ok(ferry("package", "push", str(sample.package("1.0.0"))))
    today = datetime.now(UTC)
    first = _ok(ferry("release", "create", "OctoFX"))
    second = _ok(ferry("release", "create", "OctoFX"))
    if datetime.now(UTC).month == today.month:  # not across a month boundary
        assert f"release OctoFX {today.year}.{today.month}.0 created" in first
        assert f"release OctoFX {today.year}.{today.month}.1 created" in second


def test_release_create_template_that_is_not_semver_is_one_clear_error(ferry, sample) -> None:  # type: ignore[no-untyped-def]
    sample.edit_project(lambda d: d.update(versioning={"template": "v#{Version.NextMajor}"}))
    _ok(ferry("apply", str(sample.infrastructure), str(sample.project)))
    _ok(ferry("package", "push", str(sample.package("1.0.0"))))
    result = ferry("release", "create", "OctoFX")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: invalid version from template 'v#{Version.NextMajor}' 'v1': "
                                     "not SemVer 2 (MAJOR.MINOR.PATCH[-pre][+build])")


def test_release_create_template_may_use_unscoped_project_variables(ferry, sample) -> None:  # type: ignore[no-untyped-def]
    def change(d: dict) -> None:
        d["versioning"] = {"template": "#{Train}.#{Version.NextMinor}.0"}
        d["variables"] += [{"name": "Train", "value": "7"},
                           {"name": "Train", "value": "9", "scope": {"environment": ["Production"]}}]

    sample.edit_project(change)
    _ok(ferry("apply", str(sample.infrastructure), str(sample.project)))
    _ok(ferry("package", "push", str(sample.package("1.0.0"))))
    assert "release OctoFX 7.1.0 created" in _ok(ferry("release", "create", "OctoFX"))
