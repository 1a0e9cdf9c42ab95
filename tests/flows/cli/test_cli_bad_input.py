"""Every bad input: one clear line on stderr, a non-zero exit, and nothing written to the store or feed."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest


def store_state(home: Path) -> tuple:
    """Every row of every table plus the feed's files: equal before and after means nothing was written."""
    db = home / "ferry.db"
    rows = []
    if db.exists():
        conn = sqlite3.connect(db)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        rows = [(t, conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()) for t in tables]
        conn.close()
    feed = sorted(str(p.relative_to(home)) for p in (home / "feed").rglob("*")) if (home / "feed").exists() else []
    return tuple(rows), tuple(feed)


@pytest.fixture
def base(ferry, sample):  # type: ignore[no-untyped-def]
    assert ferry("apply", str(sample.infrastructure), str(sample.project)).exit_code == 0
    assert ferry("package", "push", str(sample.package("1.0.0"))).exit_code == 0
    assert ferry("release", "create", "OctoFX", "--version", "1.0.0").exit_code == 0
    return sample


def _yaml_case(text_change: Callable[[str], str], file: str = "project"):  # type: ignore[no-untyped-def]
    def run(ferry, sample):  # type: ignore[no-untyped-def]
        path = sample.project if file == "project" else sample.infrastructure
        path.write_text(text_change(path.read_text()))
        return ferry("apply", str(sample.infrastructure), str(sample.project))
    return run


def _replace(old: str, new: str, file: str = "project"):  # type: ignore[no-untyped-def]
    def change(text: str) -> str:
        assert old in text, f"test setup: {old!r} not in {file}.yaml"
        return text.replace(old, new, 1)
    return _yaml_case(change, file)


def _cli(*args: str):  # type: ignore[no-untyped-def]
    def run(ferry, sample):  # type: ignore[no-untyped-def]
        return ferry(*[a.format(root=sample.root) for a in args])
    return run


def _push_renamed(name: str, version: str = "1.0.0", extra: bytes = b""):  # type: ignore[no-untyped-def]
    def run(ferry, sample):  # type: ignore[no-untyped-def]
        source = sample.package(version)
        target = source.parent / "renamed" / name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(source.read_bytes() + extra)
        return ferry("package", "push", str(target))
    return run


