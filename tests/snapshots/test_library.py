"""Library variable sets and step templates (issue 14 item 4) on a real store: applied as revisions, frozen into
a release with where each variable and step came from, unchanged by later edits of the set, re-snapshotted by
update-variables, shown by `release show` / `release diff`, and sensitive values never plain in the store."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from snapshots import releases
from snapshots.errors import ConfigError
from snapshots.projects import apply
from snapshots.store import Store
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed
from tests.sample import Sample
from tests.secret_scan import scan_bytes

VAULT = Vault(b"l" * 32)
LIBRARY_SECRET = "Lib-S3cret/Value+42"

COMMON = """library_variable_set: Common
variables:
  - {name: Db.Name, value: octofx_common}
  - {name: Site.Host, value: library.example}        # the project's own Site.Host wins
  - {name: Db.Admin.Password, sensitive: true, value: {from_env: LIB_ADMIN_PASSWORD}}
  - {name: Log.Level, value: Warning, scope: {environment: [Production]}}
"""

TEMPLATE = """step_template: Migrate DB
description: Run the schema migrations
parameters:
  - {name: DbName, label: Database name}
  - {name: Timeout, label: Seconds, default: 30}
  - {name: AdminPassword, sensitive: true, default: "#{Db.Admin.Password}"}
step:
  kind: script
  roles: [web]
  script: |
    echo "migrating $(ferry_var DbName) within $(ferry_var Timeout)"
