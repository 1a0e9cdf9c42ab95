"""The HAProxy runtime API client against the lab's real HAProxy (TCP, unix socket, and over SSH), with real
HTTP backends on the targets' addresses: drains that wait for a held-open request, forced drains, and adds
that wait for HAProxy's own health check."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from steps.kinds.haproxy import HAProxy, LoadBalancerError
from steps.transports.ssh import SshTransport
from tests.servers.ssh_lab import LabInfo, private_network, start_lab

BACKEND = "octofx"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # health checks hang up early; nothing to see


class App:
    """A stand-in for the app on one target: ``/health`` answers 200; ``/hold`` answers only when released."""

    def __init__(self, address: str, port: int) -> None:
        self.address, self.port = address, port
        self.release = threading.Event()
        self.held = 0
        self.served = 0
        """requests other than HAProxy's health checks (/health) that reached this app"""
        self._lock = threading.Lock()
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path != "/health":
                    with app._lock:
                        app.served += 1
                if self.path == "/hold":
                    with app._lock:
                        app.held += 1
                    app.release.wait(30)
                body = f"ok from {app.address}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = _Server((address, port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def lb_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    """A lab of its own (3 targets, another /24): these tests own the targets' app port."""
    info = start_lab(tmp_path_factory.mktemp("lb-lab") / "ferry-home", 3, network=private_network(offset=1))
    try:
        yield info
    finally:
        info.lab.down()


@pytest.fixture
def apps(lb_lab: LabInfo) -> Iterator[dict[str, App]]:
    """Apps on dev-01 and test-01 (test-02 has none: it stays DOWN), every server back to ready afterwards."""
    started = {name: App(lb_lab.info(name)["address"], 8080) for name in ("dev-01", "test-01")}
    haproxy = HAProxy([lb_lab.api])
    for name in ("dev-01", "test-01", "test-02"):
        haproxy.set_state(BACKEND, name, "ready")
    _wait_for(lambda: haproxy.count_up(BACKEND) == 2, 10, "two servers UP")
    try:
        yield started
    finally:
        for app in started.values():
            app.stop()
        for name in ("dev-01", "test-01", "test-02"):
            haproxy.set_state(BACKEND, name, "ready")


