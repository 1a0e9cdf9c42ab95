"""A bounded load generator for the lab: a few threads sending GETs through the balancer, counting every
response and failure, the versions and machines that answered — to show (and test) that a rollout drops
nothing.

Bounded on purpose: it stops at ``max_requests`` or after ``max_seconds``, whichever comes first (or when
``stop()`` is called). Each thread keeps one HTTP/1.1 keep-alive connection to HAProxy, as browsers do;
HAProxy still picks a server per request, so a keep-alive client sees every server and every version.
A failure is anything but a 200: a refused or reset connection, a timeout, a 5xx from the balancer.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["LoadGenerator", "LoadReport"]


@dataclass
class LoadReport:
    requests: int = 0
    failures: int = 0
    seconds: float = 0.0
    versions: Counter[str] = field(default_factory=Counter)
    machines: Counter[str] = field(default_factory=Counter)
    phases: dict[str, Counter[str]] = field(default_factory=dict)
    """phase label → versions seen while it was the current phase."""
    errors: list[str] = field(default_factory=list)
    """The first few failures, described."""
    timeline: list[tuple[float, str | None]] = field(default_factory=list)
    """(wall-clock time, version) of every response; version None for a failure."""
    first_answer: dict[tuple[str, str], float] = field(default_factory=dict)
    """(machine, version) → wall-clock time of the first answer it gave (when a server got its first request
    on a version: e.g. to show none reached a server before it was put back in the balancer)."""

    def between(self, start: float, end: float) -> tuple[int, int, Counter[str]]:
        """Requests, failures and versions seen between two wall-clock times (e.g. a rollout's span)."""
        seen = [v for t, v in self.timeline if start <= t <= end]
        return len(seen), sum(1 for v in seen if v is None), Counter(v for v in seen if v is not None)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


class LoadGenerator:
    """``with LoadGenerator(url) as load: …`` — or ``start()`` / ``stop()``; ``report`` when stopped."""

    def __init__(self, url: str, *, threads: int = 4, max_requests: int = 100_000, max_seconds: float = 300,
                 keep_alive: bool = True, timeout: float = 10.0, rate: float | None = None) -> None:
        """``rate``: at most this many requests per second in all (None: as fast as the threads go)."""
        self.url, self.threads, self.max_requests, self.max_seconds = url, threads, max_requests, max_seconds
        self.interval = threads / rate if rate else 0.0
        self.keep_alive, self.timeout = keep_alive, timeout
        self.report = LoadReport()
        self.phase = "warm-up"
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._started = 0.0

    def start(self) -> LoadGenerator:
        self._started = time.monotonic()
        for i in range(self.threads):
            worker = threading.Thread(target=self._work, name=f"load-{i}", daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def mark(self, phase: str) -> None:
        """Responses from now on count under ``phase`` too (e.g. "Production rollout")."""
        with self._lock:
            self.phase = phase

    def stop(self) -> LoadReport:
        self._stop.set()
        for worker in self._workers:
            worker.join()
        self.report.seconds = time.monotonic() - self._started
        return self.report

    def wait(self, requests: int, timeout: float) -> bool:
        """Block until at least ``requests`` were sent (True) or ``timeout`` passed or the bound was hit."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            with self._lock:
                if self.report.requests >= requests:
                    return True
            time.sleep(0.05)
        with self._lock:
            return self.report.requests >= requests

    @property
    def running(self) -> bool:
        return any(w.is_alive() for w in self._workers)

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take(self) -> bool:
        with self._lock:
            if self.report.requests >= self.max_requests or time.monotonic() - self._started >= self.max_seconds:
                self._stop.set()
                return False
            self.report.requests += 1
            return True

    def _work(self) -> None:
        """One connection per thread (http.client: a fraction of an HTTP library's cost per request, so the
        generator leaves the CPU to what it measures); a failed or closed connection is reopened."""
        parts = urlsplit(self.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Host": parts.netloc} if self.keep_alive else {"Host": parts.netloc, "Connection": "close"}
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=self.timeout)
        next_at = time.monotonic()
        try:
            while not self._stop.is_set() and self._take():
                if self.interval:
                    next_at += self.interval
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        next_at = time.monotonic()  # running late: no burst to catch up
                version = machine = None
                error = None
                try:
                    conn.request("GET", path, headers=headers)
                    response = conn.getresponse()
                    body = response.read()
                    if response.status == 200:
                        version = response.getheader("X-OctoFX-Version", "?")
                        machine = response.getheader("X-OctoFX-Machine", "?")
                    else:
                        error = f"status {response.status}: {body[:120]!r}"
                    if response.will_close:
                        conn.close()
                except (OSError, http.client.HTTPException) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                    conn.close()
                with self._lock:
                    self.report.timeline.append((time.time(), None if error is not None else str(version)))
                    if error is not None:
                        self.report.failures += 1
                        if len(self.report.errors) < 10:
                            self.report.errors.append(error)
                    else:
                        self.report.versions[str(version)] += 1
                        self.report.machines[str(machine)] += 1
                        self.report.first_answer.setdefault((str(machine), str(version)), time.time())
                        self.report.phases.setdefault(self.phase, Counter())[str(version)] += 1
        finally:
            conn.close()
