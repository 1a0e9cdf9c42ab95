"""The foundation through the real `ferry` command: apply, feed, releases, and the seed's gotcha."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.sample import SECRET


def _ok(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def applied(ferry, sample):  # type: ignore[no-untyped-def]
    _ok(ferry("apply", str(sample.infrastructure), str(sample.project)))
    _ok(ferry("package", "push", str(sample.package("1.0.0"))))
    return sample


def test_apply_stores_a_revision_only_when_content_changed(ferry, sample) -> None:  # type: ignore[no-untyped-def]
    first = _ok(ferry("apply", str(sample.infrastructure), str(sample.project)))
    assert "project OctoFX: stored revision 1" in first
    again = _ok(ferry("apply", str(sample.infrastructure), str(sample.project)))
    assert "project OctoFX: unchanged (revision 1)" in again
    assert "infrastructure: unchanged (revision 1)" in again
    sample.edit_project(lambda d: d["variables"].append({"name": "New.Var", "value": "x"}))
    third = _ok(ferry("apply", str(sample.project)))
    assert "project OctoFX: stored revision 2" in third


def test_changed_secret_is_a_change_same_secret_is_not(ferry, sample) -> None:  # type: ignore[no-untyped-def]
    _ok(ferry("apply", str(sample.infrastructure), str(sample.project)))
    assert "unchanged" in _ok(ferry("apply", str(sample.project)))
    assert "stored revision 2" in _ok(ferry("apply", str(sample.project), env={"OCTOFX_DB_PASSWORD": "other-pw"}))


def test_seed_gotcha_release_keeps_its_snapshot(ferry, applied) -> None:  # type: ignore[no-untyped-def]
    """1.0.0 keeps the old process and variables after the project changes; 1.0.1 has the new ones;
    update-variables moves 1.0.0's variables forward but never its process."""
    _ok(ferry("release", "create", "OctoFX", "--version", "1.0.0"))

    def change(d: dict) -> None:
        d["process"][0]["steps"][2]["within"] = 99
        d["process"][0]["steps"].insert(3, {"name": "Warm up", "kind": "http-check", "url": "http://x/warm"})
        for v in d["variables"]:
            if v["name"] == "Site.Host":
                v["value"] = "new.octofx.example"

    applied.edit_project(change)
    _ok(ferry("apply", str(applied.project)))
    _ok(ferry("release", "create", "OctoFX", "--version", "1.0.1"))

    def show(version: str, *extra: str) -> dict:
        return json.loads(_ok(ferry("release", "show", "OctoFX", version, "--json", *extra)))

    def host(snapshot: dict) -> str:
        return next(v["value"] for v in snapshot["variables"] if v["name"] == "Site.Host")

    def steps(data: dict) -> list[str]:
        return [s["name"] for s in data["process"][0]["steps"]]

    old, new = show("1.0.0"), show("1.0.1")
    assert "Warm up" not in steps(old) and "Warm up" in steps(new)
    assert host(old["variable_snapshots"][0]) == "octofx.example"
    assert host(new["variable_snapshots"][0]) == "new.octofx.example"

    out = _ok(ferry("release", "update-variables", "OctoFX", "1.0.0"))
    assert "revision 2" in out
    updated = show("1.0.0", "--history")
    assert [s["revision"] for s in updated["variable_snapshots"]] == [1, 2]
    assert host(updated["variable_snapshots"][0]) == "octofx.example"  # old revision kept for audit
    assert host(updated["variable_snapshots"][1]) == "new.octofx.example"
    assert "Warm up" not in steps(updated)  # the process never moves
    assert updated["digest"] == old["digest"]
    _ok(ferry("release", "verify", "OctoFX", "1.0.0"))