def _wait_for(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _balancer(lab: LabInfo) -> tuple[str, int]:
    host, port = lab.status["balancer_url"].removeprefix("http://").rstrip("/").split(":")
    return host, int(port)


def hold_request_on(lab: LabInfo, apps: dict[str, App], server: str) -> list[socket.socket]:
    """Open requests through HAProxy until one is held by ``server``'s app; return every open client socket."""
    clients = []
    for _ in range(6):
        before = apps[server].held
        client = socket.create_connection(_balancer(lab), timeout=30)
        client.sendall(b"GET /hold HTTP/1.1\r\nHost: lab\r\n\r\n")
        clients.append(client)
        _wait_for(lambda: sum(a.held for a in apps.values()) >= len(clients), 5, "the request to reach an app")
        if apps[server].held > before:
            return clients
    raise AssertionError(f"roundrobin never picked {server}")


def _status(haproxy: HAProxy, server: str) -> str:
    return haproxy.server_rows(BACKEND, server)[haproxy.nodes[0].url]["status"]


# -- names and nodes -----------------------------------------------------------------------------------------------

def test_unknown_server_names_the_backends_servers(lb_lab: LabInfo) -> None:
    haproxy = HAProxy([lb_lab.api])
    with pytest.raises(LoadBalancerError) as failure:
        haproxy.drain_and_remove(BACKEND, "prod-07", timeout=1)
    assert str(failure.value) == (f"server 'prod-07' is not in backend 'octofx' on {lb_lab.api}; "
                                  "its servers: dev-01, test-01, test-02")
    with pytest.raises(LoadBalancerError, match="its servers: dev-01, test-01, test-02"):
        haproxy.add_and_wait_up(BACKEND, "web", timeout=1)


def test_unknown_backend_names_the_backends(lb_lab: LabInfo) -> None:
    with pytest.raises(LoadBalancerError) as failure:
        HAProxy([lb_lab.api]).set_state("octofx-typo", "dev-01", "drain")
    assert str(failure.value) == f"backend 'octofx-typo' not found on {lb_lab.api}; its backends: octofx"


def test_names_cannot_smuggle_commands(lb_lab: LabInfo) -> None:
    with pytest.raises(LoadBalancerError, match="invalid server name"):
        HAProxy([lb_lab.api]).set_state(BACKEND, "dev-01;disable server octofx/test-01", "drain")


def test_unreachable_node_is_a_clear_error(lb_lab: LabInfo, tmp_path: Path) -> None:
    with pytest.raises(LoadBalancerError) as failure:
        HAProxy(["tcp://127.0.0.1:1"]).count_up(BACKEND)
    assert str(failure.value) == "cannot reach the HAProxy runtime API at tcp://127.0.0.1:1: connection refused"
    with pytest.raises(LoadBalancerError, match=r"cannot reach .*unix://.*no such file"):
        HAProxy([f"unix://{tmp_path}/none.sock"]).count_up(BACKEND)


def test_count_up_on_tcp_and_unix_nodes(lb_lab: LabInfo, apps: dict[str, App]) -> None:
    haproxy = HAProxy([lb_lab.api, lb_lab.socket])
    assert haproxy.count_up(BACKEND) == 2
    assert {r["svname"]: r["status"] for r in haproxy.stats(BACKEND)}["test-02"].startswith("DOWN")
    states = {r["srv_name"]: r for r in haproxy.servers_state(BACKEND)}
    assert set(states) == {"dev-01", "test-01", "test-02"} and states["dev-01"]["srv_op_state"] == "2"


def test_node_reached_over_ssh(lb_lab: LabInfo, apps: dict[str, App]) -> None:
    """A balancer host's admin socket, reached by running socat on it over the SSH transport."""
    info = lb_lab.info("dev-01")
    netloc = f"ferry@{info['address']}:{info['ssh_port']}"
    socket_path = lb_lab.socket.removeprefix("unix://")
    with SshTransport("dev-01", lb_lab.spec("dev-01"), known_hosts=lb_lab.known_hosts) as ssh:
        haproxy = HAProxy([f"ssh://{netloc}{socket_path}"], ssh={netloc: ssh})
        assert haproxy.count_up(BACKEND) == 2
        haproxy.set_state(BACKEND, "test-02", "maint")
        assert _status(HAProxy([lb_lab.api]), "test-02") == "MAINT"
    with pytest.raises(LoadBalancerError, match="needs an SSH connection"):
        HAProxy([f"ssh://{netloc}{socket_path}"]).count_up(BACKEND)


# -- drain -------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_drain_waits_for_a_held_connection_and_times_out_clearly(lb_lab: LabInfo, apps: dict[str, App]) -> None:
    haproxy = HAProxy([lb_lab.api, lb_lab.socket], poll=0.1)
    clients = hold_request_on(lb_lab, apps, "dev-01")
    _wait_for(lambda: int(haproxy.server_rows(BACKEND, "dev-01")[lb_lab.api]["scur"]) >= 1, 5, "scur 1")
    start = time.monotonic()
    with pytest.raises(LoadBalancerError) as failure:
        haproxy.drain_and_remove(BACKEND, "dev-01", timeout=1)
    assert 1 <= time.monotonic() - start < 4
    assert str(failure.value).startswith("octofx/dev-01 still has 2 session(s) after draining for 1s "
                                         f"(1 on {lb_lab.api}, 1 on {lb_lab.socket}); it stays in DRAIN")
    assert _status(haproxy, "dev-01") == "DRAIN"
    # The held request finishes normally a moment later; the drain that is waiting then completes.
    threading.Timer(1.0, apps["dev-01"].release.set).start()
    result = haproxy.drain_and_remove(BACKEND, "dev-01", timeout=15)
    assert 0.7 <= result.seconds < 10 and not result.forced
    assert _status(haproxy, "dev-01") == "MAINT"
    for client in clients:
        assert client.recv(4096).startswith(b"HTTP/1.1 200"), "a drained request must not fail"
        client.close()


@pytest.mark.slow
def test_force_cuts_the_sessions_after_the_timeout(lb_lab: LabInfo, apps: dict[str, App]) -> None:
    haproxy = HAProxy([lb_lab.api], poll=0.1)
    clients = hold_request_on(lb_lab, apps, "test-01")
    _wait_for(lambda: int(haproxy.server_rows(BACKEND, "test-01")[lb_lab.api]["scur"]) >= 1, 5, "scur 1")
    result = haproxy.drain_and_remove(BACKEND, "test-01", timeout=0.5, force=True)
    assert result.forced and result.cut_sessions == 1
    assert _status(haproxy, "test-01") == "MAINT"
    assert haproxy.server_rows(BACKEND, "test-01")[lb_lab.api]["scur"] == "0"
    apps["dev-01"].release.set()
    apps["test-01"].release.set()
    replies = []
    for client in clients:
        client.settimeout(5)
        try:
            replies.append(client.recv(4096))
        except OSError:
            replies.append(b"")
        client.close()
    assert any(not reply.startswith(b"HTTP/1.1 200") for reply in replies), "force did not cut the session"


# -- add ---------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_add_waits_for_a_fresh_passing_health_check(lb_lab: LabInfo, apps: dict[str, App]) -> None:
    haproxy = HAProxy([lb_lab.api, lb_lab.socket], poll=0.1)
    haproxy.drain_and_remove(BACKEND, "dev-01", timeout=5)
    apps["dev-01"].stop()  # the app is restarting: nothing listens
    # HAProxy remembers dev-01 as UP from before its maintenance: a naive `ready` would route to it at once.
    with pytest.raises(LoadBalancerError) as failure:
        haproxy.add_and_wait_up(BACKEND, "dev-01", timeout=1.5)
    message = str(failure.value)
    assert message.startswith("octofx/dev-01 did not pass its health check within 1.5s")
    assert "L4CON" in message and "it gets no traffic" in message
    assert not _status(haproxy, "dev-01").startswith("UP")
    assert haproxy.count_up(BACKEND) == 1
    apps["dev-01"] = App(lb_lab.info("dev-01")["address"], 8080)
    seconds = haproxy.add_and_wait_up(BACKEND, "dev-01", timeout=10)
    assert 0 < seconds < 10
    assert _status(haproxy, "dev-01") == "UP" and haproxy.count_up(BACKEND) == 2
    assert haproxy.add_and_wait_up(BACKEND, "dev-01", timeout=1) == 0.0  # already in: nothing to do


def test_add_times_out_when_the_app_never_answers(lb_lab: LabInfo, apps: dict[str, App]) -> None:
    haproxy = HAProxy([lb_lab.api], poll=0.1)
    haproxy.set_state(BACKEND, "test-02", "maint")
    with pytest.raises(LoadBalancerError, match=r"test-02 did not pass its health check within 0.8s \(.*L4CON"):
        haproxy.add_and_wait_up(BACKEND, "test-02", timeout=0.8)


def test_checks_started_early_send_no_traffic_and_add_only_confirms(lb_lab: LabInfo, apps: dict[str, App]) -> None:
    lines: list[str] = []
    haproxy = HAProxy([lb_lab.api, lb_lab.socket], poll=0.05, log=lines.append)
    assert not haproxy.start_checks_early(BACKEND, "dev-01")  # in rotation: left alone
    assert _status(haproxy, "dev-01").startswith("UP")
    haproxy.drain_and_remove(BACKEND, "dev-01", timeout=5)
    assert haproxy.start_checks_early(BACKEND, "dev-01")
    # not the UP remembered from before MAINT: the health is forced down until fresh checks pass
    assert _status(haproxy, "dev-01").startswith("DOWN")
    _wait_for(lambda: _status(haproxy, "dev-01") == "DRAIN", 10, "fresh checks to pass while out of rotation")
    served = apps["dev-01"].served
    host, port = _balancer(lb_lab)
    for _ in range(20):  # checked and healthy, but still no traffic until `add`
        with socket.create_connection((host, port), timeout=5) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
            assert client.recv(64).startswith(b"HTTP/1.1 200")
    assert apps["dev-01"].served == served
    assert haproxy.add_and_wait_up(BACKEND, "dev-01", timeout=5) < 5
    assert any("started early" in line for line in lines), lines  # the checks under way were not restarted
    assert _status(haproxy, "dev-01") == "UP" and haproxy.count_up(BACKEND) == 2