CASES = {
    "malformed YAML": (_replace("process:\n", "process:\n  - name: [unclosed\n"),
                       r"project\.yaml:\d+: malformed YAML"),
    "unknown step kind": (_replace("kind: http-check", "kind: http-chek"),
                          r"project\.yaml:2\d: process\[0\]\.steps\[2\]: Input tag 'http-chek' found using 'kind' "
                          r"does not match any of the expected tags"),
    "missing required field": (_replace("action: remove, ", ""),
                               r"project\.yaml:13: process\[0\]\.steps\[0\]\.action: Field required"),
    "unknown field": (_replace("keep: 3", "kep: 3"),
                      r"project\.yaml:\d+: process\[0\]\.steps\[1\]\.kep: unknown field"),
    "duplicate YAML key": (_replace("lifecycle: Default", "lifecycle: Default\nlifecycle: Other"),
                           r"project\.yaml:5: duplicate key 'lifecycle'"),
    "unknown lifecycle": (_replace("lifecycle: Default", "lifecycle: Defualt"),
                          r"project\.yaml:4: lifecycle: unknown lifecycle 'Defualt' \(known: Default\)"),
    "unknown environment in a variable scope": (
        _replace("scope: {environment: [Production]}}", "scope: {environment: [Prod]}}"),
        r"project\.yaml:\d+: variables\[\d+\]\.scope\.environment\[0\]: unknown environment 'Prod'"),
    "unknown environment of a target": (
        _replace("environment: Production,  roles", "environment: Prod,  roles", "infrastructure"),
        r"infrastructure\.yaml:22: targets\[3\]\.environment: unknown environment 'Prod'"),
    "unknown environment in a lifecycle": (
        _replace("environments: [Test]}", "environments: [Tset]}", "infrastructure"),
        r"infrastructure\.yaml:12: lifecycles\[0\]\.phases\[1\]\.environments\[0\]: unknown environment 'Tset'"),
    "unknown load balancer": (_replace("balancer: web-lb, action: add", "balancer: web-lbb, action: add"),
                              r"project\.yaml:\d+: process\[0\]\.steps\[3\]\.balancer: "
                              r"unknown load balancer 'web-lbb'"),
    "duplicate step names": (_replace("name: Smoke test", "name: Install OctoFX.Web"),
                             r"project\.yaml:2\d: process\[0\]\.steps\[2\]\.name: duplicate step name "
                             r"'Install OctoFX.Web'"),
    "bad window": (_replace("window: 1", "window: 0%"),
                   r"project\.yaml:11: process\[0\]\.rolling\.window: window .0%. must be a count"),
    "environment variable source not set": (
        _replace("from_env: OCTOFX_DB_PASSWORD", "from_env: NOT_SET_ANYWHERE"),
        r"project\.yaml:\d+: variables\[\d+\]\.value: environment variable NOT_SET_ANYWHERE is not set"),
    "missing file": (_cli("apply", "{root}/nope.yaml"), r"nope\.yaml: cannot read"),
    "invalid SemVer": (_cli("release", "create", "OctoFX", "--version", "1.0"),
                       r"invalid release version '1\.0': not SemVer 2"),
    "duplicate release version": (_cli("release", "create", "OctoFX", "--version", "1.0.0"),
                                  r"release 1\.0\.0 of OctoFX already exists"),
    "unknown package": (_cli("release", "create", "OctoFX", "--version", "2.0.0", "--package", "Nope:1.0.0"),
                        r"--package Nope: project OctoFX does not deploy that package"),
    "unknown package version": (_cli("release", "create", "OctoFX", "--version", "2.0.0",
                                     "--package", "OctoFX.Web:9.9.9"),
                                r"package OctoFX\.Web has no version 9\.9\.9 in the feed \(have: 1\.0\.0\)"),
    "malformed --package": (_cli("release", "create", "OctoFX", "--package", "OctoFX.Web"),
                            r"--package 'OctoFX.Web': expected ID:VERSION"),
    "unknown project": (_cli("release", "create", "OctoFy"), r"unknown project 'OctoFy' \(known: OctoFX\)"),
    "unknown release": (_cli("release", "show", "OctoFX", "9.9.9"), r"project OctoFX has no release 9\.9\.9"),
    "package file name without a version": (_push_renamed("OctoFX.Web.tar.gz"),
                                            r"OctoFX\.Web\.tar\.gz: no SemVer version in the file name"),
    "package file with an unknown extension": (_push_renamed("OctoFX.Web.1.0.0.rar"),
                                               r"a package file must end in"),
    "changed package re-pushed under the same version": (
        _push_renamed("OctoFX.Web.1.0.0.tar.gz", extra=b"\0changed"),
        r"OctoFX\.Web 1\.0\.0 is already in the feed with different content"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_cleanly(case: str, ferry, base, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    action, pattern = CASES[case]
    before = store_state(ferry_home)
    result = action(ferry, base)
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    import re
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in result.output
    assert store_state(ferry_home) == before


def test_nothing_stored_when_one_of_several_files_is_bad(ferry, sample, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    sample.project.write_text(sample.project.read_text().replace("kind: manual", "kind: nope") + "bogus: 1\n")
    result = ferry("apply", str(sample.infrastructure), str(sample.project))
    assert result.exit_code == 1
    assert store_state(ferry_home)[0] == () or all(rows == [] for t, rows in store_state(ferry_home)[0]
                                                   if t != "alembic_version")


def test_debug_shows_the_traceback(ferry, base) -> None:  # type: ignore[no-untyped-def]
    result = ferry("--debug", "release", "show", "OctoFX", "9.9.9")
    assert result.exit_code != 0 and "Traceback" in result.stderr and "NotFoundError" in result.stderr
