"""The same rolling deployment with ferry and with Ansible, on the same lab, measured in one run.

    .venv/bin/python -m benchmarks.rolling_vs_ansible [--targets 8[,32,128]] [--window 2] [--pairs 5[,1,1]]
                                                      [--quick] [--budget-minutes 40] [--json]

``benchmarks/run`` runs it with the per-(step, target) overhead benchmark (``benchmarks.deploy_local``).

What runs (needs root, like `ferry lab up`):

- a private lab (its own FERRY_HOME and loopback /24, so a demo or test lab is not disturbed): ``--targets``
  SSH targets behind one HAProxy with health checks;
- a Prefect server on its own PostgreSQL (started once, not timed: a real ferry install runs one; on SQLite
  Prefect's server answers 503 while another write holds the database and its client retries after seconds);
- a warm ``ferry serve`` and a scoped API key for the requester side (see below);
- Ansible (ansible-core + community.general) and Mitogen, pinned in ``benchmarks/ansible-requirements.txt``,
  in the benchmark's own venv ``benchmarks/.venv-ansible`` made by ``benchmarks/setup-ansible-venv`` (which
  also checks that Mitogen loads with that ansible-core); the playbook is ``benchmarks/ansible/rolling.yml``
  with ``benchmarks/ansible/ansible.cfg`` (pipelining, ControlPersist, forks 8, no facts) and an inventory
  written from the lab. It runs twice per round: plain, and with Mitogen (strategy ``mitogen_linear``).

Both deploy the OctoFX sample package (``examples/octofx``) with a window of ``--window`` targets: drain and
disable each server in HAProxy, install the package into a new release folder, run its Deploy.sh, switch
``current``, restart through its PostDeploy.sh, smoke test the app on the target, enable the server and wait
for HAProxy to call it UP. Every run deploys a version never deployed before (a fresh package is built for
each), so neither side can skip work. After one untimed warm-up run of each, ``--pairs`` rounds run in ABBA
order (ferry, Ansible, Ansible + Mitogen, floor, fresh floor; then the reverse), so neither tool always goes
first; ratios are taken within a round (paired) and reported with their spread, each run with the load
average and the CPU-seconds the whole machine spent during it (every process it caused, /proc/stat).

``--targets`` takes a list (``8,32,128``): each size gets a lab of its own (more sshd instances on loopback
addresses; up to 250), the same window, and a line of cost per target, to show how the cost grows.
``--quick`` is a sanity check (8 targets, 1 round); ``--budget-minutes`` stops starting rounds (and sizes)
once spent — every size gets at least one round — so a run stays bounded on a busy machine.

Each run is checked before it counts: both tools reach HAProxy's runtime API through a recording proxy, and
every server must have been set to drain, then taken out (MAINT), then put back — in that order; a monitor
polling HAProxy must have seen every server in MAINT; at the end every server is UP and every app answers the
new version over HTTP; and the tool's own record (ferry's step results, Ansible's task output) shows the smoke
test passed on every target. A run that did less is refused, and nothing is reported.

The floor is the real work without a tool: the same steps run directly, batch by batch — HAProxy commands on
its socket, the package streamed into one command over an already open (multiplexed) OpenSSH connection per
target that unpacks it and runs the same scripts, the smoke test as one HTTP poll — and it is the sum over
batches of the slowest target's time. Each tool's overhead is its wall time above the floor.

ferry's time is the whole ``ferry deploy PROJECT VERSION --to ENV --wait`` command (process start included),
run two ways: as CI runs it in production — a requester with a scoped API key (``FERRY_SERVER``,
``FERRY_API_KEY``) asking a warm ``ferry serve`` (started once per lab, not timed, as Ansible's ControlPersist
masters are not) — and as a one-off ``--local`` command that imports Prefect and runs the flow in its own
process. Ansible's time is the whole ``ansible-playbook`` command. Package push and release creation happen
before the clock and are timed and reported beside it. Two floors: one that accepts the UP HAProxy remembers from before
MAINT (as Ansible's haproxy module does), one that waits for fresh health checks as ferry does.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
ANSIBLE_DIR = BENCH / "ansible"
ANSIBLE_VENV = BENCH / ".venv-ansible"
SETUP_ANSIBLE = BENCH / "setup-ansible-venv"
BUILD_PACKAGE = REPO / "examples" / "octofx" / "build_package.py"

PROJECT = "OctoFX"
PACKAGE = "OctoFX.Web"
ENVIRONMENT = "Production"
BACKEND = "octofx"
APP_ROOT = "/srv/octofx"
APP_STATE = f"{APP_ROOT}/{ENVIRONMENT}/{PACKAGE}"  # ferry's package step: <root>/<environment>/<package>
SSH_PORT = 2222
TARGET_RATIO = 0.30
TARGET_OVERHEAD = 0.15


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Refused(Exception):
    """A run did less than the job (or failed): it is not a valid measurement."""


# ------------------------------------------------------------------------------------------------ Ansible venv

def ensure_ansible() -> tuple[Path, Path]:
    """``ansible-playbook`` in ``benchmarks/.venv-ansible`` and Mitogen's strategy plugin folder, from
    ``benchmarks/setup-ansible-venv`` (installs the pins on first run or when they change; checks the pair)."""
    log("Ansible + Mitogen venv: benchmarks/setup-ansible-venv")
    out = subprocess.run([str(SETUP_ANSIBLE)], check=True, capture_output=True, text=True).stdout.strip()
    log(out)
    strategy = Path(out.rsplit("strategy plugins ", 1)[1])
    return ANSIBLE_VENV / "bin" / "ansible-playbook", strategy


# ------------------------------------------------------------------------------------------------ HAProxy

def haproxy_command(path: str, command: str, timeout: float = 5.0) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode()


def server_stats(path: str) -> dict[str, dict[str, str]]:
    """``show stat`` rows of the backend's servers, by server name."""
    text = haproxy_command(path, "show stat").lstrip("# ")
    return {r["svname"]: r for r in csv.DictReader(io.StringIO(text))
            if r.get("pxname") == BACKEND and r["svname"] not in ("FRONTEND", "BACKEND")}


