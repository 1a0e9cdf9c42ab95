"""``ferry api-key create|list|revoke``: scoped keys for requesters of the ferry server API (run on the
executor: it holds the store)."""

from __future__ import annotations

import typer

from flows.cli.output import print_json, print_table, say
from snapshots.workspace import Workspace

app = typer.Typer()
"""This module's commands; the root app in ``flows.cli.app`` merges them in."""

api_key_app = typer.Typer(no_args_is_help=True, help="API keys for CI and people who talk to the ferry server API")
app.add_typer(api_key_app, name="api-key")


def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


@api_key_app.command("create")
def create(name: str,
           project: list[str] = typer.Option(..., "--project", help="A project it may use ('*': all); repeat"),
           environment: list[str] = typer.Option(..., "--environment",
                                                 help="An environment it may deploy to / answer in ('*': all); "
                                                      "repeat"),
           can: str = typer.Option(..., "--can", help="What it may do: push,release,deploy,answer (reading is "
                                                      "always allowed within its projects)"),
           expires: float | None = typer.Option(None, "--expires", help="Expire after DAYS"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Create a key and print it once: the store keeps only a hash, so copy it now (e.g. into a CI secret)."""
    from snapshots.store import api_keys

    ctx = Workspace()
    actions = api_keys.parse_actions(can)
    with ctx.store.begin() as conn:
        key, text = api_keys.create(conn, name, projects=_split(project), environments=_split(environment),
                                    actions=actions, actor=ctx.actor, expires_days=expires)
    if as_json:
        print_json({**key.as_dict(), "key": text})
        return
    say(f"api key {key.name!r} created: projects {', '.join(key.projects)}; environments "
        f"{', '.join(key.environments)}; may {', '.join(key.actions)}"
        + (f"; expires {key.expires_at}" if key.expires_at else ""))
    say("the key (shown only now; give it to the requester as FERRY_API_KEY):")
    say(text)


@api_key_app.command("list")
def list_keys(include_revoked: bool = typer.Option(False, "--all", help="Also revoked keys"),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Keys with their scopes and state (never their secrets)."""
    from snapshots.store import api_keys

    ctx = Workspace()
    with ctx.store.read() as conn:
        found = api_keys.list_keys(conn, include_revoked=include_revoked)
    if as_json:
        print_json([k.as_dict() for k in found])
        return
    print_table(None, ["name", "id", "projects", "environments", "may", "state", "created", "by", "expires"],
                [(k.name, k.key_id, ",".join(k.projects), ",".join(k.environments), ",".join(k.actions), k.state,
                  k.created_at, k.created_by, k.expires_at or "never") for k in found])


@api_key_app.command("expire")
def expire(name: str, days: float = typer.Option(0, "--in", min=0, help="Expire in DAYS (default: now)"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Set when a key expires (now by default): after that it is refused (401) but still listed."""
    from datetime import UTC, datetime, timedelta

    from snapshots.store import api_keys

    when = (datetime.now(UTC) + timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ctx = Workspace()
    with ctx.store.begin() as conn:
        key = api_keys.expire(conn, name, ctx.actor, when)
    if as_json:
        print_json(key.as_dict())
        return
    say(f"api key {key.name!r} ({key.key_id}) expires {key.expires_at}")


@api_key_app.command("revoke")
def revoke(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Revoke a key: every request with it is refused (401) from now on."""
    from snapshots.store import api_keys

    ctx = Workspace()
    with ctx.store.begin() as conn:
        key = api_keys.revoke(conn, name, ctx.actor)
    if as_json:
        print_json(key.as_dict())
        return
    say(f"api key {key.name!r} ({key.key_id}) revoked")
