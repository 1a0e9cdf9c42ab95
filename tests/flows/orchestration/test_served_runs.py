"""Runs of a project's served ``deploy-release`` deployment, called directly against the session's real Prefect
server: finding it (and whether a ``ferry serve`` is behind it), creating runs now or later, and following a
run's log and final state the way ``ferry deploy --wait`` does — no ``ferry`` subprocess, no mocks."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import LogCreate
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Failed, Running

from flows.orchestration.served_runs import TIMED_OUT, Served, create_run, deployment_name, find_served, follow
from snapshots.errors import FerryError
from tests.flows.prefect_api import prefect_api  # noqa: F401  (fixture)

pytestmark = pytest.mark.postgres  # the session's Prefect server keeps its database on the test PostgreSQL


def register(project: str, **options: object) -> UUID:
    """What ``ferry serve`` registers for a project (no process polls it unless a test says so)."""
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("deploy-release")
        return client.create_deployment(flow_id=flow_id, name=deployment_name(project), **options)  # type: ignore[arg-type]


def poll(served: Served) -> None:
    """Ask for scheduled runs as ``ferry serve`` does, which is what marks its deployment as polled."""
    with get_client(sync_client=True) as client:
        client.get_scheduled_flow_runs_for_deployments(deployment_ids=[served.id])


@pytest.fixture
def project(prefect_api: str) -> Iterator[str]:  # noqa: F811
    """A project name of this test's own (the Prefect server is shared by the session)."""
    yield f"Shop/{uuid.uuid4().hex[:8]}%"


def test_deployment_names_keep_everything_prefect_accepts() -> None:
    assert deployment_name("Team/Shop 100%") == "Team-Shop 100-"
    assert deployment_name("OctoFX.Web (EU)") == "OctoFX.Web (EU)"


def test_an_unregistered_project_has_no_served_deployment(project: str) -> None:
    assert find_served(project) is None
    assert find_served(project, flow="promote") is None


def test_without_a_prefect_api_there_is_nothing_to_find(project: str) -> None:
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        assert find_served(project) is None


def test_an_api_that_does_not_answer_is_an_error_not_none(project: str) -> None:
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}), \
            pytest.raises(FerryError) as caught:
        find_served(project)
    assert str(caught.value).startswith("cannot reach the Prefect API at http://127.0.0.1:9/api: ")


def test_a_registered_deployment_is_live_once_polled(project: str) -> None:
    deployment_id = register(project)
    served = find_served(project)
    assert served is not None
    assert (served.id, served.full_name) == (deployment_id, f"deploy-release/{deployment_name(project)}")
    assert not served.live and served.describe_liveness() == "never polled by a `ferry serve` or worker"
    poll(served)
    deadline = time.monotonic() + 20
    while not served.live and time.monotonic() < deadline:  # the server marks it in the background
        time.sleep(0.2)
        served = find_served(project)  # type: ignore[assignment]
    assert served.live and served.describe_liveness().startswith("last polled ")


def test_runs_are_created_now_or_at_a_time_tagged_as_ferry_s(project: str) -> None:
    register(project)
    served = find_served(project)
    assert served is not None
    now_run = create_run(served, {"environment": "Dev", "release": "1.0.0"}, tags=["auto-deploy"])
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    later = create_run(served, {"environment": "Prod"}, at=at, name="nightly")
    with get_client(sync_client=True) as client:
        first, second = client.read_flow_run(now_run.id), client.read_flow_run(later.id)
    assert first.deployment_id == served.id and first.parameters == {"environment": "Dev", "release": "1.0.0"}
    # environment:NAME for the UI's filter (the project's tag comes from the served deployment's own parameters,
    # which the run adds itself as it starts: flows.orchestration.ui_tags.tag_current_run)
    assert set(first.tags) == {"ferry", "auto-deploy", "environment:Dev"}
    assert first.state.is_scheduled()  # type: ignore[union-attr]
    assert set(second.tags) == {"ferry", "environment:Prod"}
    assert second.name == "nightly" and second.state.state_details.scheduled_time == at  # type: ignore[union-attr]


def test_a_refused_run_is_one_line_naming_the_deployment(project: str) -> None:
    schema = {"type": "object", "properties": {"environment": {"type": "string"}}, "required": ["environment"]}
    register(project, parameter_openapi_schema=schema, enforce_parameter_schema=True)
    served = find_served(project)
    assert served is not None
    with pytest.raises(FerryError) as caught:
        create_run(served, {"release": "1.0.0"})
    message = str(caught.value)
    assert message.startswith(f"{served.full_name} refused the run: ") and "\n" not in message
    assert "environment" in message


def _log(client: object, flow_run_id: UUID, message: str) -> None:
    client.create_logs([LogCreate(name="prefect.flow_runs", level=20, message=message,  # type: ignore[attr-defined]
                                  timestamp=datetime.now(UTC), flow_run_id=flow_run_id)])


@pytest.mark.parametrize(("final", "code"), [(Completed, 0), (Failed, 1)])
def test_follow_streams_the_log_and_ends_with_the_run_s_state(project: str, final: type, code: int) -> None:
    register(project)
    served = find_served(project)
    assert served is not None
    run = create_run(served, {"environment": "Dev"})
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, Running(), force=True)
        _log(client, run.id, "deployment #1: Shop 1.0.0 → Dev (1 target(s))")
        client.set_flow_run_state(run.id, final(), force=True)
        _log(client, run.id, f"Finished in state {final.__name__}()")
    lines: list[str] = []
    state, exit_code = follow(run.id, echo=lines.append, poll=0.2)
    assert (state, exit_code) == (final.__name__, code)
    shown = [line.split(" | ", 2)[1:] for line in lines]  # "HH:MM:SS | LEVEL   | message"
    assert shown == [["INFO   ", "deployment #1: Shop 1.0.0 → Dev (1 target(s))"],
                     ["INFO   ", f"Finished in state {final.__name__}()"]]


def test_follow_gives_up_after_the_timeout_and_cancels_when_asked(project: str) -> None:
    register(project)
    served = find_served(project)
    assert served is not None
    waiting = create_run(served, {"environment": "Dev"})  # nothing serves it: it stays scheduled
    started = time.monotonic()
    assert follow(waiting.id, timeout=0.5, echo=lambda line: None, poll=0.1) == ("Scheduled", TIMED_OUT)
    assert time.monotonic() - started < 10
    assert follow(waiting.id, timeout=0.3, cancel_on_timeout=True, echo=lambda line: None, poll=0.1) == (
        "Cancelled", TIMED_OUT)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(waiting.id).state
    assert state is not None and state.is_cancelled() and "--cancel-on-timeout" in (state.message or "")
