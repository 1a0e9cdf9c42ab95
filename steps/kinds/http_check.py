"""The ``http-check`` step: request a URL on the target itself (not through the balancer) until it answers
the expected status and body, for at most ``within`` seconds; the last response is shown on failure."""

from __future__ import annotations

from steps.context import StepContext
from steps.http_check import http_check


def run(ctx: StepContext) -> None:
    step = ctx.step
    url = ctx.render(step.url, f"{ctx.where} url").strip()
    contains = ctx.render(step.expect.contains, f"{ctx.where} expect.contains") \
        if step.expect.contains is not None else None
    timeout = float(step.timeout) if step.timeout else None
    within = min(float(step.within), timeout) if timeout else float(step.within)
    http_check(url, status=step.expect.status, contains=contains, within=within, interval=float(step.interval),
               method=step.method, log=ctx.log, cancel=ctx.cancel)
