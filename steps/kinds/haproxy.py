"""HAProxy runtime API client: take a server out of a backend without dropping a request, put it back once
HAProxy's own health check says it is UP — on every HAProxy node of a load balancer.

Each command opens its own connection (the API's non-interactive mode: one command, one reply, close), to
``tcp://host:port``, ``unix:///path`` or ``ssh://user@host/path`` (a socket on a balancer host, reached with
``socat`` — or python3 — over an SSH transport). Every node must agree: a drain waits until the server has no
sessions on *all* nodes, ``count_up`` reports the smallest count any node sees.

Runtime state changes are lost when HAProxy reloads unless it keeps a ``server-state-file``.
"""

from __future__ import annotations

import csv
import io
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit

from snapshots.errors import LoadBalancerError
from snapshots.model.infrastructure import LoadBalancer
from steps.transports.protocol import Transport

__all__ = ["DrainResult", "HAProxy", "LoadBalancerError", "Node"]

State = Literal["ready", "drain", "maint"]
_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")  # HAProxy's own charset for proxy and server names
_SOCAT = """\
if command -v socat >/dev/null 2>&1; then
  printf '%s\\n' "$HAPROXY_COMMAND" | socat -t "$HAPROXY_TIMEOUT" - "UNIX-CONNECT:$HAPROXY_SOCKET"
elif command -v python3 >/dev/null 2>&1; then
  python3 -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(float(os.environ["HAPROXY_TIMEOUT"]))
s.connect(os.environ["HAPROXY_SOCKET"])
s.sendall(os.environ["HAPROXY_COMMAND"].encode() + b"\\n")
while True:
    data = s.recv(65536)
    if not data:
        break
    sys.stdout.buffer.write(data)
'
else
  echo "neither socat nor python3 is installed on this host" >&2; exit 127
fi
"""



@dataclass
class Node:
    """One HAProxy runtime API endpoint."""

    url: str
    timeout: float = 5.0
    ssh: Transport | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self.scheme = parts.scheme
        if self.scheme == "tcp":
            if not parts.hostname or not parts.port:
                raise LoadBalancerError(f"{self.url}: a tcp node needs host and port (tcp://127.0.0.1:9999)")
            self.address: tuple[str, int] | str = (parts.hostname, parts.port)
        elif self.scheme == "unix":
            self.address = unquote(parts.netloc + parts.path)
        elif self.scheme == "ssh":
            self.address = unquote(parts.path)
            self.netloc = parts.netloc
        else:
            raise LoadBalancerError(f"{self.url}: nodes are tcp://host:port, unix:///path or ssh://user@host/path")

    def command(self, command: str) -> str:
        """Send one command, return HAProxy's whole reply."""
        if "\n" in command or "\r" in command:
            raise ValueError("one command per call")
        if self.scheme == "ssh":
            return self._over_ssh(command)
        family = socket.AF_INET if self.scheme == "tcp" else socket.AF_UNIX
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.address)
                sock.sendall(command.encode() + b"\n")
                chunks = []
                while data := sock.recv(65536):
                    chunks.append(data)
        except TimeoutError as exc:
            raise LoadBalancerError(f"HAProxy at {self.url} did not answer {command.split()[0]!r} within "
                                    f"{self.timeout:g}s", node=self.url) from exc
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise LoadBalancerError(f"cannot reach the HAProxy runtime API at {self.url}: {reason}",
                                    node=self.url) from exc
        return b"".join(chunks).decode("utf-8", "replace")

    def _over_ssh(self, command: str) -> str:
        if self.ssh is None:
            raise LoadBalancerError(f"{self.url}: an ssh:// node needs an SSH connection to {self.netloc}",
                                    node=self.url)
        lines: list[str] = []
        result = self.ssh.run(_SOCAT, env={"HAPROXY_COMMAND": command, "HAPROXY_SOCKET": str(self.address),
                                           "HAPROXY_TIMEOUT": f"{self.timeout:g}"},
                              timeout=self.timeout + 10, on_line=lines.append)
        if not result.ok:
            detail = "; ".join(lines[-3:]) or f"exit code {result.exit_code}"
            raise LoadBalancerError(f"cannot reach the HAProxy runtime API at {self.url}: {detail}", node=self.url)
        return "\n".join(lines) + "\n"


@dataclass
class DrainResult:
    """What a removal did: how long the drain took and how many sessions ``force`` cut."""

    server: str
    seconds: float
    forced: bool = False
    cut_sessions: int = 0
    nodes: list[str] = field(default_factory=list)


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name or ""):
        raise LoadBalancerError(f"invalid {kind} name {name!r} (HAProxy names use letters, digits, - _ . :)")
    return name


