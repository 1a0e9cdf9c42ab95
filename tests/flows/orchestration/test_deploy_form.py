"""The Prefect UI's run form of a project's served deployments (issue 16): the project's releases (newest first,
of its channels), targets and skippable steps as choices, ferry's internal parameters hidden — read from the
``parameter_openapi_schema`` a real Prefect server holds for the deployments a real ``ferry serve`` registered,
which is what the UI draws the form from. A release created later reaches the form without restarting serve."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flows.orchestration.deploy_form import FormChoices, refused_for_choice, shape
from tests.flows.serve_lab import BODY, ServedProject, make_served

CHOICES = FormChoices(("1.1.0-beta.1", "1.0.10", "1.0.9"), (("Default", ("1.0.10", "1.0.9")),
                                                             ("Beta", ("1.1.0-beta.1",))),
                      (("dev-01", "Dev"), ("prod-01", "Prod")), ("Roll out", "Install"))


def _schema() -> dict[str, Any]:
    nullable_list = {"anyOf": [{"items": {"type": "string"}, "type": "array"}, {"type": "null"}], "default": None,
                     "description": "Deploy only to these targets."}
    return {"properties": {"environment": {"enum": ["Dev", "Prod"], "type": "string"},
                           "release": {"type": "string", "default": "latest", "description": "A release."},
                           "targets": dict(nullable_list), "skip_steps": dict(nullable_list),
                           "channel": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "Channel."},
                           "deployment_id": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                           "prompted_ref": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
            "required": ["environment"]}


def test_shape_offers_the_choices_hides_internals_and_is_stable_when_applied_again() -> None:
    schema = _schema()
    shape(schema["properties"], schema["required"], CHOICES)
    props = schema["properties"]
    assert "deployment_id" not in props and "prompted_ref" not in props
    assert props["release"]["enum"] == ["latest", "1.1.0-beta.1", "1.0.10", "1.0.9"]
    assert "Default: 1.0.10, 1.0.9; Beta: 1.1.0-beta.1" in props["release"]["description"]
    assert props["targets"]["anyOf"][0]["items"]["enum"] == ["dev-01", "prod-01"]
    assert props["skip_steps"]["anyOf"][0]["items"]["enum"] == ["Roll out", "Install"]
    assert props["channel"]["anyOf"][0]["enum"] == ["Default", "Beta"]
    once = repr(schema)
    shape(schema["properties"], schema["required"], CHOICES)  # what form_refresh does to a registered schema
    assert repr(schema) == once


def test_no_targets_or_steps_to_offer_leaves_those_fields_free() -> None:
    schema = _schema()
    shape(schema["properties"], schema["required"], FormChoices())
    assert schema["properties"]["targets"]["anyOf"][0]["items"] == {"type": "string"}
    assert schema["properties"]["release"]["enum"] == ["latest"]


def test_which_refusals_mean_the_form_is_a_sync_behind() -> None:
    assert refused_for_choice("Error creating flow run: Validation failed for field 'release'. Failure reason: "
                              "'2.0.0' is not one of ['latest', '1.0.0']")
    assert refused_for_choice("Validation failed for field 'targets[0]'. Failure reason: 'x' is not one of []")
    assert not refused_for_choice("Validation failed for field 'environment'. Failure reason: 'Qa' is not one of")
    assert not refused_for_choice("Validation failed for field 'force'. Failure reason: 'yes' is not of type")


# --- against a real Prefect server and ferry serve ---------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, prefect_server, postgres) -> Iterator[ServedProject]:  # type: ignore[no-untyped-def]
    lab = make_served(tmp_path_factory.mktemp("form"), prefect_server.env(), postgres.create_database())
    lab.write([{"name": "Roll out", "roles": ["web"], "rolling": {"window": 2},
                "steps": [{"name": "Install", "kind": "script", "script": lab.project.script(BODY)},
                          {"name": "Verify", "kind": "script", "required": True, "script": "true"}]}],
              channels=[{"name": "Beta"}])
    lab.project.apply()
    for version in ("1.0.0", "1.0.10", "1.0.9"):  # SemVer order is not the order of creation nor of the text
        lab.project.release(version)
    beta = lab.ferry("release", "create", lab.name, "--version", "1.1.0-beta.1", "--channel", "Beta")
    assert beta.exit_code == 0, beta.output
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()
        lab.forget()


def _tomorrow() -> dict[str, Any]:
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    return {"state": {"type": "SCHEDULED", "state_details": {"scheduled_time": at}}}


def test_the_registered_form_offers_releases_targets_and_steps(served: ServedProject) -> None:
    props = served.deployment()["parameter_openapi_schema"]["properties"]
    assert props["release"]["enum"] == ["latest", "1.1.0-beta.1", "1.0.10", "1.0.9", "1.0.0"]
    assert props["release"]["default"] == "latest"
    assert "Beta: 1.1.0-beta.1" in props["release"]["description"]
    for name in ("targets", "exclude_targets"):
        assert props[name]["anyOf"][0]["items"]["enum"] == ["dev-01", "prod-01", "prod-02"], name
    assert props["skip_steps"]["anyOf"][0]["items"]["enum"] == ["Roll out", "Install"]  # Verify is required
    assert props["channel"]["anyOf"][0]["enum"] == ["Default", "Beta"]
    assert "deployment_id" not in props and "prompted_ref" not in props
    plan = served.deployment("plan-release")["parameter_openapi_schema"]["properties"]
    assert plan["release"]["enum"] == props["release"]["enum"]
    promote = served.deployment("promote")["parameter_openapi_schema"]["properties"]
    assert promote["channel"]["anyOf"][0]["enum"] == ["Default", "Beta"]


def test_the_api_refuses_what_the_form_does_not_offer_but_ferry_runs_it(served: ServedProject,
                                                                         prefect_env: dict[str, str]) -> None:
    from prefect.client.orchestration import get_client

    from flows.orchestration.served_runs import create_run, find_served

    refused = served.create_run({"environment": "Dev", "release": "9.9.9"})
    assert refused.status_code == 409 and "'9.9.9' is not one of" in refused.json()["detail"]
    refused = served.create_run({"environment": "Dev", "targets": ["nope-01"]})
    assert refused.status_code == 409 and "Validation failed for field 'targets" in refused.json()["detail"]
    hidden = served.create_run({"environment": "Dev", "release": "1.0.0", "deployment_id": 12345}, **_tomorrow())
    assert hidden.status_code == 201, hidden.text  # not in the form, still accepted from ferry's API calls
    served.api.delete(f"/flow_runs/{hidden.json()['id']}")

    # ferry's own run (checked against the store, which may be a sync ahead of the form) is not held back
    found = find_served(served.name)
    assert found is not None
    at = datetime.now(UTC) + timedelta(days=1)
    params = {"environment": "Dev", "release": "9.9.9", "deployment_id": 12345}
    with get_client(sync_client=True) as client:
        runs = [create_run(found, params, at=at), create_run(found, params, at=at, client=client)]
    for run in runs:
        assert served.flow_run(str(run.id))["parameters"] == params
        served.api.delete(f"/flow_runs/{run.id}")


def test_a_new_release_reaches_the_form(served: ServedProject) -> None:
    def releases() -> list[str]:
        return list(served.deployment()["parameter_openapi_schema"]["properties"]["release"]["enum"])

    def updated() -> str:
        return str(served.deployment()["updated"])

    before = updated()
    time.sleep(4.5)  # two of ferry serve's syncs (every 2 s here)
    assert updated() == before  # nothing changed: not registered again on every sync

    created = served.ferry("release", "create", served.name, "--version", "1.2.0", "--no-auto-deploy")
    assert created.exit_code == 0, created.output
    deadline = time.monotonic() + 30
    while releases()[1] != "1.2.0" and time.monotonic() < deadline:  # ferry serve's sync
        time.sleep(0.5)
    assert releases() == ["latest", "1.2.0", "1.1.0-beta.1", "1.0.10", "1.0.9", "1.0.0"]
    assert updated() != before

    # `release create` itself updates the registered form: a CI job may start the release at once
    created = served.ferry("release", "create", served.name, "--version", "1.3.0")
    assert created.exit_code == 0, created.output
    response = served.create_run({"environment": "Dev", "release": "1.3.0"}, **_tomorrow())
    assert response.status_code == 201, response.text
    served.api.delete(f"/flow_runs/{response.json()['id']}")
    assert releases()[1] == "1.3.0"
