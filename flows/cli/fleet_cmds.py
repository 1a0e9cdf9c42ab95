"""``ferry target list`` and ``ferry target check`` (issue 15 item 1): the fleet at a glance, and a health check
through the real transports. Registered on the ``target`` group that ``target_cmds`` defines."""

from __future__ import annotations

from typing import Any

import typer

from flows.cli.output import print_json, print_table, say
from flows.cli.target_cmds import target_app
from snapshots.errors import TargetsUnavailable
from snapshots.workspace import Workspace

app = typer.Typer()
"""Nothing of its own: the commands below join ``target_app`` (imported by ``flows.cli.app`` to register them)."""


def _size(free: int | None) -> str:
    if free is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if free < 1024 or unit == "TiB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free = free / 1024  # type: ignore[assignment]  # float from here on
    return "—"


def _holds(journal: dict[str, dict[str, Any]], records: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per project/environment, the newer of what the target's journal said at the last check and what the
    deployment records say succeeded there."""
    merged = dict(records)
    for key, entry in journal.items():
        other = merged.get(key)
        if other is None or int(entry.get("deployment_id") or 0) >= int(other.get("deployment_id") or 0):
            merged[key] = {**entry, "source": "journal"}
    return {k: {**v, "source": v.get("source", "records")} for k, v in sorted(merged.items())}


@target_app.command("list")
def list_targets(environment: str | None = typer.Option(None, "--environment", "-e", help="Only this environment"),
                 role: str | None = typer.Option(None, "--role", "-r", help="Only targets with this role"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Targets: environment, roles, transport, machine policy, last health check and the releases they hold
    (from their journal as last read by a check, and from deployment records). Connects to nothing."""
    from flows.engine.target_health import select_targets
    from snapshots.projects import require_infrastructure
    from snapshots.store import health

    ctx = Workspace()
    with ctx.store.read() as conn:
        infra = require_infrastructure(conn)
        targets = select_targets(infra, None, environment)
        if role:
            targets = [t for t in targets if role in t.roles]
        last = health.latest(conn, [t.name for t in targets])
        deployed = health.deployed(conn)
    rows: list[dict[str, Any]] = []
    for target in targets:
        check = last.get(target.name)
        rows.append({
            "name": target.name, "environment": target.environment, "roles": list(target.roles),
            "transport": target.transport.kind, "machine_policy": target.machine_policy,
            "health": None if check is None else {
                "checked_at": check.checked_at, "reachable": check.reachable, "reason": check.reason,
                "latency_ms": check.latency_ms, "free_bytes": check.free_bytes, "clock_skew_s": check.clock_skew_s,
                "powershell": check.powershell},
            "holds": _holds(check.holds if check else {}, deployed.get(target.name, {}))})
    if as_json:
        print_json(rows)
        return
    print_table(None, ["target", "environment", "roles", "transport", "policy", "last health", "holds"], [
        (r["name"], r["environment"], ", ".join(r["roles"]), r["transport"], r["machine_policy"],
         "never checked" if r["health"] is None else
         (f"healthy {r['health']['checked_at'][:19]}" if r["health"]["reachable"]
          else f"UNREACHABLE {r['health']['checked_at'][:19]}: {r['health']['reason']}"),
         "; ".join(f"{key} {h['release']}" for key, h in r["holds"].items()) or "—")
        for r in rows])


@target_app.command("check")
def check(name: str | None = typer.Argument(None, metavar="[NAME]", help="One target (default: all)"),
          environment: str | None = typer.Option(None, "--environment", "-e", help="Every target of this environment"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Connect to each target at once (8 at a time) through its real transport and report reachable, latency,
    free disk on the deploy root, clock skew and (WinRM) the PowerShell version; record the results. Exits 1
    when any target is unreachable."""
    from flows.engine.target_health import check_targets, record_all, select_targets
    from snapshots.projects import require_infrastructure

    ctx = Workspace()
    with ctx.store.read() as conn:
        infra = require_infrastructure(conn)
    targets = select_targets(infra, name, environment)
    results = check_targets(targets, home=ctx.settings.home, actor=ctx.actor)
    with ctx.store.begin() as conn:
        record_all(conn, results)
    down = [r for r in results if not r.reachable]
    if as_json:
        print_json([{**r.as_dict(), "environment": t.environment, "transport": t.transport.kind}
                    for r, t in zip(results, targets, strict=True)])
    else:
        print_table(None, ["target", "transport", "reachable", "latency", "free disk", "clock skew", "PowerShell"], [
            (r.target, t.transport.kind, "yes" if r.reachable else "NO",
             f"{r.latency_ms:.0f} ms" if r.latency_ms is not None else "—", _size(r.free_bytes),
             f"{r.clock_skew_s:+.2f} s" if r.clock_skew_s is not None else "—", r.powershell or "—")
            for r, t in zip(results, targets, strict=True)])
        for r in down:
            say(f"{r.target}: {r.reason}")
    if down:
        raise TargetsUnavailable(f"{len(down)} of {len(results)} target(s) unreachable: "
                                 + ", ".join(r.target for r in down))
