"""The local lab: N SSH targets on loopback addresses behind one HAProxy, for the demo, tests and benchmarks.

Each target is its own ``sshd`` on its own address (127.0.0.2, .3, …) with its own host key, started inside its
own mount namespace where ``/srv`` and the lab user's home are that target's private directories — so the
sample's ``App.Root`` of ``/srv/octofx`` and the target journal in ``~/.ferry`` are different on every target,
as on real servers, and the app each target runs (bound to the target's address, port 8080) sees only its own
releases. One HAProxy listens on
``<network>.1:8000`` and balances the targets' apps with HTTP health checks; its runtime API listens on
``<network>.1:9999`` and on a unix socket.

Everything is recorded in ``FERRY_HOME/lab/state.json``. ``up`` is idempotent (restarts only what died),
``down`` kills every process it started — including whatever deployments started inside the targets'
namespaces — and removes the lab directory.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from flows.lab.configs import SFTP_SERVER, haproxy_config, sshd_config, supervisord_config
from flows.orchestration import local_prefect
from snapshots.errors import LabError
from snapshots.settings import Settings
from steps.kinds.haproxy import HAProxy
from steps.transports.ssh import KnownHosts, fingerprint, parse_host_key

LAB_USER = "ferry"
LAB_USER_HOME = Path("/var/lib/ferry-lab")
RUN_ROOT = Path("/run/ferry-lab")
BACKEND = "octofx"
AUTHORIZED_KEYS = "/srv/.ferry-lab/authorized_keys"  # as seen inside a target's namespace
SAMPLE_TARGETS = [
    ("dev-01", "Development"), ("test-01", "Test"), ("test-02", "Test"),
    ("prod-01", "Production"), ("prod-02", "Production"), ("prod-03", "Production"), ("prod-04", "Production"),
]
# What the lab runs, and the Debian package that ships it (for a one-line "install this" error).
TOOLS = {
    "sshd": ("/usr/sbin/sshd", "openssh-server"),
    "sftp-server": (SFTP_SERVER, "openssh-server"),
    "haproxy": ("haproxy", "haproxy"),
    "unshare": ("unshare", "util-linux"),
    "mount": ("mount", "mount"),
    "python3": ("/usr/bin/python3", "python3"),  # the targets' scripts (ferry_var, the sample app) run it
    "useradd": ("useradd", "passwd"),
    "usermod": ("usermod", "passwd"),
    "supervisord": ("/usr/bin/supervisord", "supervisor"),  # each target's service manager (systemd-service)
    "nsenter": ("nsenter", "util-linux"),
    "runuser": ("runuser", "util-linux"),
}



@dataclass
class LabTarget:
    name: str
    environment: str
    address: str
    ssh_port: int
    app_port: int
    host_key: str = ""
    fingerprint: str = ""
    pid: int | None = None
    mount_ns: str | None = None

    @property
    def app_url(self) -> str:
        return f"http://{self.address}:{self.app_port}/"


@dataclass
class LabState:
    network: str
    ssh_port: int
    app_port: int
    balancer_port: int
    api_port: int
    targets: list[LabTarget] = field(default_factory=list)
    haproxy_pid: int | None = None
    started_at: float = field(default_factory=time.time)

    @property
    def balancer(self) -> str:
        return f"{self.network}.1:{self.balancer_port}"

    @property
    def api(self) -> str:
        return f"{self.network}.1:{self.api_port}"

    def settings(self) -> tuple[Any, ...]:
        return (self.network, self.ssh_port, self.app_port, self.balancer_port, self.api_port, len(self.targets))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        targets = [LabTarget(**t) for t in data.pop("targets", [])]
        return cls(**data, targets=targets)


def target_names(count: int) -> list[tuple[str, str]]:
    """The sample's seven target names first (so its YAML applies unchanged), then ``web-08`` onwards."""
    names = SAMPLE_TARGETS[:count]
    names += [(f"web-{i:02d}", "Production") for i in range(len(names) + 1, count + 1)]
    return names


