"""The ferry server API as requesters meet it: a real ``ferry serve`` (its API over TLS with a test
certificate), the session's real Prefect server, the ferry store on PostgreSQL, httpx against the API with
keys made by ``ferry api-key create``. What is checked is what a CI job or a person would notice: status
codes and one-line errors, what got deployed (and what not), and who the records say asked."""

from __future__ import annotations

import datetime
import hashlib
import io
import ipaddress
import json
import os
import ssl
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.flows.serve_lab import FERRY, ServedProject, make_served

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 / localhost (the test's own CA)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ferry test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


def archive(size: int) -> bytes:
    """A real .tar.gz package (the feed opens every archive) holding ``size`` random bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        member = tarfile.TarInfo("site/app.bin")
        member.size = size
        tar.addfile(member, io.BytesIO(os.urandom(size)))
    return buffer.getvalue()


class Lab:
    """The served project, its API base URL, the test CA, and keys by name."""

    def __init__(self, served: ServedProject, cert: Path) -> None:
        self.served = served
        self.cert = cert
        self.keys: dict[str, str] = {}

    @property
    def name(self) -> str:
        return self.served.name

    def client(self, key: str | None = None, **headers: str) -> httpx.Client:
        if key is not None:
            headers["Authorization"] = f"Bearer {self.keys.get(key, key)}"

        def internal_error(response: httpx.Response) -> None:
            if response.status_code >= 500:
                response.read()
                print(f"{response.request.method} {response.request.url}: {response.text}\n"
                      f"{self.served.serve_log()[-6000:]}")

        return httpx.Client(base_url=f"{self.served.api_url}/api/v1", headers=headers, timeout=60,
                            verify=ssl.create_default_context(cafile=str(self.cert)),
                            event_hooks={"response": [internal_error]})

    def create_key(self, name: str, environments: list[str], can: str, *extra: str,
                   projects: list[str] | None = None) -> dict[str, Any]:
        args = ["api-key", "create", name, "--can", can, "--json", *extra]
        for project in projects or [self.name]:
            args += ["--project", project]
        for env in environments:
            args += ["--environment", env]
        result = self.served.ferry(*args)
        assert result.exit_code == 0, result.output
        created = json.loads(result.stdout)
        self.keys[name] = created["key"]
        return created

    def records(self) -> list[dict[str, Any]]:
        return self.served.records()

    def flow_runs(self) -> int:
        deployment_id = self.served.deployment()["id"]
        response = self.served.api.post("/flow_runs/count", json={"deployments": {"id": {"any_": [deployment_id]}}})
        response.raise_for_status()
        return int(response.json())

    def follow(self, key: str, deployment_id: int, timeout: float = 180) -> tuple[dict[str, Any], list[dict]]:
        """Poll the log as the client does (every 0.2 s) until the deployment has finished."""
        lines: list[dict[str, Any]] = []
        cursor = None
        deadline = time.monotonic() + timeout
        with self.client(key) as api:
            while time.monotonic() < deadline:
                response = api.get(f"/deployments/{deployment_id}/log", params={"after": cursor} if cursor else {})
                assert response.status_code == 200, response.text
                page = response.json()
                lines += page["lines"]
                cursor = page["next"] or cursor
                if page["finished"]:
                    return page, lines
                time.sleep(0.2)
        raise AssertionError(f"deployment #{deployment_id} not finished within {timeout}s:\n"
                             f"{self.served.serve_log()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, prefect_server, postgres) -> Iterator[Lab]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("server-api")
    cert, key = make_certificate(root)
    served = make_served(root, prefect_server.env(), postgres.create_database(),
                         environments={"Dev": 1, "Test": 1, "Prod": 1})
    served.write(guided_failure=True)
    served.project.apply()
    served.project.release("1.0.0")
    served.start("--tls-cert", str(cert), "--tls-key", str(key))
    lab = Lab(served, cert)
    lab.create_key("ci", ["Dev", "Test"], "push,release,deploy")
    try:
        yield lab
    finally:
        served.stop()
        served.forget()


def test_the_api_speaks_tls_only_and_says_who_a_key_is(lab: Lab) -> None:
    assert lab.served.api_url.startswith("https://127.0.0.1:")
    with lab.client("ci") as api:
        me = api.get("/whoami")
    assert me.status_code == 200
    assert me.json() == {"name": "ci", "projects": [lab.name], "environments": ["Dev", "Test"],
                         "actions": ["push", "release", "deploy"], "expires_at": None}
    plain = lab.served.api_url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{plain}/api/v1/whoami", headers={"Authorization": f"Bearer {lab.keys['ci']}"}, timeout=10)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{lab.served.api_url}/api/v1/whoami", timeout=10)  # not trusted without the test CA


def test_requests_without_a_valid_key_are_401(lab: Lab) -> None:
    ci = lab.keys["ci"]
    secret = ci.split("_", 2)[2]
    wrong = ci[:-3] + ("AAA" if not ci.endswith("AAA") else "BBB")
    lab.create_key("gone", ["Dev"], "deploy")
    lab.create_key("old", ["Dev"], "deploy")
    assert lab.served.ferry("api-key", "revoke", "gone").exit_code == 0
    assert lab.served.ferry("api-key", "expire", "old").exit_code == 0
    cases = {None: "no api key", "Basic Y2k6eA==": "Bearer", f"Bearer {wrong}": "is not valid",
             "Bearer ferry_nonsense": "not a ferry api key", f"Bearer {lab.keys['gone']}": "was revoked",
             f"Bearer {lab.keys['old']}": "expired"}
    for header, reason in cases.items():
        with lab.client(**({"Authorization": header} if header else {})) as api:
            response = api.post("/deployments", json={"project": lab.name, "environment": "Dev"})
        assert response.status_code == 401, (header, response.text)
        assert reason in response.json()["error"]
        assert secret not in response.text
    listed = lab.served.ferry("api-key", "list", "--all", "--json")
    assert listed.exit_code == 0 and secret not in listed.stdout
    assert {k["name"]: k["state"] for k in json.loads(listed.stdout)["items"]} == {"ci": "active", "gone": "revoked",
                                                                         "old": "expired"}


def test_a_dev_and_test_key_is_refused_production_recorded_and_nothing_deployed(lab: Lab) -> None:
    records_before, runs_before = len(lab.records()), lab.flow_runs()
    with lab.client("ci") as api:
        refused = api.post("/deployments", json={"project": lab.name, "release": "1.0.0", "environment": "Prod"})
        promote = api.post(f"/projects/{lab.name}/promote", json={"from": "Dev", "to": "Prod"})
        audit = api.get("/audit", params={"limit": 20}).json()["entries"]
    assert refused.status_code == 403
    assert refused.json() == {"error": "api key 'ci' may not deploy to Prod"}
    assert promote.status_code == 403
    mine = [e for e in audit if e["action"] == "refused" and e["actor"] == "key:ci"]
    assert [e["subject"] for e in mine[:2]] == [f"project/{lab.name}/environment/Prod"] * 2
    assert mine[1]["detail"]["request"] == "POST /api/v1/deployments"
    time.sleep(1)
    assert len(lab.records()) == records_before
    assert lab.flow_runs() == runs_before


def test_push_same_bytes_other_bytes_bad_sha(lab: Lab, tmp_path: Path) -> None:
    feed = Path(lab.served.env["FERRY_HOME"]) / "feed" / "Shop.Web"
    data = archive(3 << 20)
    good = hashlib.sha256(data).hexdigest()

    def push(key: str, name: str, body: bytes, sha: str) -> httpx.Response:
        with lab.client(key) as api:
            return api.post("/packages", params={"filename": name}, content=iter([body[i:i + 65536] for i in
                                                                                    range(0, len(body), 65536)]),
                            headers={"X-Ferry-Sha256": sha, "Content-Type": "application/octet-stream"})

    first = push("ci", "Shop.Web.1.0.0.tar.gz", data, good)
    assert first.status_code == 201, first.text
    assert first.json()["created"] is True and first.json()["size"] == len(data)
    assert (feed / "Shop.Web.1.0.0.tar.gz").read_bytes() == data
    again = push("ci", "Shop.Web.1.0.0.tar.gz", data, good)
    assert again.status_code == 200 and again.json()["created"] is False
    other = archive(1000)
    conflict = push("ci", "Shop.Web.1.0.0.tar.gz", other, hashlib.sha256(other).hexdigest())
    assert conflict.status_code == 409 and "already in the feed with different content" in conflict.json()["error"]
    bad = push("ci", "Shop.Web.1.0.1.tar.gz", data, "0" * 64)
    assert bad.status_code == 400 and "sha256 mismatch" in bad.json()["error"]
    assert sorted(p.name for p in feed.iterdir()) == ["Shop.Web.1.0.0.tar.gz"]  # nothing half-written
    assert (feed / "Shop.Web.1.0.0.tar.gz").read_bytes() == data
    lab.create_key("deployer", ["Dev"], "deploy")
    assert push("deployer", "Shop.Web.1.0.2.tar.gz", data, good).status_code == 403
    assert sorted(p.name for p in feed.iterdir()) == ["Shop.Web.1.0.0.tar.gz"]
    with lab.client("ci") as api:
        listed = api.get("/packages", params={"package_id": "Shop.Web"}).json()["packages"]
    assert [(p["version"], p["sha256"], p["pushed_by"]) for p in listed] == [("1.0.0", good, "key:ci")]


def test_release_created_and_deployed_over_the_api_name_the_key(lab: Lab) -> None:
    with lab.client("ci") as api:
        created = api.post(f"/projects/{lab.name}/releases", json={"version": "2.0.0", "notes": "from CI"})
        assert created.status_code == 201, created.text
        duplicate = api.post(f"/projects/{lab.name}/releases", json={"version": "2.0.0"})
        started = api.post("/deployments", json={"project": lab.name, "release": "latest", "environment": "Dev",
                                                 "variables": {"Sleep": "0.5"}})
        assert started.status_code == 201, started.text
        releases = api.get(f"/projects/{lab.name}/releases").json()["releases"]
    assert created.json()["version"] == "2.0.0"
    assert duplicate.status_code == 409
    assert {r["version"]: r["created_by"] for r in releases}["2.0.0"] == "key:ci"
    body = started.json()
    assert (body["release"], body["environment"]) == ("2.0.0", "Dev")
    page, lines = lab.follow("ci", body["deployment_id"])
    assert page["ok"] is True and page["record_state"] == "Success"
    assert any(line["task"] == "Install · dev-01" for line in lines), lines
    assert any("succeeded" in line["message"] for line in lines)
    assert lab.served.flow_run(body["flow_run_id"])["state"]["type"] == "COMPLETED"
    record = lab.served.record_of(body["flow_run_id"])
    assert (record["created_by"], record["state"], record["version"]) == ("key:ci", "Success", "2.0.0")
    with lab.client("ci") as api:
        shown = api.get(f"/deployments/{body['deployment_id']}").json()
        # promote what just succeeded in Dev to Test, then roll Dev back to 1.0.0 — both as the key
        if not any(d["environment"] == "Dev" and d["version"] == "1.0.0" and d["state"] == "Success"
                   for d in lab.records()):
            assert lab.served.project.deploy("1.0.0", "Dev").exit_code == 0
            again = api.post("/deployments", json={"project": lab.name, "release": "2.0.0", "environment": "Dev"})
            assert lab.follow("ci", again.json()["deployment_id"])[0]["ok"] is True
        promoted = api.post(f"/projects/{lab.name}/promote", json={"from": "Dev", "to": "Test"})
        rolled = api.post(f"/projects/{lab.name}/rollback", json={"environment": "Dev"})
    assert shown["finished"] is True and shown["results"][0]["state"] == "success"
    assert promoted.status_code == 201, promoted.text
    assert (promoted.json()["release"], promoted.json()["environment"]) == ("2.0.0", "Test")
    assert rolled.status_code == 201, rolled.text
    assert (rolled.json()["release"], rolled.json()["rolled_back_from"]) == ("1.0.0", "2.0.0")
    for started_run in (promoted.json(), rolled.json()):
        assert lab.follow("ci", started_run["deployment_id"])[0]["ok"] is True
        assert lab.served.record_of(started_run["flow_run_id"])["created_by"] == "key:ci"
    with lab.client("ci") as api:
        status = api.get(f"/projects/{lab.name}/status").json()
    assert status["current"]["Test"]["release"] == "2.0.0" and status["current"]["Dev"]["release"] == "1.0.0"


def test_answer_and_cancel_need_their_scope(lab: Lab) -> None:
    lab.create_key("prod-answerer", ["Prod"], "answer")
    lab.create_key("dev-answerer", ["Dev"], "answer")
    with lab.client("ci") as api:
        started = api.post("/deployments", json={"project": lab.name, "release": "1.0.0", "environment": "Dev",
                                                 "force": True, "guided_failure": True, "variables": {"Fail": "yes"}})
    assert started.status_code == 201, started.text
    deployment_id = started.json()["deployment_id"]
    lab.served.wait_state(started.json()["flow_run_id"], "PAUSED")
    for key, reason in (("ci", "api key 'ci' may not answer"), ("prod-answerer", "may not answer to Dev")):
        with lab.client(key) as api:
            refused = api.post(f"/deployments/{deployment_id}/answer", json={"action": "abort"})
        assert refused.status_code == 403, refused.text
        assert reason in refused.json()["error"]
    assert lab.served.flow_run(started.json()["flow_run_id"])["state"]["type"] == "PAUSED"
    with lab.client("dev-answerer") as api:
        wrong = api.post(f"/deployments/{deployment_id}/answer", json={"action": "proceed"})
        answered = api.post(f"/deployments/{deployment_id}/answer", json={"action": "abort", "notes": "not today"})
    assert wrong.status_code == 409 and "waiting for one of" in wrong.json()["error"]
    assert answered.status_code == 200, answered.text
    assert lab.follow("dev-answerer", deployment_id)[0]["ok"] is False
    with lab.client("dev-answerer") as api:
        audit = api.get("/audit").json()["entries"]
    answers = [e for e in audit if e["action"] == "deployment.answer"]
    assert answers and answers[0]["actor"] == "key:dev-answerer"
    assert answers[0]["detail"] == {"answer": "abort", "notes": "not today"}

    with lab.client("ci") as api:
        slow = api.post("/deployments", json={"project": lab.name, "release": "1.0.0", "environment": "Dev",
                                              "force": True, "variables": {"Sleep": "60"}}).json()
    with lab.client("dev-answerer") as api:
        assert api.post(f"/deployments/{slow['deployment_id']}/cancel").status_code == 403
    with lab.client("ci") as api:
        cancelled = api.post(f"/deployments/{slow['deployment_id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    run = lab.served.wait_final(slow["flow_run_id"], timeout=90)
    assert run["state"]["type"] == "CANCELLED"
    page, _ = lab.follow("ci", slow["deployment_id"], timeout=90)
    assert page["record_state"] == "Cancelled" and page["ok"] is False
    # Cancelled while its runner was starting the process (ferry serve polls every 0.2 s), it must not deploy:
    # Prefect lets such a run go Running again, so the flow itself honours the cancelled record. Watch the
    # process's turn (Running → final) or 20 s: no step may run, and the run stays Cancelled.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        history = [s["type"] for s in lab.served.api.get(
            "/flow_run_states/", params={"flow_run_id": slow["flow_run_id"]}).json()]
        if "RUNNING" in history and history[-1] != "RUNNING":
            break
        time.sleep(0.5)
    assert lab.served.task_runs(slow["flow_run_id"]) == []
    assert lab.served.flow_run(slow["flow_run_id"])["state"]["type"] == "CANCELLED"


def test_unknown_things_and_bad_bodies_are_one_line_errors(lab: Lab) -> None:
    with lab.client("ci") as api:
        assert api.get("/deployments/999999").status_code == 404
        unknown = api.get(f"/projects/{lab.name}/releases/9.9.9")
        missing = api.post("/deployments", json={"project": lab.name})
        other = api.get("/projects/Elsewhere/status")
    assert unknown.status_code == 404 and "\n" not in unknown.json()["error"]
    assert missing.status_code == 422 and "environment" in missing.json()["error"]
    assert other.status_code == 403 and "no access to project Elsewhere" in other.json()["error"]


def test_serve_refuses_plain_http_off_loopback_and_a_taken_port(lab: Lab) -> None:
    env = lab.served.env
    off = subprocess.run([FERRY, "serve", "--project", lab.name, "--api-host", "0.0.0.0"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert off.returncode != 0
    assert off.stderr.strip().splitlines() == [
        "error: --api-host 0.0.0.0 is not a loopback address: API keys would cross the network in plain text; "
        "give --tls-cert and --tls-key (or --insecure-http behind a TLS proxy)"]
    port = lab.served.api_url.rsplit(":", 1)[1]
    taken = subprocess.run([FERRY, "serve", "--project", lab.name, "--api-port", port], env=env,
                           capture_output=True, text=True, timeout=120)
    assert taken.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
    half = subprocess.run([FERRY, "serve", "--tls-cert", str(lab.cert)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert half.returncode != 0 and "--tls-cert and --tls-key go together" in half.stderr
