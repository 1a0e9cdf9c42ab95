"""``ferry deploy … --plan [--check-targets] [--json]``: print what the deployment would do, change nothing.

The store is only read (no deployment record, no audit entry, no prompted values kept) and no target is
touched unless ``--check-targets`` opens each one to read its journal.
"""

from __future__ import annotations

from typing import Any

from flows.cli.output import print_json, say
from flows.cli.remote import remote_client, server_url
from snapshots.errors import ConfigError
from snapshots.workspace import Workspace


def show_plan(project: str, release: str, environment: str, *, plan: bool, check_targets: bool, as_json: bool,
              targets: list[str], exclude_targets: list[str], skip_steps: list[str], variables: dict[str, str],
              guided_failure: bool | None, force: bool, conflicting: dict[str, Any]) -> None:
    """``conflicting``: the deploy options that start or follow a run (``--wait`` …) and their values."""
    if not plan:
        given = "--check-targets" if check_targets else "--json"
        raise ConfigError(f"{given} goes with --plan (ferry deploy … --plan {given})")
    for option, value in conflicting.items():
        if value not in (None, False):
            raise ConfigError(f"--plan only shows what would happen: it does not go with {option}")
    if remote_client() is not None:
        raise ConfigError(f"--plan is not available in remote mode yet ({server_url()}): run it where ferry serve "
                          "keeps the store, or unset FERRY_SERVER")
    from flows.engine.plan import prepare
    from flows.engine.plan_view import describe, read_journals, render_text

    ctx = Workspace()
    with ctx.store.read() as conn:
        planned = prepare(conn, ctx.feed, ctx.vault, project=project, release=release, environment=environment,
                          targets=targets, exclude_targets=exclude_targets, skip_steps=skip_steps,
                          variables=variables, guided_failure=guided_failure, force=force)
        journals = read_journals(planned, ctx.settings.home) if check_targets else None
        doc = describe(conn, planned, journals=journals)
        conn.rollback()  # nothing was written; say so to the database too
    if as_json:
        print_json(doc)
    else:
        render_text(doc, say)