def test_default_version_follows_package_then_next_patch(ferry, applied) -> None:  # type: ignore[no-untyped-def]
    # The sample takes its version from OctoFX.Web's version.
    assert "release OctoFX 1.0.0 created" in _ok(ferry("release", "create", "OctoFX"))
    _ok(ferry("package", "push", str(applied.package("1.1.0"))))
    out = _ok(ferry("release", "create", "OctoFX"))
    assert "release OctoFX 1.1.0 created: OctoFX.Web 1.1.0" in out
    applied.edit_project(lambda d: d.pop("versioning"))
    _ok(ferry("apply", str(applied.project)))
    assert "release OctoFX 1.1.1 created" in _ok(ferry("release", "create", "OctoFX", "--package", "OctoFX.Web:1.0.0"))
    listed = json.loads(_ok(ferry("release", "list", "OctoFX", "--json")))["items"]
    assert [(r["version"], r["packages"][0]["version"]) for r in listed] == [
        ("1.1.1", "1.0.0"), ("1.1.0", "1.1.0"), ("1.0.0", "1.0.0")]


def test_latest_stable_package_is_pinned_unless_told(ferry, applied) -> None:  # type: ignore[no-untyped-def]
    _ok(ferry("package", "push", str(applied.package("1.2.0-beta.1"))))
    out = json.loads(_ok(ferry("release", "create", "OctoFX", "--version", "5.0.0", "--json")))
    assert out["packages"][0]["version"] == "1.0.0"
    pinned = json.loads(_ok(ferry("release", "create", "OctoFX", "--version", "5.0.1", "--package",
                                  "OctoFX.Web:1.2.0-beta.1", "--json")))
    assert pinned["packages"][0]["version"] == "1.2.0-beta.1"


def test_duplicate_version_ignore_existing(ferry, applied) -> None:  # type: ignore[no-untyped-def]
    _ok(ferry("release", "create", "OctoFX", "--version", "2.0.0"))
    again = ferry("release", "create", "OctoFX", "--version", "2.0.0", "--ignore-existing")
    assert again.exit_code == 0 and "already exists (ignored)" in again.stdout


