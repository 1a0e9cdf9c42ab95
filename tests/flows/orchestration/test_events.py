"""Notifications and tags: a failed deployment emits ``ferry.deployment.failed``, and a Prefect automation on a real
Prefect server (event trigger → call-webhook action) delivers it to a webhook — a loopback HTTP receiver here,
Slack or anything else in real life — with project, environment, release, actor and the link to the run."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.flows.local_project import LocalProject

PAYLOAD = json.dumps({
    "event": "{{ event.event }}", "project": "{{ event.resource['ferry.project'] }}",
    "environment": "{{ event.resource['ferry.environment'] }}", "release": "{{ event.resource['ferry.release'] }}",
    "actor": "{{ event.resource['ferry.actor'] }}", "link": "{{ event.resource['ferry.link'] }}",
    "error": "{{ event.payload.error }}"})


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue[dict[str, Any]]]]:
    """A webhook on 127.0.0.1 that queues every JSON body POSTed to it."""
    got: queue.Queue[dict[str, Any]] = queue.Queue()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            got.put(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def automation(prefect_env: dict[str, str], receiver: tuple[str, Any]) -> Iterator[str]:
    """A webhook block and an automation: on ``ferry.deployment.failed`` of project Notify, call it."""
    from prefect.blocks.webhook import Webhook

    url, _ = receiver
    api = prefect_env["PREFECT_API_URL"]
    block_id = Webhook(method="POST", url=url, headers={"Content-Type": "application/json"}).save(
        "ferry-test-hook", overwrite=True)
    body = {"name": "ferry deployment failed → webhook", "enabled": True,
            "trigger": {"type": "event", "posture": "Reactive", "threshold": 1, "within": 0,
                        "match": {"prefect.resource.id": "ferry.deployment.*", "ferry.project": "Notify"},
                        "expect": ["ferry.deployment.failed"]},
            "actions": [{"type": "call-webhook", "block_document_id": str(block_id), "payload": PAYLOAD}]}
    created = httpx.post(f"{api}/automations/", json=body, timeout=30)
    assert created.status_code == 201, created.text
    try:
        yield created.json()["id"]
    finally:
        httpx.delete(f"{api}/automations/{created.json()['id']}", timeout=30)


def test_failed_deployment_reaches_a_webhook_through_a_prefect_automation(
        tmp_path, ferry, prefect_env, receiver, automation) -> None:  # type: ignore[no-untyped-def]
    _, got = receiver
    project = LocalProject(tmp_path / "notify", ferry, environments={"Dev": 1}, name="Notify")
    project.write([{"name": "Install", "kind": "script", "roles": ["web"], "script": "echo broken; exit 3"}])
    project.apply()
    project.release("1.0.0")
    result = project.deploy("1.0.0", "Dev")
    assert result.exit_code == 1, result.output
    record = project.show(1)
    message = got.get(timeout=150)  # the triggers and actions services act within seconds (minutes at load 8+)
    assert message["event"] == "ferry.deployment.failed"
    assert (message["project"], message["environment"], message["release"]) == ("Notify", "Dev", "1.0.0")
    assert message["actor"] == record["created_by"]
    assert message["link"].endswith(f"/runs/flow-run/{record['flow_run_id']}")
    assert message["link"].startswith(prefect_env["PREFECT_API_URL"].removesuffix("/api"))
    assert "exit code 3" in message["error"]
    # the same run is found in the UI by its project and environment tags (issue 16: tags)
    api = prefect_env["PREFECT_API_URL"]
    found = httpx.post(f"{api}/flow_runs/filter", timeout=30, json={"flow_runs": {
        "tags": {"all_": ["project:Notify", "environment:Dev"]}}}).json()
    assert [r["id"] for r in found] == [record["flow_run_id"]]
    # ... while its task runs carry none: Prefect looks up a tag concurrency limit per tag of every task run
    tasks = httpx.post(f"{api}/task_runs/filter", timeout=30, json={"flow_runs": {
        "id": {"any_": [record["flow_run_id"]]}}}).json()
    assert tasks and all(t["tags"] == [] for t in tasks), [t["tags"] for t in tasks]


def test_a_run_nobody_tagged_tags_itself(prefect_env) -> None:  # type: ignore[no-untyped-def]
    """A run the Prefect UI's form or a schedule starts carries no ferry tags: the flow adds them as it starts."""
    from prefect import flow

    from flows.orchestration.ui_tags import tag_current_run

    @flow(name="ferry-tag-probe", persist_result=False)
    def probe() -> str:
        from prefect.runtime import flow_run

        tag_current_run({"project": "Probe", "environment": "Dev"})
        return str(flow_run.id)

    run_id = probe()
    tags = httpx.get(f"{prefect_env['PREFECT_API_URL']}/flow_runs/{run_id}", timeout=30).json()["tags"]
    assert {"project:Probe", "environment:Dev"} <= set(tags)