class ApiRecorder:
    """A unix socket in front of HAProxy's runtime API that records every command it forwards (HAProxy's
    non-interactive mode: one command line per connection, the reply, close). Both tools talk through it."""

    def __init__(self, path: Path, upstream: str) -> None:
        self.path, self.upstream = path, upstream
        self.commands: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock.bind(str(path))
        os.chmod(path, 0o666)
        self._sock.listen(128)
        threading.Thread(target=self._accept, daemon=True, name="api-recorder").start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as up:
            try:
                client.settimeout(30)
                request = b""
                while b"\n" not in request and (data := client.recv(65536)):
                    request += data
                with self._lock:
                    self.commands.append((time.monotonic(), request.decode(errors="replace").strip()))
                up.settimeout(30)
                up.connect(self.upstream)
                up.sendall(request)
                while data := up.recv(65536):
                    client.sendall(data)
            except OSError:
                pass

    def take(self) -> list[tuple[float, str]]:
        with self._lock:
            taken, self.commands = self.commands, []
        return taken

    def close(self) -> None:
        self._sock.close()


class StateMonitor:
    """Polls HAProxy (directly, not through the recorder) and remembers every status each server showed."""

    def __init__(self, socket_path: str, interval: float = 0.05) -> None:
        self.socket_path, self.interval = socket_path, interval
        self.seen: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StateMonitor:
        self.seen = {}
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="haproxy-monitor")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                for name, row in server_stats(self.socket_path).items():
                    self.seen.setdefault(name, set()).add(row["status"])
            self._stop.wait(self.interval)


# ------------------------------------------------------------------------------------------------ the bench

