"""The CLI in remote mode (``FERRY_SERVER`` + ``FERRY_API_KEY``, or ``--server``), run as a CI job runs it:
the real ``ferry`` command in a subprocess whose environment holds nothing else, a ``FERRY_HOME`` that does
not exist, against a small real HTTP server speaking the API contract (the same one the client tests use;
the end-to-end test against ``ferry serve`` is in tests/end_to_end/test_ci_examples.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.flows.client.test_client import KEY, Api, serve_api

FERRY = str(Path(sys.executable).parent / "ferry")


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[tuple[Api, dict[str, str]]]:
    with serve_api() as api:
        env = {"PATH": os.environ["PATH"], "FERRY_SERVER": api.url, "FERRY_API_KEY": KEY,
               "FERRY_HOME": str(tmp_path / "no-such-home"), "COLUMNS": "200"}
        yield api, env
    assert not (tmp_path / "no-such-home").exists(), "remote mode created a FERRY_HOME"


def run(env: dict[str, str], *args: str) -> CliResult:
    proc = subprocess.run([FERRY, *args], capture_output=True, text=True, env=env, timeout=60)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def test_deploy_wait_streams_the_log_and_exits_with_the_result(remote: tuple[Api, dict[str, str]]) -> None:
    api, env = remote
    api.run_for = 2.0
    result = run(env, "deploy", "OctoFX", "latest", "--to", "Dev", "--wait")
    ended = time.monotonic()
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "deployment #7: OctoFX 1.0.0 → Dev"
    assert [line.split(" | ", 3)[-1] for line in lines if " | " in line] == [f"line {i}" for i in range(10)]
    assert "deployment #7 is paused, waiting for a person" in result.stdout
    assert lines[-1] == "deployment #7 succeeded"
    assert ended - api.finish_at < 0.6, "the CLI must end within a poll (0.2 s) plus its own exit of the end"
    assert api.received[0]["body"] == {"project": "OctoFX", "release": "latest", "environment": "Dev",
                                       "force": False}


def test_exit_codes_refused_failed_timed_out(remote: tuple[Api, dict[str, str]]) -> None:
    api, env = remote
    refused = run(env, "deploy", "OctoFX", "latest", "--to", "Production", "--wait")
    assert refused.exit_code == 3, refused.output
    assert refused.stderr.strip() == "error: api key 'ci' may not deploy to Production"

    api.outcome, api.run_for = "Failed", 1.5
    failed = run(env, "deploy", "OctoFX", "latest", "--to", "Dev", "--wait")
    assert failed.exit_code == 1, failed.output
    assert failed.stderr.strip() == "error: deployment #7 failed: Install · web-01: exit code 3"

    api.outcome, api.finish_at = "Success", time.monotonic() + 60
    slow = run(env, "deploy", "OctoFX", "latest", "--to", "Dev", "--timeout", "2")
    assert slow.exit_code == 124, slow.output
    assert "did not finish within 2s; it goes on" in slow.stderr
    cancelled = run(env, "deploy", "OctoFX", "latest", "--to", "Dev", "--timeout", "2", "--cancel-on-timeout")
    assert cancelled.exit_code == 124, cancelled.output
    assert "timed out after 2s and was cancelled" in cancelled.stderr
    assert api.received[-1]["path"] == "/api/v1/deployments/7/cancel" or any(
        r["path"] == "/api/v1/deployments/7/cancel" for r in api.received)


def test_server_option_and_the_key_only_from_the_environment(remote: tuple[Api, dict[str, str]]) -> None:
    api, env = remote
    api.finish_at = time.monotonic()
    without = {k: v for k, v in env.items() if k != "FERRY_SERVER"}
    shown = run(without, "--server", api.url, "deployment", "show", "7", "--json")
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.stdout)
    assert document["state"] == "Success" and "finished" not in document  # the local command's document
    no_key = run({k: v for k, v in env.items() if k != "FERRY_API_KEY"}, "status", "OctoFX")
    assert no_key.exit_code == 1
    assert no_key.stderr.strip() == f"error: remote mode (ferry server {api.url}) needs an API key in FERRY_API_KEY"
    bad_key = run({**env, "FERRY_API_KEY": "ferry_00000000_nope"}, "deployment", "list")
    assert bad_key.exit_code == 3 and bad_key.stderr.strip() == "error: unknown api key"


@pytest.mark.parametrize("command", [["apply", "project.yaml"], ["target", "trust", "web-01"],
                                     ["release", "verify", "P", "1"], ["serve"]])
def test_executor_only_commands_are_refused_in_one_line(remote: tuple[Api, dict[str, str]],
                                                        command: list[str]) -> None:
    api, env = remote
    result = run(env, *command)
    assert result.exit_code == 1, result.output
    name = " ".join(c for c in command[:2] if c.isalpha() and c.islower())
    assert result.stderr.strip() == (f"error: `ferry {name}` runs only on the executor (where the store and the "
                                     f"master key are), not through the ferry server at {api.url}: unset "
                                     "FERRY_SERVER to run it there")
    assert api.received == []


def test_an_unreachable_server_is_named(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "FERRY_SERVER": "http://127.0.0.1:9", "FERRY_API_KEY": KEY,
           "FERRY_HOME": str(tmp_path / "none")}
    result = run(env, "status", "OctoFX")
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: cannot reach the ferry server at http://127.0.0.1:9: connection refused"


def test_remote_mode_loads_neither_prefect_nor_the_store(remote: tuple[Api, dict[str, str]]) -> None:
    """What makes ``ferry deploy --wait`` through a server start fast (issue 17): the CLI in remote mode
    imports neither Prefect nor SQLAlchemy nor the crypto of the master key."""
    api, env = remote
    api.run_for = 0.5
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: sys.stderr.write('LOADED %s\\n' % sorted({m.split('.')[0] for m in sys.modules}"
             " & {'prefect', 'sqlalchemy', 'cryptography', 'paramiko', 'fastapi'})))\n"
             "sys.argv = ['ferry', 'deploy', 'OctoFX', 'latest', '--to', 'Dev', '--wait']\n"
             "from flows.cli import main\nmain()\n")
    proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deployment #7 succeeded" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "LOADED []"


def test_tls_with_a_private_ca(tmp_path: Path) -> None:
    """An https ferry server whose certificate comes from a private CA: trusted through FERRY_CA_BUNDLE,
    refused in one line without it."""
    import ssl

    from tests.flows.server.test_server_api import make_certificate

    cert, key = make_certificate(tmp_path)
    with serve_api() as api:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(cert), str(key))
        api.socket = context.wrap_socket(api.socket, server_side=True)
        url = api.url.replace("http://", "https://")
        env = {"PATH": os.environ["PATH"], "FERRY_SERVER": url, "FERRY_API_KEY": KEY,
               "FERRY_HOME": str(tmp_path / "none")}
        trusted = run({**env, "FERRY_CA_BUNDLE": str(cert)}, "status", "Octo FX", "--json")
        assert trusted.exit_code == 0, trusted.output
        assert json.loads(trusted.stdout)["environments"] == ["Dev"]
        untrusted = run(env, "status", "Octo FX")
    assert untrusted.exit_code == 1
    assert untrusted.stderr.startswith(f"error: cannot reach the ferry server at {url}: ")
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr and len(untrusted.stderr.strip().splitlines()) == 1
