"""Variables through the real `ferry` command: `release show --environment/--target`, ambiguity refused at
`apply` and at `release create`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from snapshots import releases
from snapshots.canonical import canonical_json
from snapshots.errors import ConfigError
from snapshots.projects import apply
from snapshots.store import Store, now
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed
from snapshots.store.tables import infrastructure_revisions
from tests.bad_inputs.state import state as store_state
from tests.sample import SECRET


def _variables(sample) -> list[dict]:  # type: ignore[no-untyped-def]
    return yaml.safe_load(sample.project.read_text())["variables"]


def _index(sample, name: str, **scope: list[str]) -> int:  # type: ignore[no-untyped-def]
    return next(i for i, v in enumerate(_variables(sample))
                if v["name"] == name and all((v.get("scope") or {}).get(k) == s for k, s in scope.items()))


def _ok(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.output
    return result.stdout


def _one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


EXTRA_VARIABLES = [
    {"name": "Db.Connection", "value": "Server=#{ConnectionStrings:Default};Password=#{Db.Password}"},
    {"name": "Smoke.Timeout", "value": "45", "scope": {"step": ["Smoke test"]}},
    {"name": "Welcome", "value": "#{Site.Banner | ToUpper} on #{Machine.Name} (#{Octopus.Release.Number})"},
    {"name": "Approver", "prompt": {"label": "Who approved?", "required": True}},
]


@pytest.fixture
def released(ferry, sample):  # type: ignore[no-untyped-def]
    sample.edit_project(lambda d: d["variables"].extend(EXTRA_VARIABLES))
    _ok(ferry("apply", str(sample.infrastructure), str(sample.project)))
    _ok(ferry("package", "push", str(sample.package("1.0.0"))))
    _ok(ferry("release", "create", "OctoFX", "--version", "1.0.0"))
    return sample


def _values(ferry, *args: str) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    data = json.loads(_ok(ferry("release", "show", "OctoFX", "1.0.0", "--json", *args)))
    return {row["name"]: row for row in data["variables"]}


def test_show_for_a_target_applies_scoping_and_masks_secrets(ferry, released) -> None:  # type: ignore[no-untyped-def]
    banners = {target: _values(ferry, "--target", target)["Site.Banner"]["value"]
               for target in ("dev-01", "test-02", "prod-03")}
    assert banners == {"dev-01": "OctoFX (development)", "test-02": "OctoFX (test)", "prod-03": "OctoFX"}

    prod = _values(ferry, "--environment", "Production", "--target", "prod-01")
    assert prod["Machine.Name"] == {"name": "Machine.Name", "value": "prod-01", "template": "prod-01",
                                    "from": "system", "sensitive": False}
    assert prod["Machine.Hostname"]["value"] == "127.0.0.5"
    assert prod["Environment.Name"]["value"] == "Production"
    assert prod["Release.Number"]["value"] == "1.0.0"
    assert prod["Package[OctoFX.Web].Version"]["value"] == "1.0.0"
    assert prod["ConnectionStrings:Default"] == {
        "name": "ConnectionStrings:Default", "value": "Server=db01;Database=OctoFX",
        "template": "Server=db01;Database=OctoFX", "from": "environment=Production", "sensitive": False}
    assert prod["Db.Password"]["value"] == prod["Db.Password"]["template"] == "********"
    assert prod["Db.Connection"]["value"] == "Server=Server=db01;Database=OctoFX;Password=********"
    assert prod["Welcome"]["value"] == "OCTOFX on prod-01 (1.0.0)"
    assert prod["Approver"]["value"] == "(prompted at deploy time)" and prod["Approver"]["from"] == "prompted"
    assert "Smoke.Timeout" not in prod and "Step.Name" not in prod  # no --step: step-scoped values absent

    text = _ok(ferry("release", "show", "OctoFX", "1.0.0", "--environment", "Production", "--target", "prod-01"))
    assert "values for target prod-01 (Production; roles web)" in text
    assert re.search(r"Site\.Banner\s+│ OctoFX\s+│ environment=Production", text), text
    assert re.search(r"Db\.Password\s+│ \*{8}", text)
    assert SECRET not in text and "Sup3r" not in text


def test_show_with_a_step_includes_step_scoped_values(ferry, released) -> None:  # type: ignore[no-untyped-def]
    values = _values(ferry, "--target", "test-01", "--step", "smoke TEST")
    assert values["Smoke.Timeout"]["value"] == "45" and values["Smoke.Timeout"]["from"] == "step=Smoke test"
    assert values["Step.Name"]["value"] == "Smoke test"
    assert values["Site.Banner"]["value"] == "OctoFX (test)"


def test_show_for_an_environment_only_is_a_worker_view(ferry, released) -> None:  # type: ignore[no-untyped-def]
    values = _values(ferry, "--environment", "test")
    assert values["Site.Banner"]["value"] == "OctoFX (test)" and "Machine.Name" not in values
    # Machine.Name is unknown on a worker: Octopus (non-strict) mode leaves the token as written, as Octostache does
    assert values["Welcome"]["value"] == "OCTOFX (TEST) on #{Machine.Name} (1.0.0)"


def test_show_without_options_keeps_the_release_view(ferry, released) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(_ok(ferry("release", "show", "OctoFX", "1.0.0", "--json")))
    assert data["version"] == "1.0.0" and "variable_snapshots" in data


@pytest.mark.parametrize(("args", "message"), [
    (("--environment", "Prod", "--target", "prod-01"),
     "error: unknown environment 'Prod' (known: Development, Test, Production)"),
    (("--target", "prod-09"),
     "error: unknown target 'prod-09' (known: dev-01, test-01, test-02, prod-01, prod-02, prod-03, prod-04)"),
    (("--environment", "Test", "--target", "prod-01"), "error: target prod-01 is in environment Production, not Test"),
    (("--target", "prod-01", "--step", "Nope"),
     "error: unknown step 'Nope' (steps: Deploy web app, Remove from load balancer, Install OctoFX.Web, "
     "Smoke test, Add to load balancer)"),
    (("--step", "Smoke test"), "error: --step needs --environment or --target to show values for"),
])
def test_show_bad_context_is_one_line(ferry, released, args: tuple[str, ...], message: str) -> None:  # type: ignore[no-untyped-def]
    assert _one_line_error(ferry("release", "show", "OctoFX", "1.0.0", *args)) == message


# ----------------------------------------------------------------------------------------------- ambiguity


def test_ambiguous_variables_are_refused_at_apply(ferry, sample, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    _ok(ferry("apply", str(sample.infrastructure), str(sample.project)))
    before = store_state(ferry_home)
    sample.edit_project(lambda d: d["variables"].append(
        {"name": "site.banner", "value": "shared", "scope": {"environment": ["Test", "Production"]}}))
    line = sample.project.read_text().splitlines().index("- name: site.banner") + 1
    a, b = _index(sample, "Site.Banner", environment=["Test"]), len(_variables(sample)) - 1
    error = _one_line_error(ferry("apply", str(sample.infrastructure), str(sample.project)))
    assert error == (f"error: {sample.project}:{line}: variables[{b}].name: variable 'site.banner' is ambiguous: "
                     f"variables[{a}] (environment=Test) and variables[{b}] (environment=Test, Production) are "
                     "equally specific and both apply to target test-01 in Test; "
                     "narrow one of the scopes or remove one")
    assert store_state(ferry_home) == before


def test_an_infrastructure_change_that_makes_stored_variables_ambiguous_is_refused(  # type: ignore[no-untyped-def]
        ferry, sample, ferry_home: Path) -> None:
    sample.edit_project(lambda d: d["variables"].extend([
        {"name": "Cache.Size", "value": "1g", "scope": {"role": ["web"]}},
        {"name": "Cache.Size", "value": "8g", "scope": {"role": ["db"]}}]))
    _ok(ferry("apply", str(sample.infrastructure), str(sample.project)))  # no target is both web and db
    before = store_state(ferry_home)
    n = len(_variables(sample))
    text = sample.infrastructure.read_text().replace("environment: Test,        roles: [web]",
                                                     "environment: Test,        roles: [web, db]", 1)
    sample.infrastructure.write_text(text)
    error = _one_line_error(ferry("apply", str(sample.infrastructure)))
    assert error.startswith(f"error: {sample.infrastructure}: project 'OctoFX' (stored) would break: variable "
                            f"'Cache.Size' is ambiguous: variables[{n - 2}] (role=web) and "
                            f"variables[{n - 1}] (role=db)")
    assert "target test-01 in Test" in error
    assert store_state(ferry_home) == before


def test_a_project_may_not_define_a_system_variable(ferry, sample, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    _ok(ferry("apply", str(sample.infrastructure)))
    before = store_state(ferry_home)
    sample.edit_project(lambda d: d["variables"].append({"name": "Octopus.Release.Number", "value": "1"}))
    n = len(_variables(sample))
    error = _one_line_error(ferry("apply", str(sample.infrastructure), str(sample.project)))
    assert re.fullmatch(rf"error: .*project\.yaml:\d+: variables\[{n - 1}\]\.name: variable "
                        r"'Octopus\.Release\.Number' is a system variable: ferry sets it for every deployment, "
                        r"so a project value would never apply \(choose another name\)", error), error
    assert store_state(ferry_home) == before


def test_release_create_refuses_variables_the_current_infrastructure_makes_ambiguous(  # type: ignore[no-untyped-def]
        database_url: str, sample, tmp_path: Path) -> None:
    """An infrastructure revision stored without the apply-time check (an older ferry, a restore) still cannot
    produce a release whose variables tie."""
    vault = Vault(b"k" * 32)
    store, feed = Store(database_url), Feed(tmp_path / "feed")
    sample.edit_project(lambda d: d["variables"].extend([
        {"name": "Cache.Size", "value": "1g", "scope": {"role": ["web"]}},
        {"name": "Cache.Size", "value": "8g", "scope": {"role": ["db"]}}]))
    n = len(_variables(sample))
    try:
        with store.begin() as conn:
            apply(conn, [sample.infrastructure, sample.project], vault, "tester")
            feed.push(conn, sample.package("1.0.0"), "tester")
            document = json.loads(conn.execute(sa.select(infrastructure_revisions.c.document)).scalar_one())
            document["targets"][0]["roles"] = ["web", "db"]
            conn.execute(sa.insert(infrastructure_revisions).values(
                revision=2, content_digest="x" * 64, document=canonical_json(document), source="restored",
                created_at=now(), created_by="tester"))
        with pytest.raises(ConfigError, match=rf"project OctoFX \(revision 1\): variable 'Cache\.Size' is ambiguous: "
                                              rf"variables\[{n - 2}\] \(role=web\) and variables\[{n - 1}\] "
                                              r"\(role=db\) .*target dev-01 in Development"), store.begin() as conn:
            releases.create(conn, feed, "OctoFX", "tester", vault=vault, version="1.0.0")
        with store.read() as conn:
            assert releases.versions(conn, "OctoFX") == []
    finally:
        store.dispose()