@dataclass
class Run:
    tool: str
    version: str
    seconds: float
    detail: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, root: Path, targets: int, window: int, verbose: bool) -> None:
        self.root, self.count, self.window, self.verbose = root, targets, window, verbose
        self.home = root / "home"
        self.packages = root / "packages"
        self.packages.mkdir(parents=True)
        self.logs = root / "logs"
        self.logs.mkdir()
        self.version_no = 0
        self.env: dict[str, str] = {}
        self.server: Any = None
        self.recorder: ApiRecorder | None = None
        self.masters: list[subprocess.Popen[bytes]] = []
        self.cool_to: float | None = None
        self.cool_max = 180.0

    # -- setup ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        from flows.lab import Lab

        self.lab = Lab(self.home)
        pid = os.getpid()
        network = f"127.{250 + pid % 5}.{(pid // 5) % 250 + 1}"  # apart from demo, test and upload-bench labs
        log(f"lab: {self.count} targets on {network}.x")
        status = self.lab.up(self.count, network=network, ssh_port=SSH_PORT)
        self.status = status
        self.targets: list[dict[str, Any]] = status["targets"]
        self.haproxy_socket = status["haproxy"]["socket"].removeprefix("unix://")
        self.recorder = ApiRecorder(self.root / "haproxy-api.sock", self.haproxy_socket)

        sys.path.insert(0, str(REPO))
        from tests.servers.postgres import PostgresServer
        from tests.servers.prefect_server import PrefectServer

        # PostgreSQL, as README's scale-out section says a real install runs it: on SQLite, Prefect's server
        # answers 503 while another write holds the database, and its client retries after 2-8 s (seen here
        # as multi-second stalls before a served run was created). Durable: its own fsync kept.
        log("Prefect server on PostgreSQL: starting (not timed)")
        self.postgres = PostgresServer(durable=True).start()
        url = self.postgres.create_database("prefect").replace("postgresql://", "postgresql+asyncpg://")
        self.server = PrefectServer(database_url=url).start()
        self.env = {**os.environ, **self.server.env(), "FERRY_HOME": str(self.home)}
        self.env.pop("FERRY_DATABASE_URL", None)
        self._write_ferry_project()
        self.ferry_bin = str(Path(sys.executable).parent / "ferry")
        self._ferry("apply", str(self.root / "infrastructure.yaml"), str(self.root / "project.yaml"))
        self.playbook_bin, self.mitogen_strategy = ensure_ansible()
        self._write_inventory()
        self._open_masters()
        self._start_serve()

    def _start_serve(self) -> None:
        """A warm ``ferry serve`` (Prefect runner, warm interpreter, ferry server API) and a scoped API key for
        the requester side, as a production install has them: started once, not timed."""
        key = json.loads(self._ferry("api-key", "create", "bench-ci", "--project", PROJECT, "--environment",
                                     ENVIRONMENT, "--can", "deploy", "--json"))["key"]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.serve_log = self.logs / "ferry-serve.log"
        with open(self.serve_log, "w") as sink:  # the child keeps its own descriptor
            self.serve = subprocess.Popen([self.ferry_bin, "serve", "--project", PROJECT, "--api-port", str(port)],
                                          env=self.env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        self.remote_env = {**self.env, "FERRY_SERVER": f"http://127.0.0.1:{port}", "FERRY_API_KEY": key}
        deadline = time.monotonic() + 90
        while "serving (" not in self.serve_log.read_text():
            if self.serve.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ferry serve did not start; see {self.serve_log}")
            time.sleep(0.2)
        log(f"ferry serve: warm, API on port {port} (not timed)")

    def stop(self) -> None:
        if getattr(self, "serve", None) is not None:
            self.serve.terminate()
            with contextlib.suppress(Exception):
                self.serve.wait(15)
        for master in self.masters:
            with contextlib.suppress(Exception):
                master.terminate()
                master.wait(5)
        if self.recorder:
            self.recorder.close()
        if self.server is not None:
            self.server.stop()
        if getattr(self, "postgres", None) is not None:
            self.postgres.stop()
        with contextlib.suppress(Exception):
            self.lab.down()

    def _write_ferry_project(self) -> None:
        infrastructure = {
            "environments": [{"name": ENVIRONMENT}],
            "lifecycles": [{"name": "Default", "phases": [{"name": ENVIRONMENT, "environments": [ENVIRONMENT]}]}],
            "load_balancers": [{"name": "web-lb", "kind": "haproxy", "backend": BACKEND,
                                "nodes": [f"unix://{self.recorder.path}"]}],  # type: ignore[union-attr]
            "targets": [{"name": t["name"], "environment": ENVIRONMENT, "roles": ["web"],
                         "transport": {"kind": "ssh", "host": t["address"], "port": t["ssh_port"],
                                       "user": self.status["user"], "key_file": self.status["key_file"],
                                       "host_key": t["host_key"]}} for t in self.targets],
        }
        # The sample's rolling process (examples/octofx/project.yaml) with this run's window; min_healthy keeps
        # the rest in service, as `serial` does for Ansible. No config substitution: the playbook does none.
        project = {
            "project": PROJECT, "lifecycle": "Default", "packages": [PACKAGE],
            "process": [{
                "name": "Deploy web app", "roles": ["web"],
                "rolling": {"window": self.window, "min_healthy": self.count - self.window},
                "steps": [
                    {"name": "Remove from load balancer", "kind": "load-balancer", "balancer": "web-lb",
                     "action": "remove", "drain_timeout": 30},
                    {"name": "Install OctoFX.Web", "kind": "package", "package": PACKAGE, "root": APP_ROOT,
                     "keep": 3},
                    {"name": "Smoke test", "kind": "http-check",
                     "url": "http://#{Machine.Hostname}:#{App.Port}/health",
                     "expect": {"status": 200, "contains": "#{Release.Number}"}, "within": 30},
                    {"name": "Add to load balancer", "kind": "load-balancer", "balancer": "web-lb", "action": "add"},
                ]}],
            "variables": [{"name": "App.Port", "value": "8080"}],
        }
        (self.root / "infrastructure.yaml").write_text(yaml.safe_dump(infrastructure, sort_keys=False))
        (self.root / "project.yaml").write_text(yaml.safe_dump(project, sort_keys=False))

    def _write_inventory(self) -> None:
        key = self.status["key_file"]
        known = self.status["known_hosts"]
        hosts = {t["name"]: {"ansible_host": t["address"], "ansible_port": t["ssh_port"],
                             "ansible_user": self.status["user"], "ansible_ssh_private_key_file": key,
                             "ansible_ssh_common_args": f"-o UserKnownHostsFile={known} -o StrictHostKeyChecking=yes"}
                 for t in self.targets}
        inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                     "ansible_python_interpreter": str(ANSIBLE_VENV / "bin/python")}},
                             "children": {"web": {"hosts": hosts}}}}
        self.inventory = self.root / "inventory.yml"
        self.inventory.write_text(yaml.safe_dump(inventory, sort_keys=False))

    def _ssh_base(self, target: dict[str, Any]) -> list[str]:
        return ["ssh", "-i", self.status["key_file"], "-o", f"UserKnownHostsFile={self.status['known_hosts']}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p", str(target["ssh_port"]),
                "-o", f"ControlPath={self.root}/cm-{target['name']}", f"{self.status['user']}@{target['address']}"]

    def _open_masters(self) -> None:
        """One multiplexed OpenSSH connection per target for the floor (opened before any clock starts)."""
        for t in self.targets:
            self.masters.append(subprocess.Popen([*self._ssh_base(t)[:-1], "-M", "-N", self._ssh_base(t)[-1]],
                                                 stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + 30
        for t in self.targets:
            while not Path(f"{self.root}/cm-{t['name']}").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no OpenSSH master connection to {t['name']}")
                time.sleep(0.05)

    # -- helpers --------------------------------------------------------------------------------------------

    def _ferry(self, *args: str, capture: bool = True) -> str:
        result = subprocess.run([self.ferry_bin, *args], env=self.env, capture_output=capture, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"ferry {' '.join(args)} failed: {(result.stderr or result.stdout)[-2000:]}")
        return result.stdout

    def next_package(self) -> tuple[str, Path]:
        self.version_no += 1
        version = f"1.0.{self.version_no}"
        subprocess.run([sys.executable, str(BUILD_PACKAGE), version, str(self.packages)], check=True,
                       stdout=subprocess.DEVNULL)
        return version, self.packages / f"{PACKAGE}.{version}.tar.gz"

    def app_versions(self) -> dict[str, str]:
        """What each app answers on /health, asked directly (not through the balancer)."""
        def ask(t: dict[str, Any]) -> tuple[str, str]:
            try:
                with urllib.request.urlopen(f"{t['app_url']}health", timeout=5) as response:
                    return t["name"], response.read().decode().split()[-1]
            except OSError as exc:
                return t["name"], f"unreachable ({exc})"
        with ThreadPoolExecutor(8) as pool:
            return dict(pool.map(ask, self.targets))

    # -- the three ways of doing the job --------------------------------------------------------------------

    def run_ferry(self, version: str, package: Path, *, direct: bool = False) -> Run:
        """Through the warm ``ferry serve`` with a scoped key (as CI does), or ``direct``: ``--local``."""
        tool = "ferry-direct" if direct else "ferry"
        out = self.logs / f"{tool}-{version}.log"
        argv = [self.ferry_bin, "deploy", PROJECT, version, "--to", ENVIRONMENT, "--wait"]
        start = time.perf_counter()
        with open(out, "w") as sink:
            code = subprocess.run([*argv, "--local"] if direct else argv, env=self.env if direct else self.remote_env,
                                  stdout=sink, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - start
        if code != 0:
            raise Refused(f"ferry deploy {version} failed (exit {code}); see {out}")
        listed = json.loads(self._ferry("deployment", "list", PROJECT, "--json"))
        rows = listed if isinstance(listed, list) else listed.get("items") or listed.get("deployments", [])
        deployment = max(rows, key=lambda d: d["id"])
        shown = json.loads(self._ferry("deployment", "show", str(deployment["id"]), "--json"))
        started, finished = (datetime.fromisoformat(shown[k].replace("Z", "+00:00")) for k in ("started_at",
                                                                                               "finished_at"))
        # what its add step spent waiting for HAProxy's own fresh health checks before sending traffic
        waits = [float(m) for m in re.findall(r"UP and in rotation on \d+ node\(s\) after ([\d.]+)s", out.read_text())]
        return Run(tool, version, seconds, {"deployment": shown, "log": str(out), "add_waits": waits,
                                               "flow_run": (finished - started).total_seconds()})

    def run_ansible(self, version: str, package: Path, *, mitogen: bool = False) -> Run:
        tool = "ansible-mitogen" if mitogen else "ansible"
        out = self.logs / f"{tool}-{version}.log"
        env = {**os.environ, "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
               "ANSIBLE_LOCAL_TEMP": str(self.root / "ansible-tmp"), "ANSIBLE_FORCE_COLOR": "0"}
        if mitogen:  # the documented way: Mitogen's strategy plugins, strategy mitogen_linear
            env.update(ANSIBLE_STRATEGY_PLUGINS=str(self.mitogen_strategy), ANSIBLE_STRATEGY="mitogen_linear")
        extra = {"version": version, "package_file": str(package), "app_state": APP_STATE, "app_port": 8080,
                 "backend": BACKEND, "haproxy_socket": str(self.recorder.path),  # type: ignore[union-attr]
                 "window": self.window}
        argv = [str(self.playbook_bin), "-i", str(self.inventory), str(ANSIBLE_DIR / "rolling.yml"),
                "-e", json.dumps(extra)]
        if self.count > 8:
            argv += ["--forks", str(max(8, self.window))]
        start = time.perf_counter()
        with open(out, "w") as sink:
            code = subprocess.run(argv, env=env, stdout=sink, stderr=subprocess.STDOUT).returncode
        seconds = time.perf_counter() - start
        if code != 0:
            raise Refused(f"ansible-playbook{' (mitogen)' if mitogen else ''} for {version} failed (exit {code}); "
                          f"see {out}")
        return Run(tool, version, seconds, {"output": out.read_text(), "log": str(out)})

    def run_floor(self, version: str, package: Path, *, fresh: bool = False) -> Run:
        """The same work with no tool: per batch, each target in a thread; floor = Σ batches max(target).
        ``fresh``: put a server back as ferry does — DRAIN with its health forced down until HAProxy's own
        checks pass again (``rise`` fresh checks), then READY — instead of accepting the UP HAProxy remembers
        from before MAINT (what Ansible's haproxy module's wait does)."""
        data = package.read_bytes()
        q = shlex.quote
        release = f"{APP_STATE}/{version}"
        remote = (f"set -e; export FERRY_APP_STATE={q(APP_STATE)} FERRY_RELEASE_DIR={q(release)}; "
                  f"mkdir -p {q(APP_STATE)}/.packages {q(release)}; "
                  f"cat > {q(APP_STATE)}/.packages/{q(package.name)}; "
                  f"tar -xzf {q(APP_STATE)}/.packages/{q(package.name)} -C {q(release)} --no-same-owner; "
                  f"cd {q(release)}; ./Deploy.sh; "
                  f"ln -s {q(release)} {q(APP_STATE)}/.current.tmp && mv -T {q(APP_STATE)}/.current.tmp "
                  f"{q(APP_STATE)}/current; ./PostDeploy.sh")

        def one(t: dict[str, Any]) -> dict[str, float]:
            name, sock = t["name"], self.haproxy_socket
            phases: dict[str, float] = {}
            t0 = time.perf_counter()
            haproxy_command(sock, f"set server {BACKEND}/{name} state drain")
            while int(server_stats(sock)[name]["scur"] or 0):
                time.sleep(0.01)
            haproxy_command(sock, f"set server {BACKEND}/{name} state maint")
            t1 = time.perf_counter()
            phases["out of the balancer"] = t1 - t0
            done = subprocess.run([*self._ssh_base(t), remote], input=data, capture_output=True)
            if done.returncode != 0:
                raise Refused(f"floor: {name}: {done.stderr.decode()[-500:]}")
            t2 = time.perf_counter()
            phases["install + scripts"] = t2 - t1
            _poll_health(f"{t['app_url']}health", version)
            t3 = time.perf_counter()
            phases["smoke test"] = t3 - t2
            if fresh:
                haproxy_command(sock, f"set server {BACKEND}/{name} state drain")
                haproxy_command(sock, f"set server {BACKEND}/{name} health down")
                while server_stats(sock)[name]["status"] != "DRAIN":
                    time.sleep(0.01)
            haproxy_command(sock, f"set server {BACKEND}/{name} state ready")
            while not server_stats(sock)[name]["status"].startswith("UP"):
                time.sleep(0.01)
            phases["back in (UP)"] = time.perf_counter() - t3
            phases["total"] = time.perf_counter() - t0
            return phases

        per_target: dict[str, dict[str, float]] = {}
        floor = 0.0
        start = time.perf_counter()
        with ThreadPoolExecutor(self.window) as pool:
            for b in range(0, self.count, self.window):
                batch = self.targets[b:b + self.window]
                results = list(pool.map(one, batch))
                per_target.update({t["name"]: r for t, r in zip(batch, results, strict=True)})
                floor += max(r["total"] for r in results)
        wall = time.perf_counter() - start
        return Run("floor-fresh" if fresh else "floor", version, floor, {"wall": wall, "per_target": per_target})

    # -- checking a run -------------------------------------------------------------------------------------

    def check(self, run: Run, commands: list[tuple[float, str]], seen: dict[str, set[str]]) -> None:
        """Refuse the run unless every server was drained, taken out and put back, passed the smoke test, and
        ends UP on the new version."""
        problems: list[str] = []
        names = [t["name"] for t in self.targets]
        if not run.tool.startswith("floor"):
            for name in names:
                mine = [c for _, c in commands if re.search(rf"\b{BACKEND}/{re.escape(name)}(\s|;|$)", c)]
                if not _drained_out_and_back(mine, f"{BACKEND}/{name}"):
                    problems.append(f"{name}: HAProxy did not get drain → maint → ready from it ({mine[:8]})")
        for name in names:
            if "MAINT" not in seen.get(name, set()):
                problems.append(f"{name}: never seen in MAINT while the run went on (saw {sorted(seen.get(name, []))})")
        stats = server_stats(self.haproxy_socket)
        for name in names:
            status = stats.get(name, {}).get("status", "missing")
            if not status.startswith("UP"):
                problems.append(f"{name}: {status} in HAProxy at the end, not UP")
        for name, answered in self.app_versions().items():
            if answered != run.version:
                problems.append(f"{name}: the app answers {answered!r}, not {run.version}")
        if run.tool.startswith("ferry"):
            results = run.detail["deployment"].get("steps") or run.detail["deployment"].get("results") or []
            for step in ("Remove from load balancer", "Install OctoFX.Web", "Smoke test", "Add to load balancer"):
                ok = {r.get("target") for r in results
                      if r.get("step") == step and str(r.get("state")).lower() == "success"}
                missing = sorted(set(names) - ok)
                if missing:
                    problems.append(f"ferry's record has no successful {step!r} on {', '.join(missing)}")
        elif run.tool.startswith("ansible"):
            tasks = _ansible_ok(run.detail["output"])
            for task in ("Drain and disable in HAProxy", "Unpack the package", "Run Deploy.sh",
                         "Restart through PostDeploy.sh", "Smoke test", "Enable in HAProxy and wait until UP"):
                missing = sorted(set(names) - tasks.get(task, set()))
                if missing:
                    problems.append(f"Ansible's output shows no successful {task!r} on {', '.join(missing)}")
        if problems:
            raise Refused(f"{run.tool} {run.version}: " + "; ".join(problems[:10]))

    def timed(self, tool: str) -> Run:
        version, package = self.next_package()
        do: Callable[[str, Path], Run] = {"ferry": self.run_ferry,
                                          "ferry-direct": lambda v, p: self.run_ferry(v, p, direct=True),
                                          "ansible": self.run_ansible,
                                          "ansible-mitogen": lambda v, p: self.run_ansible(v, p, mitogen=True),
                                          "floor": self.run_floor,
                                          "floor-fresh": lambda v, p: self.run_floor(v, p, fresh=True)}[tool]
        prepare = 0.0
        if tool.startswith("ferry"):  # push and release create: timed and reported beside the deployment, not in it
            started = time.perf_counter()
            self._ferry("package", "push", str(package))
            self._ferry("release", "create", PROJECT, "--version", version, "--package", f"{PACKAGE}:{version}")
            prepare = time.perf_counter() - started
        self.recorder.take()  # type: ignore[union-attr]
        cooled = cool_down(self.cool_to, self.cool_max)
        load_before, cpu_before, own_before = load_average(), machine_cpu_seconds(), children_cpu_seconds()
        with StateMonitor(self.haproxy_socket) as monitor:
            run = do(version, package)
        run.detail.update(load=max(load_before, load_average()), load_before=load_before, cooled=cooled,
                          cpu=machine_cpu_seconds() - cpu_before,
                          own_cpu=children_cpu_seconds() - own_before, push_release=prepare)
        self.check(run, self.recorder.take(), monitor.seen)  # type: ignore[union-attr]
        log(f"{tool:15} {version:8} {run.seconds:7.2f} s  load {load_before:.2f} at start, "
            f"{run.detail['load']:.2f} max  "
            f"machine CPU {run.detail['cpu']:.1f} s  (checked: all drained, out, back UP, on {version})")
        return run


def load_average() -> float:
    """The 1-minute load average now."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def cool_down(below: float | None, at_most: float) -> float:
    """With ``--cool-to``: wait (at most ``at_most`` s) until the 1-minute load average is below ``below``
    before a timed run, so every tool starts on an equally quiet machine — on 2 cores the previous run
    (Ansible burns ~2 cores for its whole run) otherwise sets the next one's load. Returns the seconds waited."""
    if below is None:
        return 0.0
    started = time.monotonic()
    while load_average() >= below and time.monotonic() - started < at_most:
        time.sleep(1)
    return time.monotonic() - started


def machine_cpu_seconds() -> float:
    """CPU-seconds the whole machine has spent busy since boot (every process, every core: user, nice,
    system, irq, softirq, steal from /proc/stat), so a run's cost includes every process it caused."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(fields[i]) for i in (0, 1, 2, 5, 6, 7) if i < len(fields))
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU-seconds of this process's finished children (the tool's command and everything it waited for):
    the tool's own cost on the controller, which the machine-wide figure hides on a shared machine."""
    import resource

    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _drained_out_and_back(commands: list[str], server: str) -> bool:
    """``commands`` (those naming ``server``) set it to drain, then took it out, then put it back, in order —
    in the runtime API's words (ferry) or the ``disable``/``enable server`` ones (community.general.haproxy)."""
    steps = [(f"{server} state drain",), (f"{server} state maint", f"disable server {server}"),
             (f"{server} state ready", f"enable server {server}")]
    at = 0
    for command in commands:
        if at < len(steps) and any(word in command for word in steps[at]):
            at += 1
    return at == len(steps)


def _ansible_ok(output: str) -> dict[str, set[str]]:
    """Task name → hosts it reported ok/changed for, from the default callback's output."""
    tasks: dict[str, set[str]] = {}
    current = None
    for line in output.splitlines():
        if m := re.match(r"^TASK \[(.+?)\]", line):
            current = m.group(1)
        elif current and (m := re.match(r"^(ok|changed): \[([^\]\s]+)", line)):
            tasks.setdefault(current, set()).add(m.group(2))
    if re.search(r"failed=[1-9]|unreachable=[1-9]", output):
        tasks.clear()
    return tasks


def _poll_health(url: str, version: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200 and version in response.read().decode():
                return
        if time.monotonic() > deadline:
            raise Refused(f"floor: {url} never answered {version}")
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------------ report

TOOLS = ("floor", "floor-fresh", "ferry", "ferry-direct", "ansible", "ansible-mitogen")
ORDER = ("ferry", "ansible", "ferry-direct", "ansible-mitogen", "floor", "floor-fresh")
"""One round's order; every other round runs it reversed (ABBA), so no tool always goes first."""


def summarize(runs: list[Run], targets: int, window: int, pairs: int) -> dict[str, Any]:
    by = {tool: [r.seconds for r in runs if r.tool == tool] for tool in TOOLS}
    med = {tool: statistics.median(v) for tool, v in by.items()}
    ferry = [r for r in runs if r.tool == "ferry"]

    def paired(other: str, mine: str = "ferry") -> list[float]:  # the same round's runs
        return [f.seconds / o.seconds for f, o in zip([r for r in runs if r.tool == mine],
                                                      [r for r in runs if r.tool == other], strict=True)]

    ratios, to_mitogen, to_fresh = paired("ansible"), paired("ansible-mitogen"), paired("floor-fresh")
    direct = {other: paired(other, "ferry-direct") for other in ("ansible", "ansible-mitogen", "floor-fresh")}
    return {
        "schema": "ferry-bench/v2", "targets": targets, "window": window, "pairs": pairs, "runs": by, "median": med,
        "per_target": {tool: med[tool] / targets for tool in TOOLS},
        "ratio_ferry_ansible": statistics.median(ratios), "paired_ratios": ratios,
        "ratio_ferry_mitogen": statistics.median(to_mitogen), "paired_mitogen_ratios": to_mitogen,
        "ratio_ferry_fresh_floor": statistics.median(to_fresh), "paired_fresh_ratios": to_fresh,
        "direct_paired_ratios": direct,
        "load": {tool: [round(r.detail["load"], 2) for r in runs if r.tool == tool] for tool in TOOLS},
        "load_at_start": {tool: [round(r.detail["load_before"], 2) for r in runs if r.tool == tool] for tool in TOOLS},
        "cpu_seconds": {tool: statistics.median(r.detail["cpu"] for r in runs if r.tool == tool) for tool in TOOLS},
        "own_cpu_seconds": {tool: statistics.median(r.detail["own_cpu"] for r in runs if r.tool == tool)
                            for tool in TOOLS},
        "push_release_median": statistics.median(r.detail["push_release"] for r in ferry),
        "overhead": {tool: (med[tool] - med["floor"]) / med["floor"] for tool in ("ferry", "ferry-direct", "ansible",
                                                                                 "ansible-mitogen")},
        "floor_wall_median": statistics.median(r.detail["wall"] for r in runs if r.tool == "floor"),
        "ferry_flow_run_median": statistics.median(r.detail["flow_run"] for r in runs if r.tool == "ferry"),
        "ferry_add_wait_median": statistics.median(w for r in runs if r.tool == "ferry" for w in r.detail["add_waits"]),
        "floor_phases": _phase_medians([r for r in runs if r.tool == "floor"]),
        "floor_fresh_phases": _phase_medians([r for r in runs if r.tool == "floor-fresh"]),
    }


def _phase_medians(floors: list[Run]) -> dict[str, float]:
    phases: dict[str, list[float]] = {}
    for run in floors:
        for per in run.detail["per_target"].values():
            for name, seconds in per.items():
                phases.setdefault(name, []).append(seconds)
    return {name: statistics.median(v) for name, v in phases.items()}


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def print_table(s: dict[str, Any]) -> None:
    med, runs = s["median"], s["runs"]
    batches = -(-s["targets"] // s["window"])
    print(f"\nrolling deployment of {PACKAGE}: {s['targets']} targets behind HAProxy, window {s['window']} "
          f"({batches} batches), {s['pairs']} round(s) in ABBA order; seconds; load = 1-min load average "
          f"(2 cores, a shared machine)")
    print(f"  {'':34}{'median':>9}   {'runs':<44}{'above the floor':>18}")
    rows = [("floor, remembered UP", "floor"), ("floor, fresh checks (as ferry)", "floor-fresh"),
            ("ferry deploy --wait (ferry serve)", "ferry"), ("ferry deploy --wait --local", "ferry-direct"),
            ("ansible-playbook", "ansible"),
            ("ansible-playbook + mitogen", "ansible-mitogen")]
    for label, tool in rows:
        spread = " ".join(f"{x:.2f}" for x in runs[tool])
        above = "" if tool.startswith("floor") else \
            f"+{med[tool] - med['floor']:6.2f} s ({100 * s['overhead'][tool]:5.1f}%)"
        print(f"  {label:34}{med[tool]:8.2f} s   {spread:<44}{above:>18}  CPU {s['cpu_seconds'][tool]:5.1f} s "
              f"(own {s['own_cpu_seconds'][tool]:5.1f})  "
              f"load {min(s['load_at_start'][tool]):.1f}–{max(s['load_at_start'][tool]):.1f} at start, "
              f"≤ {max(s['load'][tool]):.1f}")
    print(f"  {'ferry / Ansible (paired)':34}{s['ratio_ferry_ansible']:8.2f}     "
          f"(rounds {_spread(s['paired_ratios'])}; target ≤ {TARGET_RATIO:.2f} at load < 1)")
    print(f"  {'ferry / Ansible + mitogen (paired)':34}{s['ratio_ferry_mitogen']:8.2f}     "
          f"(rounds {_spread(s['paired_mitogen_ratios'])}; target ≤ 0.45 at load < 1)")
    print(f"  {'ferry / fresh-check floor (paired)':34}{s['ratio_ferry_fresh_floor']:8.2f}     "
          f"(rounds {_spread(s['paired_fresh_ratios'])}; target ≤ 1.5)")
    for other, label in (("ansible", "Ansible"), ("ansible-mitogen", "Ansible + mitogen"),
                         ("floor-fresh", "fresh floor")):
        values = s["direct_paired_ratios"][other]
        print(f"  {'--local / ' + label + ' (paired)':34}{statistics.median(values):8.2f}     "
              f"(rounds {_spread(values)})")
    print(f"  package push + release create before each ferry deployment (not in its time above): median "
          f"{s['push_release_median']:.2f} s; ferry with them: {med['ferry'] + s['push_release_median']:.2f} s")
    flow = s["ferry_flow_run_median"]
    print(f"  of ferry's time, its flow run (started → finished in its record): {flow:.2f} s; the rest is the "
          f"command starting (Python, Prefect, checks) and exiting")
    print(f"  ferry's add step (HAProxy's own fresh health checks, started when the smoke test passed, then "
          f"READY → UP): median {s['ferry_add_wait_median']:.2f} s per target")
    for label, key in (("floor", "floor_phases"), ("fresh floor", "floor_fresh_phases")):
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in s[key].items())
        print(f"  {label} per target (median): {phases}")


def print_scaling(summaries: list[dict[str, Any]]) -> None:
    """Seconds per target at each size: flat means the cost grows linearly with the fleet."""
    print("\ncost per target (median run ÷ targets, seconds; same window)")
    print(f"  {'targets':>8}" + "".join(f"{t:>17}" for t in TOOLS) + "   load")
    for s in summaries:
        loads = [x for v in s["load"].values() for x in v]
        print(f"  {s['targets']:>8}" + "".join(f"{s['per_target'][t]:>17.3f}" for t in TOOLS)
              + f"   {min(loads):.1f}–{max(loads):.1f}")


def bench_size(targets: int, window: int, pairs: int, deadline: float, keep: bool,
               cool_to: float | None = None) -> dict[str, Any] | None:
    """One lab of ``targets``: warm-up, then up to ``pairs`` ABBA rounds (at least one) within ``deadline``."""
    root = Path(tempfile.mkdtemp(prefix="ferry-bench-rolling-"))
    bench = Bench(root, targets, window, verbose=True)
    bench.cool_to = cool_to
    runs: list[Run] = []
    done = 0
    try:
        bench.start()
        log(f"{targets} targets — warm-up (untimed): ferry (first install everywhere), Ansible, Ansible + mitogen")
        bench.cool_to = None  # the warm-up is not measured: no waiting for a quiet machine
        for tool in ("ferry", "ferry-direct", "ansible", "ansible-mitogen"):
            bench.timed(tool)
        bench.cool_to = cool_to
        for pair in range(pairs):
            if done and time.monotonic() > deadline:
                log(f"budget spent: {done} of {pairs} round(s) at {targets} targets")
                break
            log(f"{targets} targets — round {pair + 1}/{pairs}")
            for tool in ORDER if pair % 2 == 0 else tuple(reversed(ORDER)):
                runs.append(bench.timed(tool))
            done += 1
    finally:
        if keep:
            log(f"kept: {root} (lab: FERRY_HOME={bench.home} .venv/bin/ferry lab down)")
            if bench.server is not None:
                bench.server.stop()
            if getattr(bench, "postgres", None) is not None:
                bench.postgres.stop()
        else:
            bench.stop()
            shutil.rmtree(root, ignore_errors=True)
    return summarize(runs, targets, window, done) if done else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="8", help="a size or a list of sizes: 8,32,128")
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--pairs", default="5", help="ABBA rounds per size, or one per size: 5,1,1")
    parser.add_argument("--quick", action="store_true", help="a sanity check: 8 targets, 1 round")
    parser.add_argument("--budget-minutes", type=float, default=60,
                        help="start no new round (or size) after this; each size gets at least one round")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON too")
    parser.add_argument("--keep", action="store_true", help="keep the lab and logs (prints where)")
    parser.add_argument("--cool-to", type=float, metavar="LOAD",
                        help="before each timed run, wait (up to 180 s) until the 1-minute load average is below "
                             "LOAD (the issue's targets hold at a load below 1)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still takes its lab down
    if os.geteuid() != 0:
        sys.exit("the benchmark needs root (it starts the lab: sshd and HAProxy on loopback addresses)")
    sizes = [8] if args.quick else [int(x) for x in args.targets.split(",")]
    rounds = [1] if args.quick else [int(x) for x in args.pairs.split(",")]
    rounds = rounds * len(sizes) if len(rounds) == 1 else rounds
    if any(n < args.window or n > 250 for n in sizes) or len(rounds) != len(sizes) or min(rounds) < 1:
        sys.exit("need --window ≤ every size ≤ 250, and --pairs ≥ 1 (one value, or one per size)")
    deadline = time.monotonic() + 60 * args.budget_minutes
    summaries: list[dict[str, Any]] = []
    try:
        for targets, pairs in zip(sizes, rounds, strict=True):
            if summaries and time.monotonic() > deadline:
                log(f"budget spent: sizes {sizes[len(summaries):]} not run")
                break
            summary = bench_size(targets, args.window, pairs, deadline, args.keep, args.cool_to)
            if summary:
                summaries.append(summary)
                print_table(summary)
    except Refused as exc:
        sys.exit(f"REFUSED — not a valid measurement, nothing reported for that size: {exc}")
    if len(summaries) > 1:
        print_scaling(summaries)
    if args.json:
        print(json.dumps(summaries, indent=1))


if __name__ == "__main__":
    main()