"""


@dataclasses.dataclass
class Lib:
    store: Store
    feed: Feed
    sample: Sample

    def write(self, name: str, text: str) -> Path:
        path = self.sample.root / name
        path.write_text(text)
        return path

    def apply(self, *paths: Path) -> list[Any]:
        with self.store.begin() as conn:
            return apply(conn, list(paths), VAULT, "tester")

    def create(self, version: str) -> releases.Release:
        with self.store.begin() as conn:
            return releases.create(conn, self.feed, "OctoFX", "tester", vault=VAULT, version=version)[0]

    def release(self, version: str) -> releases.Release:
        with self.store.read() as conn:
            return releases.require(conn, "OctoFX", version)


def _use_library(data: dict[str, Any]) -> None:
    data["include"] = ["Common"]
    data["process"].insert(0, {"name": "Migrate", "template": "Migrate DB", "parameters": {"DbName": "#{Db.Name}"},
                               "roles": ["web"]})


@pytest.fixture
def lib(sample: Sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lib]:
    monkeypatch.setenv("LIB_ADMIN_PASSWORD", LIBRARY_SECRET)
    found = Lib(Store(f"sqlite:///{tmp_path / 'store.db'}"), Feed(tmp_path / "feed"), sample)
    sample.edit_project(_use_library)
    applied = found.apply(sample.infrastructure, found.write("common.yaml", COMMON),
                          found.write("migrate.yaml", TEMPLATE), sample.project)
    assert [(a.kind, a.name, a.revision) for a in applied][:2] == [("variable_set", "Common", 1),
                                                                  ("step_template", "Migrate DB", 1)]
    with found.store.begin() as conn:
        found.feed.push(conn, sample.package("1.0.0"), "tester")
    yield found
    found.store.dispose()


def _by_name(release: releases.Release) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in release.variables.variables}


def test_release_freezes_the_sets_variables_and_the_expanded_template_with_where_they_came_from(lib: Lib) -> None:
    release = lib.create("1.0.0")
    migrate = release.process[0]
    assert (migrate["name"], migrate["kind"], migrate["roles"]) == ("Migrate", "script", ["web"])
    assert "$(ferry_var DbName)" in migrate["script"]
    assert release.snapshot["library"] == {"variable_sets": [{"name": "Common", "revision": 1}],
                                           "step_templates": [{"step": "Migrate", "template": "Migrate DB",
                                                               "revision": 1}]}
    variables = _by_name(release)
    assert variables["Db.Name"]["value"] == "octofx_common"
    assert variables["Db.Name"]["source"] == "library: Common r1"
    assert variables["Site.Host"]["value"] == "octofx.example" and "source" not in variables["Site.Host"]
    assert variables["Log.Level"]["scope"]["environment"] == ["Production"]
    # each parameter is a variable scoped to its step, as Octopus does; the default fills what the project left out
    assert variables["DbName"]["value"] == "#{Db.Name}" and variables["DbName"]["scope"]["step"] == ["Migrate"]
    assert variables["Timeout"]["value"] == "30" and variables["Timeout"]["source"] == "template: Migrate DB r1"
    # a sensitive parameter holds a reference, yet renders to a secret: encrypted and masked like one
    assert variables["AdminPassword"]["sensitive"] and "value" not in variables["AdminPassword"]
    decrypted = {v["name"]: v for v in releases.decrypt_variables(release.variables, VAULT)}
    assert decrypted["Db.Admin.Password"]["value"] == LIBRARY_SECRET
    assert decrypted["AdminPassword"]["value"] == "#{Db.Admin.Password}"


def test_a_later_change_to_the_set_leaves_the_release_and_update_variables_takes_it(lib: Lib) -> None:
    lib.create("1.0.0")
    applied = lib.apply(lib.write("common.yaml", COMMON.replace("octofx_common", "octofx_v2")),
                        lib.write("migrate.yaml", TEMPLATE.replace("within", "in at most")))
    assert [(a.name, a.revision, a.changed) for a in applied] == [("Common", 2, True), ("Migrate DB", 2, True)]
    again = lib.apply(lib.sample.root / "common.yaml")
    assert [(a.revision, a.changed) for a in again] == [(2, False)]  # same content: no new revision
    old = lib.release("1.0.0")
    assert _by_name(old)["Db.Name"]["value"] == "octofx_common"
    assert "within" in old.process[0]["script"]
    new = lib.create("1.0.1")
    db_name = _by_name(new)["Db.Name"]
    assert (db_name["value"], db_name["source"]) == ("octofx_v2", "library: Common r2")
    assert "in at most" in new.process[0]["script"]
    with lib.store.begin() as conn:
        updated, changed = releases.update_variables(conn, "OctoFX", "1.0.0", "tester", vault=VAULT)
    assert changed and updated.variables.revision == 2
    variables = _by_name(updated)
    assert (variables["Db.Name"]["value"], variables["Db.Name"]["source"]) == ("octofx_v2", "library: Common r2")
    assert variables["Timeout"]["source"] == "template: Migrate DB r1"  # the frozen step keeps its parameters
    assert "within" in updated.process[0]["script"]


def test_release_create_refuses_a_template_that_now_needs_a_parameter_the_project_does_not_give(lib: Lib) -> None:
    needs_more = TEMPLATE.replace("  - {name: Timeout", "  - {name: Schema}\n  - {name: Timeout")
    lib.apply(lib.write("migrate.yaml", needs_more))
    with pytest.raises(ConfigError, match=r"^project OctoFX \(revision 1\): step 'Migrate': template 'Migrate DB' "
                                          r"needs parameter 'Schema'$"):
        lib.create("1.0.0")
    with lib.store.read() as conn:
        assert releases.versions(conn, "OctoFX") == []


def test_sensitive_library_values_are_never_plain_in_the_store(lib: Lib, tmp_path: Path) -> None:
    lib.create("1.0.0")
    lib.apply(lib.write("common.yaml", COMMON.replace("octofx_common", "x")))
    with lib.store.begin() as conn:
        releases.update_variables(conn, "OctoFX", "1.0.0", "tester", vault=VAULT)
    lib.store.dispose()
    report = scan_bytes(LIBRARY_SECRET, (tmp_path / "store.db").read_bytes(), "store.db")
    assert report.total == 0, str(report)
    with lib.store.read() as conn:
        rows = conn.execute(sa.text("SELECT document FROM library_revisions WHERE kind = 'variable_set'")).all()
    stored = [v for row in rows for v in json.loads(row[0])["variables"] if v["name"] == "Db.Admin.Password"]
    assert len(stored) == 2 and all(v["ciphertext"] and "value" not in v for v in stored)


def test_library_revisions_are_append_only(lib: Lib) -> None:
    for statement in ("UPDATE library_revisions SET document = '{}'", "DELETE FROM library_revisions"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), lib.store.begin() as conn:
            conn.execute(sa.text(statement))


def test_release_show_and_diff_say_where_each_variable_and_step_came_from(
        lib: Lib, ferry_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.cli.app import app

    monkeypatch.setenv("FERRY_DATABASE_URL", lib.store.url)
    monkeypatch.setenv("FERRY_MASTER_KEY", base64.urlsafe_b64encode(b"l" * 32).decode())
    lib.create("1.0.0")
    lib.apply(lib.write("common.yaml", COMMON.replace("octofx_common", "octofx_v2")))
    lib.create("1.0.1")
    runner = CliRunner()
    shown = runner.invoke(app, ["release", "show", "OctoFX", "1.0.1"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert any("Db.Name" in line and "octofx_v2" in line and "library: Common r2" in line for line in lines)
    assert any("Migrate" in line and "template: Migrate DB r1" in line for line in lines)
    assert LIBRARY_SECRET not in shown.output
    data = json.loads(runner.invoke(app, ["release", "show", "OctoFX", "1.0.1", "--json"]).output)
    sources = {v["name"]: v["source"] for v in data["variable_snapshots"][0]["variables"]}
    assert (sources["Db.Name"], sources["Site.Host"]) == ("library: Common r2", "project")
    assert data["library"]["variable_sets"] == [{"name": "Common", "revision": 2}]
    diff = runner.invoke(app, ["release", "diff", "OctoFX", "1.0.0", "1.0.1"])
    assert diff.exit_code == 0, diff.output
    assert "~ Db.Name: 'octofx_common' → 'octofx_v2' (library: Common r1 → library: Common r2)" in diff.output
    assert "~ Db.Admin.Password: ******** (library: Common r1 → library: Common r2)" in diff.output
    assert "~ library variable set Common r1 → r2" in diff.output
    changes = json.loads(runner.invoke(app, ["release", "diff", "OctoFX", "1.0.0", "1.0.1", "--json"]).output)
    assert changes["library"] == ["~ library variable set Common r1 → r2"]


def test_key_rotation_re_encrypts_a_sets_sensitive_values_as_a_new_revision(lib: Lib) -> None:
    from snapshots import library

    new = Vault(b"n" * 32)
    with lib.store.begin() as conn:
        assert library.rekey(conn, VAULT, new, "tester") == 1
    with lib.store.read() as conn:
        found = library.latest(conn, library.VARIABLE_SET, "common")
    assert found is not None and found.revision == 2
    [secret] = [v for v in found.document["variables"] if v.get("ciphertext")]
    assert new.decrypt(secret["ciphertext"]) == LIBRARY_SECRET
