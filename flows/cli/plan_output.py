"""``ferry deploy … --plan [--check-targets] [--json]``: print what the deployment would do, change nothing.

The store is only read (no deployment record, no audit entry, no prompted values kept) and no target is
touched unless ``--check-targets`` opens each one to read its journal. In remote mode the ferry server plans it
(``POST /api/v1/deployments/plan``, the ``deploy`` scope of the environment).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flows.cli.output import print_json, say
from flows.cli.remote import remote_client
from snapshots.errors import ConfigError
from snapshots.workspace import Workspace


def show_plan(project: str, release: str, environment: str, *, plan: bool, check_targets: bool, as_json: bool,
              targets: list[str], exclude_targets: list[str], skip_steps: list[str], variables: dict[str, str],
              guided_failure: bool | None, force: bool, conflicting: dict[str, Any], channel: str | None = None,
              override_freeze: bool = False) -> None:
    """``conflicting``: the deploy options that start or follow a run (``--wait`` …) and their values."""
    if not plan:
        given = "--check-targets" if check_targets else "--json"
        raise ConfigError(f"{given} goes with --plan (ferry deploy … --plan {given})")
    for option, value in conflicting.items():
        if value not in (None, False):
            raise ConfigError(f"--plan only shows what would happen: it does not go with {option}")
    if (client := remote_client()) is not None:  # the ferry server plans it where the store is
        doc = client.plan(project, release, environment, check_targets=check_targets, targets=targets,
                          exclude_targets=exclude_targets, skip_steps=skip_steps, variables=variables,
                          guided_failure=guided_failure, force=force, channel=channel,
                          override_freeze=override_freeze)
        _print(doc, as_json)
        return
    from flows.engine.plan import prepare
    from flows.engine.plan_view import describe, read_journals

    ctx = Workspace()
    with ctx.store.read() as conn:
        planned = prepare(conn, ctx.feed, ctx.vault, project=project, release=release, environment=environment,
                          targets=targets, exclude_targets=exclude_targets, skip_steps=skip_steps,
                          variables=variables, guided_failure=guided_failure, force=force, channel=channel,
                          override_freeze=override_freeze, report_freeze=True)
        journals = read_journals(planned, ctx.settings.home) if check_targets else None
        doc = describe(conn, planned, journals=journals)
        conn.rollback()  # nothing was written; say so to the database too
    _print(doc, as_json)


def _print(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(doc)
    else:
        render_text(doc, say)


def render_text(doc: dict[str, Any], say: Callable[[str], None]) -> None:
    """The document for a person, one line at a time."""
    life = doc["lifecycle"]
    say(f"plan: {doc['project']} {doc['release']} → {doc['environment']} (nothing is deployed, recorded or "
        "changed on any target)")
    say(f"lifecycle {life['name']}: {doc['environment']} is in phase {life.get('phase')!r} "
        f"({life.get('phase_number')} of {life.get('phases')}): allowed — {life['reason']}")
    freeze = doc.get("freeze")
    if freeze is not None:
        say(f"freeze: {'REFUSED — ' if not freeze['allowed'] else ''}{freeze['reason']}")
    if doc.get("channel"):
        say(f"channel: {doc['channel']}")
    say(f"guided failure: {'on' if doc['guided_failure'] else 'off'}; force: {'yes' if doc['force'] else 'no'}"
        + (f"; --skip: {', '.join(doc['skip_steps'])}" if doc["skip_steps"] else ""))
    left = f" (left out: {', '.join(doc['left_out'])})" if doc["left_out"] else ""
    say(f"targets ({len(doc['targets'])}){left}:")
    for t in doc["targets"]:
        j = t["journal"]
        say(f"  {t['name']} [{', '.join(t['roles'])}]: journal {j['state']}"
            + (f" — {j['detail']}" if j.get("detail") else ""))
    say("process:")
    for unit in doc["units"]:
        head = f"  {unit['number']}. {unit['name']} — {unit['runs']}"
        if unit["action"] != "run" or unit.get("reason"):
            head += f": {unit['action']}" + (f" ({unit['reason']})" if unit.get("reason") else "")
        say(head)
        rolling = unit.get("rolling")
        if rolling:
            say(f"     window {rolling['window']} → {' then '.join(str(s) for s in rolling['at_once'])} at once; "
                f"{rolling['arithmetic']}")
            say(f"     order: {' | '.join(', '.join(w) for w in rolling['windows'])}")
        for row in unit.get("steps", []):
            say(f"     {row['step']}: {row['action']}" + (f" ({row['reason']})" if row.get("reason") else ""))
        for t in unit.get("targets", []):
            say(f"     {t['target']}:")
            for row in t["steps"]:
                say(f"       {row['step']} [{row['where']}]: {row['action']}"
                    + (f" — {row['reason']}" if row.get("reason") else ""))
        if unit.get("journal"):
            say(f"     journal: {unit['journal']}")
        if unit.get("on_failure"):
            say(f"     on failure: {unit['on_failure']}")
    say("variables per target (sensitive values masked):")
    for target, values in doc["variables"].items():
        say(f"  {target}:" + ("" if values else " (none)"))
        for name, value in values.items():
            say(f"    {name} = {value}")