def _alive(pid: int | None, marker: str | None = None) -> bool:
    """Is ``pid`` a live (not zombie) process — and, if ``marker`` is given, one whose command line names it
    (so a recycled pid is never mistaken for ours)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] in "ZX":
            return False
        if marker is not None:
            return marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return True
    except (OSError, ValueError, IndexError):
        return False


def _terminate(pids: list[int], grace: float = 3.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _port_open(address: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def _port_free(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
            return True
        except OSError:
            return False


def _write_private(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _new_ed25519(path: Path, comment: str) -> str:
    """Write an OpenSSH ed25519 key pair (``path`` and ``path.pub``); return the public ``"type base64"``."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    _write_private(path, private, 0o600)
    _write_private(path.with_name(path.name + ".pub"), f"{public} {comment}\n".encode(), 0o644)
    return public


def _fingerprint(public: str) -> str:
    return fingerprint(parse_host_key(public))


class Lab:
    """The lab of one ``FERRY_HOME`` (``FERRY_HOME/lab``)."""

    def __init__(self, home: Path | None = None) -> None:
        if home is None:
            home = Settings.from_env().home
        self.home = Path(home).expanduser().absolute()
        self.dir = self.home / "lab"
        self.state_file = self.dir / "state.json"
        self.key_file = self.dir / "id_ed25519"
        self.infrastructure_file = self.dir / "infrastructure.yaml"
        self.lab_id = hashlib.sha256(str(self.dir).encode()).hexdigest()[:10]
        self.run_dir = RUN_ROOT / self.lab_id
        self.socket_path = self.run_dir / "haproxy.sock"
        self.haproxy_cfg = self.dir / "haproxy.cfg"

    # -- paths ----------------------------------------------------------------------------------------------

    def target_dir(self, name: str) -> Path:
        return self.dir / "targets" / name

    def app_root(self, name: str) -> Path:
        """The directory that is ``/srv`` inside the target (so ``/srv/octofx`` there is ``…/srv/octofx``)."""
        return self.target_dir(name) / "srv"

    def user_home(self, name: str) -> Path:
        """The directory that is the lab user's home inside the target: each target keeps its own
        ``~/.ferry/journal.json``, as separate servers would."""
        return self.target_dir(name) / "home"

    # -- state ----------------------------------------------------------------------------------------------

    def load(self) -> LabState | None:
        try:
            return LabState.from_json(json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise LabError(f"{self.state_file} is unreadable ({exc}); remove it with `ferry lab down`") from exc

    def _save(self, state: LabState) -> None:
        _write_private(self.state_file, json.dumps(asdict(state), indent=2).encode(), 0o600)

    # -- preflight ------------------------------------------------------------------------------------------

    @staticmethod
    def preflight() -> None:
        """Fail with one line when the lab cannot run here: not root, or a Debian package missing."""
        if os.geteuid() != 0:
            raise LabError("the lab needs root: it creates the 'ferry' user and runs sshd and HAProxy on "
                           "127.0.0.x (run it with sudo, or as root in a VM or container)")
        missing: dict[str, list[str]] = {}
        for tool, (path, package) in TOOLS.items():
            found = os.access(path, os.X_OK) if path.startswith("/") else shutil.which(path)
            if not found:
                missing.setdefault(package, []).append(tool)
        if missing:
            packages = " ".join(sorted(missing))
            tools = ", ".join(t for ts in missing.values() for t in ts)
            raise LabError(f"missing Debian packages: {packages} (no {tools}); install them with "
                           f"`apt-get install {packages}` or `flows/lab/install-debian-packages`")

    @staticmethod
    def _ensure_user() -> None:
        """The login every target shares: a system user with a shell and an unlocked (but unusable) password,
        since sshd without PAM refuses locked accounts even for key logins."""
        try:
            entry = pwd.getpwnam(LAB_USER)
        except KeyError:
            _run(["useradd", "--system", "--user-group", "--create-home", "--home-dir", str(LAB_USER_HOME),
                  "--shell", "/bin/bash", "--comment", "ferry lab deploy user", LAB_USER])
            entry = pwd.getpwnam(LAB_USER)
        if Path(entry.pw_shell).name in ("nologin", "false"):
            raise LabError(f"user {LAB_USER} exists with shell {entry.pw_shell}; the lab needs a login shell "
                           f"(usermod -s /bin/bash {LAB_USER})")
        with contextlib.suppress(OSError):
            for line in Path("/etc/shadow").read_text().splitlines():
                fields = line.split(":")
                if fields[0] == LAB_USER and fields[1].startswith("!"):
                    _run(["usermod", "-p", "*", LAB_USER])

    # -- up -------------------------------------------------------------------------------------------------

    def up(self, targets: int = 7, *, network: str = "127.0.0", ssh_port: int = 22, app_port: int = 8080,
           balancer_port: int = 8000, api_port: int = 9999, supervisors: int = 1) -> dict[str, Any]:
        """Start the lab, or make sure the running one is complete. Returns ``status()`` plus what changed.

        The first ``supervisors`` targets (dev-01 by default) also run a supervisord, the service manager the
        systemd-service step's end-to-end test drives (each costs ~25 MB and a second of CPU to start)."""
        self.preflight()
        octets = network.split(".")
        if len(octets) != 3 or octets[0] != "127" or not all(o.isdigit() and 0 <= int(o) <= 255 for o in octets):
            raise LabError(f"network must be three octets of a loopback address, like 127.0.0 (got {network!r})")
        if not 1 <= targets <= 250:
            raise LabError(f"targets must be between 1 and 250 (got {targets})")
        wanted = LabState(network, ssh_port, app_port, balancer_port, api_port, targets=[
            LabTarget(name, env, f"{network}.{i + 2}", ssh_port, app_port)
            for i, (name, env) in enumerate(target_names(targets))])
        state = self.load()
        if state is not None and state.settings() != wanted.settings():
            raise LabError(f"a lab with other settings is already up in {self.dir} ({len(state.targets)} targets "
                           f"on {state.network}.x); run `ferry lab down` first")
        changed: list[str] = []
        fresh = state is None
        state = state or wanted
        self._ensure_user()
        try:
            self._prepare(state, fresh)
            for target in state.targets:
                if not _alive(target.pid, str(self.target_dir(target.name))):
                    self._start_sshd(target)
                    changed.append(target.name)
            for target in state.targets[:max(0, supervisors)]:
                if target.pid and self._start_supervisord(target) and target.name not in changed:
                    changed.append(target.name)  # part of the target: reported as the target
            if not _alive(state.haproxy_pid, str(self.haproxy_cfg)):
                state.haproxy_pid = self._start_haproxy(state)
                self._settle(state)
                changed.append("haproxy")
        except BaseException:
            if fresh:
                with contextlib.suppress(Exception):
                    self._save(state)
                    self.down()
            raise
        self._save(state)
        if changed:
            self._publish(state)
        return {**self.status(), "changed": changed}

    def _prepare(self, state: LabState, fresh: bool) -> None:
        """Directories, keys and configs (a fresh lab also checks every address it needs is free)."""
        if fresh:
            busy = [f"{t.address}:{t.ssh_port}" for t in state.targets if not _port_free(t.address, t.ssh_port)]
            busy += [f"{t.address}:{t.app_port}" for t in state.targets if not _port_free(t.address, t.app_port)]
            busy += [a for a in (state.balancer, state.api) if not _port_free(*_split(a))]
            if busy:
                raise LabError(f"address already in use: {', '.join(busy)} (another lab? see `ferry lab status`, "
                               f"or choose another --network)")
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        if not self.key_file.exists():
            _new_ed25519(self.key_file, f"ferry-lab@{self.lab_id}")
        user = pwd.getpwnam(LAB_USER)
        group = grp.getgrgid(user.pw_gid)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.chown(self.run_dir, 0, group.gr_gid)
        os.chmod(self.run_dir, 0o750)
        authorized = self.key_file.with_name(self.key_file.name + ".pub").read_bytes()
        for target in state.targets:
            tdir = self.target_dir(target.name)
            tdir.mkdir(parents=True, exist_ok=True)
            host_key = tdir / "ssh_host_ed25519_key"
            if not host_key.exists():
                target.host_key = _new_ed25519(host_key, f"{target.name}@ferry-lab")
                target.fingerprint = _fingerprint(target.host_key)
            srv = self.app_root(target.name)
            srv.mkdir(exist_ok=True)
            os.chown(srv, user.pw_uid, user.pw_gid)
            home = self.user_home(target.name)
            home.mkdir(exist_ok=True)
            os.chown(home, user.pw_uid, user.pw_gid)
            keys_dir = srv / ".ferry-lab"
            keys_dir.mkdir(exist_ok=True)
            os.chown(keys_dir, 0, 0)
            os.chmod(keys_dir, 0o755)
            _write_private(keys_dir / "authorized_keys", authorized, 0o644)
            supervisor = srv / ".supervisor"
            for folder in (supervisor, supervisor / "conf.d", supervisor / "logs"):
                folder.mkdir(exist_ok=True)
                os.chown(folder, user.pw_uid, user.pw_gid)
            (supervisor / "supervisord.conf").write_text(supervisord_config(target.name))
            (tdir / "sshd_config").write_text(sshd_config(
                address=target.address, port=target.ssh_port, host_key=host_key, pid_file=tdir / "sshd.pid",
                authorized_keys=AUTHORIZED_KEYS,
                environment={"FERRY_LAB_TARGET": target.name, "OCTOFX_BIND": target.address,
                             "OCTOFX_PORT": str(target.app_port)}))
        self.haproxy_cfg.write_text(haproxy_config(
            frontend=state.balancer, backend=BACKEND, api=state.api, socket=self.socket_path,
            socket_group=group.gr_name, pid_file=self.dir / "haproxy.pid",
            servers=[(t.name, f"{t.address}:{t.app_port}") for t in state.targets]))

    def _start_sshd(self, target: LabTarget) -> None:
        tdir = self.target_dir(target.name)
        config, pid_file, log = tdir / "sshd_config", tdir / "sshd.pid", tdir / "sshd.log"
        privsep = Path("/run/sshd")  # sshd's privilege-separation chroot (systemd creates it on a booted host)
        privsep.mkdir(mode=0o755, exist_ok=True)
        check = subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(config)], capture_output=True, text=True)
        if check.returncode != 0:
            raise LabError(f"{target.name}: sshd refuses its config: {_first_line(check.stderr)}")
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        Path("/srv").mkdir(exist_ok=True)
        # A private mount namespace where /srv and the lab user's home are this target's own directories; sshd
        # daemonizes inside it, and every session (and every app a deployment starts) inherits it.
        script = 'mount --bind "$1" /srv && mount --bind "$4" "$5" && exec /usr/sbin/sshd -f "$2" -E "$3"'
        user_home = pwd.getpwnam(LAB_USER).pw_dir
        Path(user_home).mkdir(parents=True, exist_ok=True)
        started = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "sh",
             str(self.app_root(target.name)), str(config), str(log), str(self.user_home(target.name)), user_home],
            capture_output=True, text=True, timeout=30)
        if started.returncode != 0:
            raise LabError(f"{target.name}: cannot start sshd: {_first_line(started.stderr) or started.returncode}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().strip())
                if _port_open(target.address, target.ssh_port):
                    target.pid = pid
                    target.mount_ns = os.readlink(f"/proc/{pid}/ns/mnt")
                    return
            time.sleep(0.05)
        raise LabError(f"{target.name}: sshd did not start listening on {target.address}:{target.ssh_port} "
                       f"(see {log})")

    def _start_supervisord(self, target: LabTarget) -> bool:
        """Start the target's supervisord (as the lab user, inside the target's namespace) unless it runs;
        True when it was started."""
        pid_file = self.app_root(target.name) / ".supervisor" / "supervisord.pid"
        with contextlib.suppress(OSError, ValueError):
            if _alive(int(pid_file.read_text().strip()), "supervisord"):
                return False
        started = subprocess.run(
            ["nsenter", f"--mount=/proc/{target.pid}/ns/mnt", "--", "runuser", "-u", LAB_USER, "--",
             "/usr/bin/supervisord", "-c", "/srv/.supervisor/supervisord.conf"],
            capture_output=True, text=True, timeout=30)
        if started.returncode != 0:
            raise LabError(f"{target.name}: cannot start supervisord: "
                           f"{_first_line(started.stderr or started.stdout) or started.returncode}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if (self.app_root(target.name) / ".supervisor" / "supervisor.sock").exists():
                return True
            time.sleep(0.05)
        raise LabError(f"{target.name}: supervisord did not open its socket (see "
                       f"{self.app_root(target.name) / '.supervisor' / 'supervisord.log'})")

    def _start_haproxy(self, state: LabState) -> int:
        cfg, pid_file = self.haproxy_cfg, self.dir / "haproxy.pid"
        haproxy = shutil.which("haproxy") or "haproxy"
        check = subprocess.run([haproxy, "-c", "-q", "-f", str(cfg)], capture_output=True, text=True)
        if check.returncode != 0:
            raise LabError(f"HAProxy refuses its config: {_first_line(check.stderr or check.stdout)}")
        with contextlib.suppress(FileNotFoundError):
            pid_file.unlink()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        started = subprocess.run([haproxy, "-D", "-f", str(cfg), "-p", str(pid_file)],
                                 capture_output=True, text=True, timeout=30)
        if started.returncode != 0:
            raise LabError(f"cannot start HAProxy: {_first_line(started.stderr) or started.returncode}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text().split()[0])
                if _port_open(*_split(state.api)) and _port_open(*_split(state.balancer)):
                    return pid
            time.sleep(0.05)
        raise LabError(f"HAProxy did not start listening on {state.balancer} and {state.api}")

    def _settle(self, state: LabState, timeout: float = 5.0) -> None:
        """Wait for HAProxy's first health checks: it starts every server as UP and only marks the ones without
        an app DOWN after ``fall`` failed checks, so ``status`` and ``count_up`` would lie for a moment."""
        haproxy = HAProxy([f"tcp://{state.api}"], timeout=2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = haproxy.stats(BACKEND)
            if rows and all("/" not in r["status"] and r.get("check_status") not in ("", "INI") for r in rows):
                return
            time.sleep(0.1)

    def _publish(self, state: LabState) -> None:
        """Record the targets' host keys as trusted (the lab made them) and write infrastructure.yaml."""
        known = KnownHosts(self.home / "known_hosts")
        for target in state.targets:
            if not target.host_key:
                public = (self.target_dir(target.name) / "ssh_host_ed25519_key.pub").read_text().split()
                target.host_key = " ".join(public[:2])
                target.fingerprint = _fingerprint(target.host_key)
            known.add(target.address, target.ssh_port, parse_host_key(target.host_key))
        self._save(state)
        self.infrastructure_file.write_text(self.infrastructure_yaml(state))

    def infrastructure_yaml(self, state: LabState) -> str:
        """The sample's infrastructure with this lab's real addresses, ports, key and pinned host keys."""
        environments = list(dict.fromkeys(t.environment for t in state.targets))
        order = {"Development": 0, "Test": 1, "Production": 2}
        environments.sort(key=lambda e: order.get(e, 3))
        doc = {
            "environments": [{"name": e, **({"guided_failure": True} if e == "Production" else {})}
                             for e in environments],
            "lifecycles": [{"name": "Default", "phases": [
                {"name": {"Development": "Dev"}.get(e, e), "environments": [e],
                 **({"auto_deploy": True} if e == "Development" else {})} for e in environments]}],
            "load_balancers": [{"name": "web-lb", "kind": "haproxy", "backend": BACKEND,
                                "nodes": [f"tcp://{state.api}"]}],
            "targets": [{
                "name": t.name, "environment": t.environment, "roles": ["web"],
                "transport": {"kind": "ssh", "host": t.address, "port": t.ssh_port, "user": LAB_USER,
                              "key_file": str(self.key_file), "host_key": t.host_key}}
                for t in state.targets],
        }
        header = (f"# The ferry lab in {self.dir} — written by `ferry lab up` (host keys pinned from the lab's own\n"
                  f"# sshd keys). Balancer: http://{state.balancer}/  Runtime API: tcp://{state.api}\n")
        return header + yaml.safe_dump(doc, sort_keys=False, width=200)

    # -- down -----------------------------------------------------------------------------------------------

    def down(self) -> dict[str, Any]:
        """Stop every process the lab started (and everything running inside its targets), remove its files;
        also the FERRY_HOME's local Prefect server (its database stays: the runs remain readable)."""
        prefect = local_prefect.stop(self.home) if local_prefect.state_dir(self.home).is_dir() else None
        extra = {"prefect_server_stopped": prefect.pid} if prefect is not None else {}
        state = self.load()
        if state is None and not self.dir.exists():
            return {"up": False, "stopped": [], "home": str(self.home), **extra}
        stopped: list[str] = []
        namespaces = {t.mount_ns for t in (state.targets if state else []) if t.mount_ns}
        pids: list[int] = []
        marker = str(self.dir) + "/"
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                mine = marker in cmdline and ("sshd" in cmdline or "haproxy" in cmdline)
                if not mine and namespaces:
                    mine = os.readlink(proc / "ns" / "mnt") in namespaces
            except OSError:
                continue
            if mine:
                pids.append(int(proc.name))
        _terminate(pids)
        if state is not None:
            stopped = [t.name for t in state.targets] + ["haproxy"]
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        return {"up": False, "stopped": stopped, "killed_processes": len(pids), "home": str(self.home), **extra}

    # -- status ---------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What runs, where: balancer URL, runtime API, and per target its address, app URL, ssh port, state."""
        state = self.load()
        if state is None:
            return {"up": False, "home": str(self.home), "lab_dir": str(self.dir), "targets": []}
        haproxy_up = _alive(state.haproxy_pid, str(self.haproxy_cfg))
        lb: dict[str, dict[str, str]] = {}
        if haproxy_up:
            with contextlib.suppress(Exception):
                for row in HAProxy([f"tcp://{state.api}"], timeout=2).stats(BACKEND):
                    lb[row["svname"]] = row
        targets = []
        for t in state.targets:
            sshd_up = _alive(t.pid, str(self.target_dir(t.name)))
            targets.append({
                "name": t.name, "environment": t.environment, "address": t.address, "ssh_port": t.ssh_port,
                "app_url": t.app_url, "app_root": str(self.app_root(t.name)),
                "state": "up" if sshd_up else "down",
                "balancer_status": lb.get(t.name, {}).get("status") or ("?" if haproxy_up else "down"),
                "host_key": t.host_key, "fingerprint": t.fingerprint, "sshd_pid": t.pid,
            })
        all_up = haproxy_up and all(t["state"] == "up" for t in targets)
        return {
            "up": all_up, "home": str(self.home), "lab_dir": str(self.dir),
            "balancer_url": f"http://{state.balancer}/",
            "haproxy": {"state": "up" if haproxy_up else "down", "pid": state.haproxy_pid, "backend": BACKEND,
                        "api": f"tcp://{state.api}", "socket": f"unix://{self.socket_path}"},
            "user": LAB_USER, "key_file": str(self.key_file),
            "known_hosts": str(self.home / "known_hosts"),
            "infrastructure": str(self.infrastructure_file), "targets": targets,
        }


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {_first_line(result.stderr)}")
