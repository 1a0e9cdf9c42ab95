"""http-check against a real HTTP server on loopback: success, an app that warms up, and clear failures."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from steps.kinds.http_check import HttpCheckFailed, http_check


class Site:
    """Answers ``status``/``body`` — after ``warmup`` seconds of 503s."""

    def __init__(self, status: int = 200, body: str = "ok 1.2.0\n", warmup: float = 0.0) -> None:
        self.status, self.body, self.ready_at = status, body, time.monotonic() + warmup
        self.hits = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hits += 1
                warming = time.monotonic() < site.ready_at
                status, body = (503, "warming up\n") if warming else (site.status, site.body)
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


def test_success_returns_the_response(site: Site) -> None:
    lines: list[str] = []
    result = http_check(site.url, status=200, contains="1.2.0", within=5, log=lines.append)
    assert (result.status, result.body, result.attempts) == (200, "ok 1.2.0\n", 1)
    assert lines and lines[0].startswith(f"GET {site.url}: 200 after 1 attempt")


def test_retries_until_the_app_has_warmed_up() -> None:
    site = Site(warmup=1.0)
    try:
        result = http_check(site.url, contains="1.2.0", within=10, interval=0.2)
    finally:
        site.close()
    assert result.status == 200 and result.attempts > 2 and result.seconds >= 0.9


def test_timeout_shows_the_last_status_and_body() -> None:
    site = Site(body="<html>" + "old version 1.1.0 " * 40 + "</html>")
    try:
        start = time.monotonic()
        with pytest.raises(HttpCheckFailed) as failure:
            http_check(site.url, status=200, contains="1.2.0", within=1, interval=0.2)
        assert time.monotonic() - start < 3
    finally:
        site.close()
    message = str(failure.value)
    assert message.startswith(f"GET {site.url} did not answer status 200 with '1.2.0' in the body within 1s")
    assert "last response: status 200, body starts '<html>old version 1.1.0 old version" in message
    assert message.endswith("…'")  # only the start of a long body
    assert failure.value.last_status == 200 and failure.value.attempts >= 3


def test_wrong_status_is_reported() -> None:
    site = Site(status=500, body="Internal Server Error: db down\n")
    try:
        with pytest.raises(HttpCheckFailed, match=r"last response: status 500, body starts 'Internal Server "
                                                  r"Error: db down\\n'"):
            http_check(site.url, within=0.5, interval=0.1)
    finally:
        site.close()


def test_connection_refused_is_reported() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HttpCheckFailed) as failure:
        http_check(f"http://127.0.0.1:{port}/health", within=0.5, interval=0.1)
    assert "last attempt failed: ConnectError" in str(failure.value)
    assert failure.value.last_status is None


def test_a_hanging_server_does_not_outlive_the_deadline() -> None:
    with socket.socket() as listener:  # accepts, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        start = time.monotonic()
        with pytest.raises(HttpCheckFailed, match="ReadTimeout"):
            http_check(url, within=1, request_timeout=10)
        assert time.monotonic() - start < 3
