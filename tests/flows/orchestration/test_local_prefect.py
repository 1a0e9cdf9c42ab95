"""Without PREFECT_API_URL, ferry starts one local Prefect server per FERRY_HOME and reuses it: two deploys on
local targets share it (same pid and port) and both runs stay on it; `ferry prefect-server status|stop|start`;
a stale record is replaced, two commands starting at once get one server, and the lab's down stops it. Every
test stops what it started.

No `prefect_env` here: these tests are about what happens when no Prefect API is configured."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flows.orchestration import local_prefect
from tests.flows.local_project import LocalProject


@pytest.fixture
def no_prefect_api(ferry_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh FERRY_HOME with no Prefect API configured (and the suite's ``ephemeral`` opt-out lifted); the
    local server is stopped afterwards whatever happened."""
    monkeypatch.setenv("PREFECT_API_URL", "")  # recorded, so a value a command sets here is undone too
    monkeypatch.delenv("PREFECT_API_URL")
    monkeypatch.setenv(local_prefect.MODE, "local")
    monkeypatch.delenv(local_prefect.MODE)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-client"))  # no profile of this machine's user
    monkeypatch.delenv("PREFECT_PROFILES_PATH", raising=False)
    monkeypatch.delenv("PREFECT_PROFILE", raising=False)
    try:
        yield ferry_home
    finally:
        local_prefect.stop(ferry_home)


def _flow_runs(api_url: str) -> list[dict]:
    response = httpx.post(f"{api_url}/flow_runs/filter", json={"sort": "START_TIME_ASC"}, timeout=30)
    response.raise_for_status()
    return [run for run in response.json() if run["flow_id"]]


def _gone(pid: int) -> bool:
    """The process has ended (a zombie its new parent has not reaped yet has ended too)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].startswith("Z")
    except OSError:
        return True


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_deploys_reuse_one_local_server_that_status_shows_and_stop_ends(  # type: ignore[no-untyped-def]
        no_prefect_api: Path, ferry, tmp_path: Path) -> None:
    home = no_prefect_api
    project = LocalProject(tmp_path / "shop", ferry, environments={"Dev": 1})
    project.write([{"name": "Say", "roles": ["web"], "kind": "script", "script": "echo hello"}])
    project.apply()
    project.release("1.0.0")
    project.release("1.0.1")

    first = project.deploy("1.0.0", "Dev")
    assert first.exit_code == 0, first.output
    assert "temporary server" not in first.output  # no Prefect banner, no per-command server
    server = local_prefect.read_record(home)
    assert server is not None and local_prefect.healthy(server)
    assert f"http://127.0.0.1:{server.port}/runs/flow-run/" in first.output  # the run's page on it

    second = project.deploy("1.0.1", "Dev")
    assert second.exit_code == 0, second.output
    assert local_prefect.read_record(home) == server  # the same process on the same port
    runs = _flow_runs(server.api_url)
    assert [(r["name"], r["state_type"]) for r in runs] == [("Shop 1.0.0 → Dev", "COMPLETED"),
                                                             ("Shop 1.0.1 → Dev", "COMPLETED")]
    assert (home / "prefect" / "prefect.db").is_file()

    status = ferry("prefect-server", "status", "--json")
    assert status.exit_code == 0, status.output
    doc = json.loads(status.stdout)
    assert (doc["running"], doc["pid"], doc["port"]) == (True, server.pid, server.port)

    stopped = ferry("prefect-server", "stop")
    assert stopped.exit_code == 0 and f"pid {server.pid}" in stopped.stdout, stopped.output
    assert _gone(server.pid) and local_prefect.read_record(home) is None
    assert "no local Prefect server is running" in ferry("prefect-server", "status").stdout

    started = ferry("prefect-server", "start", "--json")
    assert started.exit_code == 0, started.output
    fresh = json.loads(started.stdout)
    assert fresh["started"] is True and fresh["pid"] != server.pid
    assert len(_flow_runs(fresh["api_url"])) == 2  # its database outlived the stopped server


_ENSURE = ("import json, sys; from pathlib import Path; from flows.orchestration import local_prefect; "
           "server, started = local_prefect.ensure(Path(sys.argv[1])); "
           "print(json.dumps({'pid': server.pid, 'port': server.port, 'started': started}))")


def test_stale_record_replaced_concurrent_commands_start_one_server_lab_down_stops_it(no_prefect_api: Path) -> None:
    home = no_prefect_api
    with socket.socket() as squatter:  # the recorded port now belongs to something else
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        (home / "prefect").mkdir(parents=True)
        (home / "prefect" / "server.json").write_text(json.dumps({"pid": os.getpid(), "port": taken}))
        assert local_prefect.running(home) is None  # a live pid that is not a Prefect server on that port
        dead = _dead_pid()
        (home / "prefect" / "server.json").write_text(json.dumps({"pid": dead, "port": taken}))
        assert local_prefect.describe(home)["stale"].startswith("the recorded process is gone")

        both = [subprocess.Popen([sys.executable, "-c", _ENSURE, str(home)], stdout=subprocess.PIPE, text=True,
                                 cwd=Path(__file__).resolve().parents[3]) for _ in range(2)]
        found = [json.loads(child.communicate(timeout=300)[0]) for child in both]

    assert sorted(f["started"] for f in found) == [False, True]  # one started it, the other reused it
    assert found[0]["pid"] == found[1]["pid"] and found[0]["port"] == found[1]["port"] != taken
    assert found[0]["pid"] != dead
    record = local_prefect.read_record(home)
    assert record is not None and (record.pid, record.port) == (found[0]["pid"], found[0]["port"])
    assert local_prefect.healthy(record)

    from flows.lab import Lab  # `ferry lab down` stops it too (here: a FERRY_HOME without a lab)

    assert Lab(home).down()["prefect_server_stopped"] == record.pid
    assert _gone(record.pid) and local_prefect.read_record(home) is None
