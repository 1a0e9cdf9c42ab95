"""The ``http-check`` step: request a URL on the target itself (not through the balancer) until it answers
the expected status and body, for at most ``within`` seconds; the last response is shown on failure.

A freshly restarted app answers connection refused, then maybe 503, then the old page from a cache, then
the right one; so the check retries every ``interval`` until ``within`` seconds have passed and, on failure,
shows what the *last* attempt saw — the status and the start of the body, or the connection error.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from snapshots.errors import HttpCheckFailed
from snapshots.tls import tls_context
from steps.context import StepContext

__all__ = ["HttpCheckFailed", "HttpCheckResult", "http_check", "run"]

_BODY_SHOWN = 200



@dataclass
class HttpCheckResult:
    url: str
    status: int
    body: str
    attempts: int
    seconds: float


def _excerpt(body: str) -> str:
    return body[:_BODY_SHOWN] + ("…" if len(body) > _BODY_SHOWN else "")


def http_check(url: str, *, status: int = 200, contains: str | None = None, within: float = 30.0,
               interval: float = 0.5, request_timeout: float = 5.0, method: str = "GET",
               headers: dict[str, str] | None = None, verify: bool | str = True, follow_redirects: bool = False,
               log: Callable[[str], None] | None = None, cancel: threading.Event | None = None) -> HttpCheckResult:
    """Request ``url`` until it answers ``status`` with ``contains`` in the body, for at most ``within`` s.

    Proxies from the environment are ignored: the check talks to the target directly, not through whatever
    sits in front of it."""
    start = time.monotonic()
    deadline = start + within
    attempts = 0
    last_status: int | None = None
    last_body: str | None = None
    last_error: str | None = None
    with httpx.Client(timeout=request_timeout, verify=tls_context(verify, trust_env=False),
                      follow_redirects=follow_redirects, trust_env=False, headers=headers) as client:
        while True:
            attempts += 1
            remaining = max(0.1, deadline - time.monotonic())
            try:
                response = client.request(method, url, timeout=min(request_timeout, remaining))
                last_status, last_body, last_error = response.status_code, response.text, None
                if response.status_code == status and (contains is None or contains in response.text):
                    seconds = time.monotonic() - start
                    if log:
                        log(f"{method} {url}: {status} after {attempts} attempt(s), {seconds:.1f}s")
                    return HttpCheckResult(url, response.status_code, response.text, attempts, seconds)
            except httpx.HTTPError as exc:
                last_status, last_body = None, None
                last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if cancel is not None and cancel.is_set():
                break
            if time.monotonic() + interval >= deadline:
                break
            time.sleep(interval)
    expected = f"status {status}" + (f" with {contains!r} in the body" if contains is not None else "")
    if last_status is not None:
        seen = f"last response: status {last_status}, body starts {_excerpt(last_body or '')!r}"
    else:
        seen = f"last attempt failed: {last_error}"
    elapsed = time.monotonic() - start
    raise HttpCheckFailed(f"{method} {url} did not answer {expected} within {within:g}s "
                          f"({attempts} attempts, {elapsed:.1f}s); {seen}",
                          url=url, last_status=last_status, last_body=last_body, last_error=last_error,
                          attempts=attempts)



def run(ctx: StepContext) -> None:
    step = ctx.step
    url = ctx.render(step.url, f"{ctx.where} url").strip()
    contains = ctx.render(step.expect.contains, f"{ctx.where} expect.contains") \
        if step.expect.contains is not None else None
    timeout = float(step.timeout) if step.timeout else None
    within = min(float(step.within), timeout) if timeout else float(step.within)
    http_check(url, status=step.expect.status, contains=contains, within=within, interval=float(step.interval),
               method=step.method, log=ctx.log, cancel=ctx.cancel)