def _parse_stat(text: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise LoadBalancerError(f"unexpected reply to 'show stat': {text.strip()[:200]!r}")
    reader = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    return [{k: v for k, v in row.items() if k} for row in reader if row.get("pxname")]


def _parse_servers_state(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.strip()]
    header = next((line for line in lines if line.startswith("# ")), None)
    if header is None:
        raise LoadBalancerError(f"unexpected reply to 'show servers state': {text.strip()[:200]!r}")
    names = header[2:].split()
    rows = []
    for line in lines:
        if line.startswith("#") or line.strip().isdigit():
            continue
        values = line.split()
        rows.append(dict(zip(names, values, strict=False)))
    return rows


def _is_up(row: Mapping[str, str]) -> bool:
    """UP (including "UP 1/2", up but with a failed check) — or a server without health checks that is not
    in maintenance or drain, since nothing will ever call it UP."""
    status = row.get("status", "")
    return status.startswith("UP") or (status == "no check" and row.get("check_status", "") == "")


class HAProxy:
    """The runtime API of every HAProxy node of one load balancer."""

    def __init__(self, nodes: Sequence[str], *, timeout: float = 5.0, poll: float = 0.05,
                 ssh: Mapping[str, Transport] | Callable[[str], Transport] | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        if not nodes:
            raise LoadBalancerError("a load balancer needs at least one node")
        self.poll = poll
        self.log = log or (lambda _line: None)
        self._armed: set[tuple[str, str]] = set()
        """(backend, server) whose fresh checks ``start_checks_early`` started (shared by shallow copies)."""
        self.nodes: list[Node] = []
        for url in nodes:
            node = Node(url, timeout=timeout)
            if node.scheme == "ssh" and ssh is not None:
                node.ssh = ssh(node.netloc) if callable(ssh) else ssh.get(node.netloc)
            self.nodes.append(node)

    @classmethod
    def from_model(cls, balancer: LoadBalancer, *, poll: float = 0.05,
                   ssh: Mapping[str, Transport] | Callable[[str], Transport] | None = None,
                   log: Callable[[str], None] | None = None) -> HAProxy:
        """From a ``load_balancers`` entry of infrastructure.yaml."""
        return cls(balancer.nodes, timeout=float(balancer.timeout), poll=poll, ssh=ssh, log=log)

    # -- commands -------------------------------------------------------------------------------------------

    def command(self, command: str) -> dict[str, str]:
        """Run a command on every node; the replies by node URL."""
        return {node.url: node.command(command) for node in self.nodes}

    def _change(self, command: str, backend: str, server: str) -> None:
        """A state-changing command: HAProxy replies with nothing (or a blank line) on success."""
        for url, reply in self.command(command).items():
            if reply.strip():
                raise LoadBalancerError(f"HAProxy at {url} refused {command!r}: {reply.strip()}",
                                        backend=backend, server=server, node=url)

    def stats(self, backend: str | None = None, node: Node | None = None) -> list[dict[str, str]]:
        """``show stat`` rows (servers only) of one node (the first by default), optionally of one backend."""
        rows = _parse_stat((node or self.nodes[0]).command("show stat"))
        return [r for r in rows if r["svname"] not in ("FRONTEND", "BACKEND")
                and (backend is None or r["pxname"] == backend)]

    def servers_state(self, backend: str | None = None, node: Node | None = None) -> list[dict[str, str]]:
        """``show servers state`` rows of one node: operational and admin state, check result, address."""
        command = "show servers state" + (f" {_check_name('backend', backend)}" if backend else "")
        return _parse_servers_state((node or self.nodes[0]).command(command))

    def servers(self, backend: str) -> list[str]:
        """The backend's server names (as the first node sees them)."""
        _check_name("backend", backend)
        rows = _parse_stat(self.nodes[0].command("show stat"))
        if not any(r["pxname"] == backend for r in rows):
            backends = sorted({r["pxname"] for r in rows if r["svname"] == "BACKEND"})
            raise LoadBalancerError(f"backend {backend!r} not found on {self.nodes[0].url}; its backends: "
                                    f"{', '.join(backends) or 'none'}", backend=backend, node=self.nodes[0].url)
        return [r["svname"] for r in rows if r["pxname"] == backend and r["svname"] not in ("FRONTEND", "BACKEND")]

    def server_rows(self, backend: str, server: str) -> dict[str, dict[str, str]]:
        """The ``show stat`` row of one server on every node; a clear error naming the backend's servers if
        a node does not have it."""
        _check_name("backend", backend)
        _check_name("server", server)
        found: dict[str, dict[str, str]] = {}
        for node in self.nodes:
            rows = self.stats(backend, node)
            match = next((r for r in rows if r["svname"] == server), None)
            if match is None:
                if not rows:
                    all_rows = _parse_stat(node.command("show stat"))
                    backends = sorted({r["pxname"] for r in all_rows if r["svname"] == "BACKEND"})
                    raise LoadBalancerError(
                        f"backend {backend!r} not found on {node.url}; its backends: {', '.join(backends) or 'none'}",
                        backend=backend, server=server, node=node.url)
                names = ", ".join(r["svname"] for r in rows)
                raise LoadBalancerError(f"server {server!r} is not in backend {backend!r} on {node.url}; "
                                        f"its servers: {names}", backend=backend, server=server, node=node.url)
            found[node.url] = match
        return found

    def set_state(self, backend: str, server: str, state: State) -> None:
        """``set server B/S state ready|drain|maint`` on every node."""
        if state not in ("ready", "drain", "maint"):
            raise ValueError(f"state must be ready, drain or maint, not {state!r}")
        self.server_rows(backend, server)
        self._change(f"set server {backend}/{server} state {state}", backend, server)

    def shutdown_sessions(self, backend: str, server: str) -> None:
        """Cut every session on the server (``shutdown sessions server B/S``) on every node."""
        self.server_rows(backend, server)
        self._change(f"shutdown sessions server {backend}/{server}", backend, server)

    # -- operations -----------------------------------------------------------------------------------------

    def count_up(self, backend: str) -> int:
        """Servers HAProxy's health checks call UP in the backend — the smallest count any node reports."""
        _check_name("backend", backend)
        counts = []
        for node in self.nodes:
            rows = self.stats(backend, node)
            if not rows:
                raise LoadBalancerError(f"backend {backend!r} has no servers on {node.url}", backend=backend,
                                        node=node.url)
            counts.append(sum(1 for r in rows if _is_up(r)))
        return min(counts)

    def servers_up(self, backend: str) -> set[str]:
        """Names of the backend's servers that every node calls UP (what ``min_healthy`` counts for a subset
        of a backend, e.g. one environment's targets in a shared pool)."""
        _check_name("backend", backend)
        up: set[str] | None = None
        for node in self.nodes:
            names = {r["svname"] for r in self.stats(backend, node) if _is_up(r)}
            up = names if up is None else up & names
        return up or set()

    def drain_and_remove(self, backend: str, server: str, timeout: float, *, force: bool = False,
                         cancel: threading.Event | None = None) -> DrainResult:
        """Take ``server`` out of rotation without dropping a request: ``drain`` (no new traffic; health checks
        and established sessions continue), wait until it holds no session on any node, then ``maint``.

        On timeout the server stays in DRAIN and ``LoadBalancerError`` names the sessions left — unless
        ``force``, which cuts them (``shutdown sessions``) and proceeds."""
        start = time.monotonic()
        self._armed.discard((backend, server))
        self.set_state(backend, server, "drain")
        self.log(f"{backend}/{server}: draining on {len(self.nodes)} node(s)")
        deadline = start + timeout
        left: dict[str, int] = {}
        while True:
            rows = self.server_rows(backend, server)
            left = {url: int(r.get("scur") or 0) + int(r.get("qcur") or 0) for url, r in rows.items()}
            if not any(left.values()):
                break
            if cancel is not None and cancel.is_set():
                raise LoadBalancerError(f"{backend}/{server}: drain cancelled (left in DRAIN)",
                                        backend=backend, server=server)
            if time.monotonic() >= deadline:
                sessions = sum(left.values())
                where = ", ".join(f"{n} on {url}" for url, n in left.items() if n)
                if not force:
                    raise LoadBalancerError(
                        f"{backend}/{server} still has {sessions} session(s) after draining for {timeout:g}s "
                        f"({where}); it stays in DRAIN. Raise drain_timeout, or use force to cut the sessions",
                        backend=backend, server=server)
                self.log(f"{backend}/{server}: drain timed out after {timeout:g}s; cutting {sessions} session(s)")
                self.shutdown_sessions(backend, server)
                self.set_state(backend, server, "maint")
                return DrainResult(server, time.monotonic() - start, forced=True, cut_sessions=sessions,
                                   nodes=[n.url for n in self.nodes])
            time.sleep(self.poll)
        self.set_state(backend, server, "maint")
        seconds = time.monotonic() - start
        self.log(f"{backend}/{server}: drained in {seconds:.1f}s, now in MAINT")
        return DrainResult(server, seconds, nodes=[n.url for n in self.nodes])

    def _admin_states(self, backend: str, server: str) -> tuple[dict[str, int], bool]:
        """The server's admin-state bitmask on every node, and whether it has health checks configured."""
        admin, checked = {}, False
        for node in self.nodes:
            state = next((r for r in self.servers_state(backend, node) if r.get("srv_name") == server), {})
            admin[node.url] = int(state.get("srv_admin_state") or 0)
            checked = checked or bool(int(state.get("srv_check_state") or 0) & 0x2)  # CHK_ST_CONFIGURED
        return admin, checked

    def _start_fresh_checks(self, backend: str, server: str) -> None:
        """MAINT (or DRAIN) → DRAIN with its health forced down, in ONE runtime-API line: HAProxy runs the two
        commands back to back, so no `show stat` ever sees the health it remembers from before MAINT, and
        from here only ``rise`` fresh passing checks make it DRAIN (up). DRAIN takes no new traffic."""
        self._change(f"set server {backend}/{server} state drain; set server {backend}/{server} health down",
                     backend, server)
        self._armed.add((backend, server))

    def start_checks_early(self, backend: str, server: str) -> bool:
        """Start HAProxy's fresh health checks on a server that is still out of rotation — called once the new
        version answered on the target (its smoke test passed) — so ``add_and_wait_up`` only confirms them.

        Only a server in MAINT on every node (taken out by ferry) with health checks is touched: it goes to
        DRAIN with its health forced down (checks run; no new traffic — HAProxy sends a DRAIN server only
        requests that persistence pins to it, and none reach a DOWN one). Anything else (in rotation, no
        checks, a node disagreeing) is left alone and False returned: ``add`` then does the whole job."""
        self.server_rows(backend, server)
        admin, checked = self._admin_states(backend, server)
        if not checked or not all(a & 0x01 for a in admin.values()):  # 0x01: FMAINT, set by `state maint`
            return False
        self._start_fresh_checks(backend, server)
        self.log(f"{backend}/{server}: fresh health checks started early (DRAIN, health down: no traffic)")
        return True

    def add_and_wait_up(self, backend: str, server: str, timeout: float,
                        cancel: threading.Event | None = None) -> float:
        """Put ``server`` back in rotation once HAProxy's own health check reports it UP on every node.
        Returns the seconds it took; raises ``LoadBalancerError`` with the last check result on timeout.

        Leaving MAINT, HAProxy resumes with the health it knew before maintenance — usually UP — and would send
        traffic at once to an app it has not checked since (the one just restarted). So a checked server first
        goes to DRAIN (checks resume, no new traffic) with its health forced down, and only when ``rise``
        fresh checks have passed (status DRAIN, i.e. up) is it set ``ready``. When ``start_checks_early``
        already did that (and every node still shows it DRAIN and nothing else), the checks are not restarted:
        ``add`` only waits for the ones under way."""
        start = time.monotonic()
        deadline = start + timeout
        rows = self.server_rows(backend, server)
        admin, checked = self._admin_states(backend, server)
        if all(a == 0 for a in admin.values()) and all(_is_up(r) for r in rows.values()):
            self.log(f"{backend}/{server}: already in rotation and UP")
            return 0.0
        if checked:
            armed = (backend, server) in self._armed and all(a == 0x08 for a in admin.values())  # FDRAIN only
            if not armed:
                self._start_fresh_checks(backend, server)
            self.log(f"{backend}/{server}: waiting for fresh health checks to pass (no traffic yet"
                     f"{'; started early' if armed else ''})")
            self._wait(backend, server, lambda r: r.get("status") == "DRAIN", "pass its health check", deadline,
                       timeout, cancel)
        self._armed.discard((backend, server))
        self.set_state(backend, server, "ready")
        self._wait(backend, server, _is_up, "come UP", deadline, timeout, cancel)
        seconds = time.monotonic() - start
        self.log(f"{backend}/{server}: UP and in rotation after {seconds:.1f}s")
        return seconds

    def _wait(self, backend: str, server: str, done: Callable[[Mapping[str, str]], bool], what: str,
              deadline: float, timeout: float, cancel: threading.Event | None) -> None:
        while True:
            rows = self.server_rows(backend, server)
            if all(done(r) for r in rows.values()):
                return
            if cancel is not None and cancel.is_set():
                raise LoadBalancerError(f"{backend}/{server}: cancelled while waiting to {what}", backend=backend,
                                        server=server)
            if time.monotonic() >= deadline:
                state = "; ".join(
                    f"{url}: {r.get('status')}, last check {r.get('check_status') or '-'}"
                    f"{' ' + r['check_code'] if r.get('check_code') else ''}"
                    f"{' ' + r['last_chk'] if r.get('last_chk') else ''}" for url, r in rows.items())
                raise LoadBalancerError(f"{backend}/{server} did not {what} within {timeout:g}s ({state}); "
                                        f"it gets no traffic", backend=backend, server=server)
            time.sleep(self.poll)
