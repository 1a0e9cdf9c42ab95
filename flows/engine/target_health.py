"""Health checks of targets (issue 15 item 1): connect through the real transport, measure, read the journal.

``ferry target check`` and the served health check both call ``check_targets``: every target at once in a
bounded pool, each through the transport a deployment would use (so an unknown SSH host key is refused the same
way), reporting reachable, latency (one command's round trip once connected), free disk on the deploy root
(the first existing folder at or above it), clock skew against this machine, the PowerShell version on WinRM
targets, and what the target's journal says it holds. A failure is one line per target.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from snapshots.errors import FerryError
from snapshots.model import Infrastructure, Target
from snapshots.store import health, now
from snapshots.store.health import HealthCheck
from steps import journal
from steps.transports.pool import open_transport
from steps.transports.protocol import Transport

PARALLEL = 8
"""Targets checked at once."""
HEALTH_TIMEOUT = 30.0
SSH_DEPLOY_ROOT = "/opt/ferry/apps"
"""The package step's default root: the disk a Linux target deploys to unless a step says otherwise."""
WINDOWS_DEPLOY_ROOT = "C:\\ferry\\Applications"
"""The iis-website step's default root."""

_BASH = """d=$FERRY_HEALTH_ROOT
while [ ! -d "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done
free=$(df -Pk "$d" | awk 'NR==2 {print $4 * 1024}')
printf '##ferry-health {"now": %s, "free": %s, "path": "%s"}\\n' "$(date +%s.%N)" "${free:-null}" "$d"
"""


def deploy_root(target: Target) -> str:
    spec = target.transport
    if spec.kind == "local":
        return spec.root
    return WINDOWS_DEPLOY_ROOT if spec.kind == "winrm" else SSH_DEPLOY_ROOT


def _one_line(exc: BaseException) -> str:
    text = str(exc) if isinstance(exc, FerryError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


def check_target(target: Target, *, home: Path, actor: str = "") -> HealthCheck:
    """Connect to one target and measure it; never raises (an unreachable target is a result)."""
    transport: Transport | None = None
    try:
        transport = open_transport(target, home=home)
        facts, latency, started, ended = _facts(target, transport)
        holds = journal.installed(transport)
    except Exception as exc:
        reason = _one_line(exc).removeprefix(f"{target.name}: ")
        return HealthCheck(target=target.name, checked_at=now(), reachable=False, reason=reason, checked_by=actor)
    finally:
        if transport is not None:
            with contextlib.suppress(Exception):  # closing a session that may already have failed
                transport.close()
    remote_now = float(facts["now"])
    skew = remote_now - (started + ended) / 2
    free = facts.get("free")
    return HealthCheck(target=target.name, checked_at=now(), reachable=True, latency_ms=round(latency * 1000, 1),
                       free_bytes=int(free) if isinstance(free, int | float) else None,
                       clock_skew_s=round(skew, 3), powershell=facts.get("powershell"), holds=holds,
                       checked_by=actor)


def _facts(target: Target, transport: Transport) -> tuple[dict[str, Any], float, float, float]:
    """The health line's facts, the command's round trip, and the wall-clock times around it."""
    lines: list[str] = []
    root = deploy_root(target)
    started_wall, started = time.time(), time.perf_counter()
    invoke = getattr(transport, "invoke", None)
    if invoke is not None:  # WinRM: ferry's own script, the root as a parameter (data, not spliced)
        from steps.transports.winrm import load_script  # pywinrm loads only when a WinRM target is checked

        result, out = invoke(load_script("target-health.ps1"), parameters={"Root": root}, timeout=HEALTH_TIMEOUT)
        lines = list(out)
    else:
        result = transport.run(_BASH, env={"FERRY_HEALTH_ROOT": root}, timeout=HEALTH_TIMEOUT,
                               on_line=lines.append)
    elapsed = time.perf_counter() - started
    ended_wall = started_wall + elapsed
    reply = next((line for line in lines if line.startswith("##ferry-health ")), None)
    if not result.ok or reply is None:
        detail = " / ".join(line for line in result.output_tail if line.strip()) or "no output"
        raise FerryError(f"the health command failed (exit code {result.exit_code}): {detail}")
    facts = json.loads(reply.split(" ", 1)[1])
    if not isinstance(facts, dict):
        raise FerryError(f"the health command answered {reply!r}")
    return facts, elapsed, started_wall, ended_wall


def check_targets(targets: Sequence[Target], *, home: Path, actor: str = "",
                  parallel: int = PARALLEL) -> list[HealthCheck]:
    """Every target at once (at most ``parallel`` connections), results in the targets' order."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(targets))), thread_name_prefix="ferry-health") as pool:
        return list(pool.map(lambda t: check_target(t, home=home, actor=actor), targets))


def select_targets(infra: Infrastructure, name: str | None, environment: str | None) -> list[Target]:
    """The targets ``target check`` means: one by name, an environment's, or all."""
    from snapshots.errors import ConfigError, NotFoundError

    if name and environment:
        raise ConfigError("give a target name or --environment, not both")
    if name:
        found = next((t for t in infra.targets if t.name == name), None)
        if found is None:
            known = ", ".join(sorted(t.name for t in infra.targets)) or "none"
            raise NotFoundError(f"no target named {name!r} in the applied infrastructure (targets: {known})")
        return [found]
    if environment:
        if infra.environment(environment) is None:
            known = ", ".join(sorted(e.name for e in infra.environments)) or "none"
            raise NotFoundError(f"unknown environment {environment!r} (known: {known})")
        return infra.targets_in(environment)
    return list(infra.targets)


def record_all(conn: Connection, checks: Sequence[HealthCheck]) -> None:
    for check in checks:
        health.record(conn, check)


def unhealthy_exclusions(conn: Connection, infra: Infrastructure, targets: Sequence[Target],
                         at: datetime | None = None) -> dict[str, str]:
    """Targets a deployment leaves out up front: their machine policy skips unavailable targets, their last
    check failed, and that check is younger than the policy's ``exclude_unhealthy_for``. Name → why."""
    moment = at or datetime.now(UTC)
    skipping = [t for t in targets if infra.policy_of(t).unavailable_targets == "skip"]
    if not skipping:
        return {}
    last = health.latest(conn, [t.name for t in skipping])
    excluded = {}
    for target in skipping:
        check = last.get(target.name)
        policy = infra.policy_of(target)
        if check is None or check.reachable or check.age_seconds(moment) > policy.exclude_unhealthy_for:
            continue
        excluded[target.name] = (f"skipped: unhealthy at the health check of {check.checked_at} ({check.reason}); "
                                 f"machine policy {policy.name!r} excludes it for "
                                 f"{_duration(policy.exclude_unhealthy_for)}")
    return excluded


def _duration(seconds: float) -> str:
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