def test_release_notes_and_diff(ferry, applied, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    notes = tmp_path / "notes.md"
    notes.write_text("# 1.0.0\n* first cut\n")
    _ok(ferry("release", "create", "OctoFX", "--version", "1.0.0", "--notes-file", str(notes)))
    assert json.loads(_ok(ferry("release", "show", "OctoFX", "1.0.0", "--json")))["notes"] == notes.read_text()

    def change(d: dict) -> None:
        d["process"][0]["rolling"]["window"] = 2
        d["variables"] = [v for v in d["variables"] if v["name"] != "Site.Host"]
        d["variables"].append({"name": "Feature.X", "value": "on", "scope": {"environment": "Test"}})

    applied.edit_project(change)
    _ok(ferry("apply", str(applied.project)))
    _ok(ferry("package", "push", str(applied.package("1.0.1"))))
    _ok(ferry("release", "create", "OctoFX", "--version", "1.0.1"))
    diff = json.loads(_ok(ferry("release", "diff", "OctoFX", "1.0.0", "1.0.1", "--json")))
    assert diff["packages"] == ["~ OctoFX.Web 1.0.0 → 1.0.1"]
    assert "- Site.Host = 'octofx.example'" in diff["variables"]
    assert "+ Feature.X [environment=Test] = 'on'" in diff["variables"]
    assert "+    window: 2" in diff["process"] and "-    window: 1" in diff["process"]
    text = _ok(ferry("release", "diff", "OctoFX", "1.0.0", "1.0.1"))
    assert "OctoFX.Web 1.0.0 → 1.0.1" in text


def test_sensitive_value_never_in_database_file_or_output(ferry, applied, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    outputs = [
        _ok(ferry("release", "create", "OctoFX", "--version", "1.0.0")),
        _ok(ferry("release", "show", "OctoFX", "1.0.0")),
        _ok(ferry("release", "show", "OctoFX", "1.0.0", "--json", "--history")),
    ]
    applied.edit_project(lambda d: d["variables"].append({"name": "Other", "value": "x"}))
    _ok(ferry("apply", str(applied.project), env={"OCTOFX_DB_PASSWORD": SECRET + "-2"}))
    _ok(ferry("release", "create", "OctoFX", "--version", "1.0.1"))
    outputs.append(_ok(ferry("release", "diff", "OctoFX", "1.0.0", "1.0.1")))
    outputs.append(_ok(ferry("release", "diff", "OctoFX", "1.0.0", "1.0.1", "--json")))
    assert any("Db.Password" in o for o in outputs)
    assert "sensitive value changed" in outputs[-2]
    for output in outputs:
        assert SECRET not in output
    conn = sqlite3.connect(ferry_home / "ferry.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for file in ferry_home.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file


def test_master_key_file_is_private(ferry, applied, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    key = ferry_home / "master.key"
    assert key.exists() and (key.stat().st_mode & 0o777) == 0o600


def test_verify_detects_changed_package_bytes(ferry, applied, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    _ok(ferry("release", "create", "OctoFX", "--version", "1.0.0"))
    stored = ferry_home / "feed" / "OctoFX.Web" / "OctoFX.Web.1.0.0.tar.gz"
    stored.write_bytes(stored.read_bytes() + b"tampered")
    result = ferry("release", "verify", "OctoFX", "1.0.0")
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("error: package OctoFX.Web 1.0.0: sha256 mismatch")
    assert len(result.stderr.strip().splitlines()) == 1


def test_package_push_and_list(ferry, sample) -> None:  # type: ignore[no-untyped-def]
    v1, v2 = sample.package("1.0.0"), sample.package("1.10.0")
    out = json.loads(_ok(ferry("package", "push", str(v1), str(v2), "--json")))["items"]
    assert [p["created"] for p in out] == [True, True]
    import hashlib
    assert out[0]["sha256"] == hashlib.sha256(v1.read_bytes()).hexdigest()
    assert out[0]["size"] == v1.stat().st_size
    again = json.loads(_ok(ferry("package", "push", str(v1), "--json")))["items"]
    assert again[0]["created"] is False
    listed = json.loads(_ok(ferry("package", "list", "OctoFX.Web", "--json")))["items"]
    assert [p["version"] for p in listed] == ["1.10.0", "1.0.0"]


def test_schema_is_json_schema(ferry) -> None:  # type: ignore[no-untyped-def]
    project = json.loads(_ok(ferry("schema", "project")))
    assert project["$schema"].endswith("2020-12/schema")
    assert "process" in project["properties"]
    kinds = json.dumps(project)
    for kind in ("iis-website", "package", "script", "load-balancer", "http-check", "manual"):
        assert f'"{kind}"' in kinds
    infra = json.loads(_ok(ferry("schema", "infrastructure")))
    assert {"environments", "lifecycles", "targets", "load_balancers"} <= set(infra["properties"])


@pytest.mark.postgres
def test_the_cli_on_a_postgresql_store(ferry, sample, postgres, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """FERRY_DATABASE_URL on PostgreSQL: the same commands, the same guarantees (secret never in plain text)."""
    url = postgres.create_database()
    monkeypatch.setenv("FERRY_DATABASE_URL", url)
    _ok(ferry("apply", str(sample.infrastructure), str(sample.project)))
    _ok(ferry("package", "push", str(sample.package("1.0.0"))))
    _ok(ferry("release", "create", "OctoFX", "--version", "1.0.0"))
    dup = ferry("release", "create", "OctoFX", "--version", "1.0.0")
    assert dup.exit_code == 1 and "already exists" in dup.stderr
    _ok(ferry("release", "verify", "OctoFX", "1.0.0"))
    import psycopg

    with psycopg.connect(url) as conn:
        dump = " ".join(str(row) for table in ("project_revisions", "variable_snapshots", "releases")
                        for row in conn.execute(f"SELECT * FROM {table}"))
    assert "Db.Password" in dump and SECRET not in dump
