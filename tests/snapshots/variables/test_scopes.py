"""Scope resolution, ambiguity, prompted and system variables, the masker, rendering every value."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest

from snapshots import octostache
from snapshots.errors import ConfigError, TemplateError
from snapshots.model import Infrastructure
from snapshots.variables.scopes import (
    ScopeContext,
    VariableIndex,
    VariableSet,
    ambiguities,
    apply_prompted,
    is_system_name,
    masker_for,
    rank,
    render_all,
    resolve,
    system_name_clashes,
    system_variables,
    variables_for,
)


def var(name: str, value: str, sensitive: bool = False, prompt: dict | None = None,
        **scope: list[str]) -> dict[str, Any]:
    return {"name": name, "value": value, "sensitive": sensitive, "scope": scope, "prompt": prompt}


EVERYTHING = ScopeContext(environment="Production", target="web-01", roles=("web", "db"), step="Deploy",
                          channel="Stable")

# Each scope beats every scope after it (rank order); all match EVERYTHING.
PRECEDENCE = [
    ("step+target", {"step": ["Deploy"], "target": ["web-01"]}),
    ("environment+channel", {"environment": ["Production"], "channel": ["Stable"]}),
    ("step", {"step": ["Deploy"]}),
    ("target", {"target": ["web-01"]}),
    ("role", {"role": ["web"]}),
    ("environment", {"environment": ["Production"]}),
    ("channel", {"channel": ["Stable"]}),
    ("unscoped", {}),
]


@pytest.mark.parametrize(("better", "worse"), list(combinations(range(len(PRECEDENCE)), 2)),
                         ids=lambda i: PRECEDENCE[i][0])
def test_more_specific_scope_wins(better: int, worse: int) -> None:
    (better_name, better_scope), (worse_name, worse_scope) = PRECEDENCE[better], PRECEDENCE[worse]
    for order in ([better_scope, worse_scope], [worse_scope, better_scope]):  # definition order does not matter
        variables = [var("X", better_name if s is better_scope else worse_name, **s) for s in order]
        assert resolve(variables, EVERYTHING)["X"] == better_name
    assert rank(better_scope) > rank(worse_scope)


def test_rank_counts_kinds_first_then_most_specific_kind() -> None:
    assert rank({}) == (0, 0, 0, 0, 0, 0)
    assert rank({"step": ["a"]}) == (1, 1, 0, 0, 0, 0)
    assert rank({"environment": ["a", "b"], "role": ["r"]}) == (2, 0, 0, 1, 1, 0)
    assert rank({"environment": ["a"], "role": ["r"]}) > rank({"step": ["s"]})  # doubly beats singly
    assert rank({"environment": ["a", "b"]}) == rank({"environment": ["a"]})  # list length does not count


def test_same_kind_ors_different_kinds_and() -> None:
    variables = [var("Db", "default"),
                 var("Db", "test-or-prod", environment=["Test", "Production"]),
                 var("Db", "web-in-prod", environment=["Production"], role=["web", "api"])]
    index = VariableIndex(variables)
    assert index.resolve(ScopeContext("Test", "t1", ("web",)))["Db"] == "test-or-prod"
    assert index.resolve(ScopeContext("Production", "p1", ("db",)))["Db"] == "test-or-prod"
    assert index.resolve(ScopeContext("Production", "p1", ("api",)))["Db"] == "web-in-prod"  # api OR web
    assert index.resolve(ScopeContext("Production", "p1", ("db", "web")))["Db"] == "web-in-prod"
    assert index.resolve(ScopeContext("Development", "d1", ("web",)))["Db"] == "default"  # AND: env fails


def test_a_name_with_no_matching_value_is_absent() -> None:
    variables = [var("Only.Prod", "x", environment=["Production"]), var("Only.Step", "y", step=["Deploy"])]
    got = resolve(variables, ScopeContext("Test", "t1", ("web",)))
    assert "Only.Prod" not in got and "Only.Step" not in got
    assert resolve(variables, ScopeContext("Production", step="deploy")) == {"Only.Prod": "x", "Only.Step": "y"}


def test_names_and_scope_values_are_case_insensitive() -> None:
    variables = [var("Site.Host", "default"), var("SITE.HOST", "prod", environment=["production"]),
                 var("site.host", "web", role=["WEB"], environment=["PRODUCTION"])]
    got = resolve(variables, ScopeContext("Production", "web-01", ("Web",)))
    assert got["site.host"] == got["Site.Host"] == got["SITE . HOST"] == "web"
    assert list(got) == ["Site.Host"]  # the first definition's spelling
    assert got.canonical("SITE.host") == "Site.Host"
    assert resolve(variables, ScopeContext("production"))["Site.Host"] == "prod"


def test_worker_context_gets_no_target_or_role_scoped_values() -> None:
    variables = [var("X", "env", environment=["Test"]), var("X", "role", role=["web"])]
    assert resolve(variables, ScopeContext("Test", step="Notify"))["X"] == "env"


def test_tie_at_resolve_time_is_an_error_not_a_pick() -> None:
    variables = [var("X", "a", role=["web"]), var("X", "b", role=["db"])]
    with pytest.raises(ConfigError, match=r"'X' is ambiguous: variables\[0\] \(role=web\) and variables\[1\] "
                                          r"\(role=db\).*target web-01"):
        resolve(variables, ScopeContext("Production", "web-01", ("web", "db")))
    assert resolve(variables, ScopeContext("Production", "web-02", ("web",)))["X"] == "a"


def test_sensitive_flag_follows_the_winning_value() -> None:
    variables = [var("Pw", "plain-default"), var("Pw", "s3cret-prod", sensitive=True, environment=["Production"])]
    index = VariableIndex(variables)
    assert index.resolve(ScopeContext("Production")).is_sensitive("pw")
    assert not index.resolve(ScopeContext("Test")).is_sensitive("Pw")


def test_explain_names_the_winning_scope() -> None:
    variables = [var("A", "1"), var("B", "2"), var("B", "3", environment=["Test"], role=["web"])]
    assert VariableIndex(variables).explain(ScopeContext("Test", "t", ("web",))) == {
        "A": "unscoped", "B": "environment=Test; role=web"}


# ------------------------------------------------------------------------------------------------ ambiguity

INFRA = Infrastructure.model_validate({
    "environments": [{"name": "Test"}, {"name": "Production"}],
    "targets": [
        {"name": "web-01", "environment": "Production", "roles": ["web"],
         "transport": {"kind": "local", "root": "/tmp/a"}},
        {"name": "both-01", "environment": "Test", "roles": ["web", "db"],
         "transport": {"kind": "local", "root": "/tmp/b"}},
        {"name": "db-01", "environment": "Production", "roles": ["db"],
         "transport": {"kind": "local", "root": "/tmp/c"}},
    ],
})
STEPS = ["Deploy", "Smoke test"]


@pytest.mark.parametrize(("variables", "expected"), [
    pytest.param([var("X", "a"), var("x", "b")], r"'x' is ambiguous: variables\[0\] \(unscoped\) and "
                 r"variables\[1\] \(unscoped\)", id="defined twice unscoped"),
    pytest.param([var("X", "a", environment=["Test"]), var("X", "b", environment=["Test", "Production"])],
                 r"variables\[0\] \(environment=Test\) and variables\[1\] \(environment=Test, Production\) "
                 r"are equally specific and both apply to target both-01 in Test", id="environment lists overlap"),
    pytest.param([var("X", "a", role=["web"]), var("X", "b", role=["db"])],
                 r"\(role=web\) and variables\[1\] \(role=db\).*target both-01", id="a target has both roles"),
    pytest.param([var("X", "a", step=["Deploy"]), var("X", "b", step=["deploy", "Smoke test"])],
                 r"step 'Deploy'", id="steps overlap"),
    pytest.param([var("X", "a", environment=["Test"], role=["web"]), var("X", "b", role=["db"], environment=["Test"])],
                 r"both apply to target both-01", id="double scopes meet"),
])
def test_ambiguities_found(variables: list[dict], expected: str) -> None:
    found = ambiguities(variables, INFRA, STEPS)
    assert [(a, b) for a, b, _ in found] == [(0, 1)]
    import re
    assert re.search(expected, found[0][2]), found[0][2]


@pytest.mark.parametrize("variables", [
    pytest.param([var("X", "a", environment=["Test"]), var("X", "b", environment=["Production"])], id="disjoint envs"),
    pytest.param([var("X", "a", role=["web"]), var("X", "b", role=["db"], environment=["Production"])],
                 id="different ranks"),
    pytest.param([var("X", "a", role=["web"], environment=["Production"]),
                  var("X", "b", role=["db"], environment=["Production"])], id="no Production target has both roles"),
    pytest.param([var("X", "a", step=["Deploy"]), var("X", "b", step=["Smoke test"])], id="different steps"),
    pytest.param([var("X", "a", channel=["Stable"]), var("X", "b", channel=["Beta"])], id="different channels"),
    pytest.param([var("X", "a", target=["web-01"]), var("X", "b", target=["db-01"])], id="different targets"),
    pytest.param([var("X", "a", role=["cache"]), var("X", "b", role=["cache", "web"], environment=["Test"])],
                 id="unrelated names"),
    pytest.param([var("X", "a"), var("Y", "a")], id="two names"),
])
def test_no_ambiguity(variables: list[dict]) -> None:
    assert ambiguities(variables, INFRA, STEPS) == []


def test_ambiguity_without_infrastructure_is_conservative_about_roles() -> None:
    variables = [var("X", "a", role=["web"]), var("X", "b", role=["db"])]
    assert len(ambiguities(variables)) == 1
    # different ranks never tie: target+role beats environment+role (both two kinds; target is more specific)
    assert ambiguities([var("X", "a", environment=["Test"], role=["web"]),
                        var("X", "b", role=["db"], target=["both-01"])], INFRA, STEPS) == []
    assert ambiguities([var("X", "a", environment=["A"]), var("X", "b", environment=["B"])]) == []


def test_system_names_are_reserved() -> None:
    for name in ("Release.Number", "octopus.release.number", "Machine.Name", "Package[OctoFX.Web].Version",
                 "Octopus.Action.Package[x].PackageVersion", "Step.Name", "Deployment.CreatedBy"):
        assert is_system_name(name), name
    for name in ("Release.Number.Suffix", "Site.Host", "Octopus.Action.Package.RunScripts", "Package.Version"):
        assert not is_system_name(name), name
    clashes = system_name_clashes([var("Site", "x"), var("Machine.Name", "y")])
    assert clashes and clashes[0][0] == 1 and "system variable" in clashes[0][1]


# ------------------------------------------------------------------------------------------------- prompted


def test_prompted_supplied_value_is_used_for_every_definition() -> None:
    variables = [var("Approver", None, prompt={"label": "Who approves?", "required": True}), var("Other", "o")]
    filled = apply_prompted(variables, {"approver": "alice"})
    assert filled[0]["value"] == "alice" and filled[1]["value"] == "o"
    assert variables[0]["value"] is None  # the input is not modified


def test_prompted_by_label_as_octopus_cli_allows() -> None:
    variables = [var("Approver", None, prompt={"label": "Who approves?", "required": True})]
    assert apply_prompted(variables, {"Who approves?": "bob"})[0]["value"] == "bob"


def test_required_prompted_without_value_names_it_and_its_label() -> None:
    variables = [var("Approver", None, prompt={"label": "Who approves?", "required": True}),
                 var("Ticket", None, prompt={"label": "", "required": True})]
    with pytest.raises(ConfigError, match=r"prompted variables 'Approver' \('Who approves\?'\), 'Ticket' need a value: "
                                          r"give it with --variable Approver=VALUE"):
        apply_prompted(variables, {})
    assert [v["value"] for v in apply_prompted(variables, {}, require=False)] == ["", ""]


def test_prompted_default_and_optional() -> None:
    variables = [var("Greeting", "hello", prompt={"label": "Greeting", "required": True}),
                 var("Note", None, prompt={"label": "Note", "required": False})]
    assert [v["value"] for v in apply_prompted(variables, {})] == ["hello", ""]
    assert [v["value"] for v in apply_prompted(variables, {"Greeting": "hi"})] == ["hi", ""]


def test_supplying_a_variable_that_is_not_prompted_is_refused() -> None:
    variables = [var("Site.Host", "x"), var("Approver", None, prompt={"label": "A", "required": False})]
    with pytest.raises(ConfigError, match=r"--variable Site\.Host: not a prompted variable of this project "
                                          r"\(prompted: Approver\)"):
        apply_prompted(variables, {"Site.Host": "evil"})


# -------------------------------------------------------------------------------------------- system values


def test_system_variables_and_octopus_aliases() -> None:
    system = system_variables(project="OctoFX", release_number="1.2.3", release_notes="Fixes",
                              release_created="2026-01-02T03:04:05Z", previous_for_environment=None,
                              environment="Test", machine_name="web-01", machine_hostname="10.0.0.1",
                              machine_roles=["web", "db"], deployment_id=17, deployment_created_by="alice",
                              step_name="Deploy", packages=[{"id": "OctoFX.Web", "version": "1.2.0",
                                                             "sha256": "ab" * 32}])
    assert system["Machine.Roles"] == "web,db"
    assert system["Octopus.Release.Number"] == system["Release.Number"] == "1.2.3"
    assert system["Release.PreviousForEnvironment.Number"] == ""  # known: there was none
    assert system["Package[OctoFX.Web].Version"] == "1.2.0"
    assert system["Package[OctoFX.Web].Sha256"] == "ab" * 32
    assert system["Octopus.Action.Package[OctoFX.Web].PackageVersion"] == "1.2.0"
    assert system["Deployment.Id"] == "17" and system["Octopus.Deployment.CreatedBy.Username"] == "alice"
    assert system["Octopus.Action.Name"] == system["Step.Name"] == "Deploy"
    assert octostache.render("#{Octopus.Machine.Name} #{Package[OctoFX.Web].Version}", system) == "web-01 1.2.0"
    assert all(is_system_name(name) for name in system)


def test_unknown_facts_are_left_out_so_templates_fail_loudly() -> None:
    system = system_variables(project="P", environment="Test")
    assert "Machine.Name" not in system and "Deployment.Id" not in system
    with pytest.raises(TemplateError, match=r"unknown variable 'Machine\.Name'"):
        octostache.render("#{Machine.Name}", system)


def test_variables_for_system_values_cannot_be_overridden() -> None:
    release_variables = [var("Release.Number", "9.9.9"), var("Url", "http://#{Machine.Hostname}/#{Release.Number}"),
                         var("Approver", None, prompt={"label": "A", "required": True})]
    system = system_variables(release_number="1.0.0", machine_hostname="h1", machine_name="m1")
    got = variables_for(release_variables, ScopeContext("Test", "m1", ("web",)), system, {"Approver": "carol"})
    assert isinstance(got, VariableSet)
    assert got["Release.Number"] == "1.0.0" and got["approver"] == "carol"
    assert octostache.render("#{Url} by #{Approver}", got) == "http://h1/1.0.0 by carol"
    with pytest.raises(ConfigError, match="Approver"):
        variables_for(release_variables, ScopeContext("Test"), system, {})


def test_masker_for_masks_sensitive_and_prompted_sensitive_values() -> None:
    variables = apply_prompted([var("Db.Password", "correct-horse", sensitive=True), var("Public", "visible-text"),
                                var("Token", None, sensitive=True, prompt={"label": "T", "required": True})],
                               {"Token": "tok-123456"})
    masker = masker_for(variables)
    line = "pw=correct-horse token=tok-123456 public=visible-text"
    assert masker.mask(line) == "pw=******** token=******** public=visible-text"


# ---------------------------------------------------------------------------------------------- rendering


def test_render_all_evaluates_every_value_and_names_the_failing_one() -> None:
    variables = [var("Host", "db01"), var("Conn", "Server=#{Host};Env=#{Environment.Name | ToUpper}"),
                 var("Url", "#{if Secure}https#{else}http#{/if}://#{Host}"), var("Secure", "True")]
    got = render_all(variables_for(variables, ScopeContext("Test"), {"Environment.Name": "Test"}))
    assert got["Conn"] == "Server=db01;Env=TEST" and got["Url"] == "https://db01"
    broken = variables_for([*variables, var("Bad", "#{Nope}")], ScopeContext("Test"), {"Environment.Name": "Test"})
    with pytest.raises(TemplateError, match=r"variable 'Bad': .*unknown variable 'Nope'"):
        render_all(broken)
    warnings: list[str] = []
    assert render_all(broken, strict=False, warnings=warnings)["Bad"] == "#{Nope}"  # left as written, as Octopus does
    assert any("Nope" in w for w in warnings)


def test_variable_set_is_read_by_the_engine_like_a_plain_mapping() -> None:
    plain = {"Endpoint[A].Address": "a.example", "Endpoint[B].Address": "b.example", "Region": "eu",
             "Server[eu]": "eu-1", "List": "x, y", "Flag": "False", "Nested": "#{Region}-#{Server[#{Region}]}"}
    table = VariableSet(plain)
    for template in ("#{each e in Endpoint}#{e}=#{e.Address};#{/each}", "#{Server[#{Region}]}",
                     "#{each i in List}[#{i}]#{/each}", "#{unless Flag}off#{/unless}", "#{nested | ToUpper}",
                     "#{ region }", "##{Region}", "#{Missing}"):
        assert octostache.render(template, table, strict=False) == octostache.render(template, plain, strict=False)
    assert table.overlay({"region": "us"})["REGION"] == "us"
