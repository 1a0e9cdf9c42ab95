"""End to end on "Windows": the OctoFX Windows sample rolls v2 over v1 across 3 WS-Management STAND-IN targets
(real WS-Man + NTLM with message encryption; PowerShell and IIS emulated — tests/standins/wsman_standin.py) behind
a real HAProxy, through the real CLI and Prefect, while bounded load goes through HAProxy: no request fails,
and each stand-in's simulated IIS ends on the v2 folder with the v1 folder kept."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.lab.configs import haproxy_config
from tests.conftest import EXAMPLES
from tests.servers.ssh_lab import private_network
from tests.standins.windows_lab import PASSWORD, Standin, free_port, start_standin
from tests.standins.wsman_standin import StandinConfig

WINDOWS = EXAMPLES / "octofx" / "windows"
TARGETS = ("web-01", "web-02", "web-03")

pytestmark = [pytest.mark.slow]  # haproxy is installed by `make test` (flows/lab/install-debian-packages)


class Windows:
    """3 stand-in targets and one HAProxy in front of their simulated IIS sites, on a private loopback /24."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.network = private_network(offset=7)
        self.servers: dict[str, Standin] = {}
        self.haproxy_pid: int | None = None

    def start(self) -> Windows:
        for index, name in enumerate(TARGETS):
            address = f"{self.network}.{11 + index}"
            config = StandinConfig(address=address, port=free_port(address), machine=name.upper(),
                                   state_dir=str(self.root / name), users={"deploy": PASSWORD})
            self.servers[name] = start_standin(config)
            self.servers[name].edit_iis(lambda s: s.update(time_scale=0.01))
        self.balancer = f"{self.network}.1:8000"
        self.api = f"{self.network}.1:9999"
        cfg = haproxy_config(frontend=self.balancer, backend="octofx",
                             servers=[(n, f"{s.config.address}:8080") for n, s in self.servers.items()],
                             api=self.api, socket=self.root / "haproxy.sock", socket_group="root",
                             pid_file=self.root / "haproxy.pid")
        # the simulated IIS serves files: the health check asks for the sample's health page
        cfg = cfg.replace("option httpchk GET /health\n", "option httpchk GET /health.htm\n")
        (self.root / "haproxy.cfg").write_text(cfg)
        subprocess.run(["haproxy", "-D", "-f", str(self.root / "haproxy.cfg"), "-p", str(self.root / "haproxy.pid")],
                       check=True, capture_output=True, timeout=30)
        self.haproxy_pid = int((self.root / "haproxy.pid").read_text().split()[0])
        return self

    def stop(self) -> None:
        if self.haproxy_pid:
            with_suppress_kill(self.haproxy_pid)
        for server in self.servers.values():
            server.stop()

    def write_sample(self, dest: Path, min_healthy: int) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        project = yaml.safe_load((WINDOWS / "project.yaml").read_text())
        project["lifecycle"] = "Default"
        for variable in project["variables"]:
            if variable["name"] == "Rollout.MinHealthy":
                variable["value"] = min_healthy
        (dest / "project.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
        infra = {
            "environments": [{"name": "Test"}, {"name": "Production"}],
            "lifecycles": [{"name": "Default", "phases": [{"name": "Production", "environments": ["Production"]}]}],
            "load_balancers": [{"name": "web-lb", "kind": "haproxy", "backend": "octofx",
                                "nodes": [f"tcp://{self.api}"]}],
            "targets": [{"name": name, "environment": "Production", "roles": ["web"],
                         "transport": {"kind": "winrm", "host": s.config.address, "port": s.config.port,
                                       "scheme": "http", "auth": "ntlm", "username": "deploy",
                                       "password": {"from_env": "FERRY_TEST_WINRM_PASSWORD"}}}
                        for name, s in self.servers.items()],
        }
        (dest / "infrastructure.yaml").write_text(yaml.safe_dump(infra, sort_keys=False))


def with_suppress_kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)


class Load:
    """Bounded load through HAProxy: a few threads, each request's status and the version that answered."""

    def __init__(self, url: str, threads: int = 3, max_requests: int = 20_000) -> None:
        self.url, self.threads, self.max_requests = url, threads, max_requests
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()

    def _work(self) -> None:
        while not self.stopped.is_set():
            with self.lock:
                if self.requests >= self.max_requests:
                    return
                self.requests += 1
            try:
                with urllib.request.urlopen(self.url, timeout=5) as reply:
                    body = reply.read().decode()
                version = body.split("version ", 1)[1].split(" ", 1)[0] if "version " in body else "?"
                with self.lock:
                    self.versions[version] += 1
            except (urllib.error.URLError, OSError) as error:
                with self.lock:
                    self.failures.append(repr(error)[:200])
            time.sleep(0.01)

    def __enter__(self) -> Load:
        self.workers = [threading.Thread(target=self._work, daemon=True) for _ in range(self.threads)]
        for worker in self.workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        for worker in self.workers:
            worker.join(10)


@pytest.fixture
def windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Windows]:
    monkeypatch.setenv("FERRY_TEST_WINRM_PASSWORD", PASSWORD)
    monkeypatch.setenv("OCTOFX_DB_PASSWORD", "Sup3r-S3cret'\"$(x)`n")
    lab = Windows(tmp_path / "windows")
    try:
        yield lab.start()
    finally:
        lab.stop()


def package(version: str, out: Path) -> Path:
    spec = importlib.util.spec_from_file_location("octofx_windows_build", WINDOWS / "build_package.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(version, out)  # type: ignore[no-any-return]


def test_octofx_rolls_v2_over_v1_on_standin_windows_with_zero_failed_requests(
        windows: Windows, ferry: Any, prefect_env: dict[str, str], tmp_path: Path) -> None:
    sample = tmp_path / "octofx"
    for version, min_healthy in (("1.0.0", 0), ("2.0.0", 2)):
        windows.write_sample(sample, min_healthy)
        for args in (("apply", str(sample / "infrastructure.yaml"), str(sample / "project.yaml")),
                     ("package", "push", str(package(version, tmp_path / "packages"))),
                     ("release", "create", "OctoFX", "--version", version)):
            result = ferry(*args)
            assert result.exit_code == 0, result.output
        if version == "1.0.0":
            result = ferry("deploy", "OctoFX", version, "--to", "Production", "--wait")
            assert result.exit_code == 0, result.output
            continue
        with Load(f"http://{windows.balancer}/") as load:
            time.sleep(1.0)  # traffic flows before the rollout starts
            result = ferry("deploy", "OctoFX", version, "--to", "Production", "--wait")
            time.sleep(1.0)
        assert result.exit_code == 0, result.output
        assert load.failures == [], load.failures[:5]
        assert load.requests > 100
        assert set(load.versions) == {"1.0.0", "2.0.0"}, load.versions

    root = r"C:\ferry\Applications\Production\OctoFX.Web"
    for name, server in windows.servers.items():
        iis = server.iis()
        assert iis["sites"]["OctoFX"]["physicalPath"] == root + r"\2.0.0", name
        assert iis["appPools"]["OctoFX"]["state"] == "Started"
        assert server.fs(root + r"\1.0.0").is_dir(), f"{name}: the v1 folder is kept"
        assert server.fs(root + r"\2.0.0\health.htm").read_text() == "ok 2.0.0\n"
        stops = [e["at"] for e in iis["log"] if e["op"] == "Stop-WebAppPool"]
        assert len(stops) == 1, f"{name}: the pool was stopped once, for the v2 switch"
