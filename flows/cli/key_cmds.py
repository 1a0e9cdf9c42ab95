"""``ferry key rotate``: a new master key for the store, every secret re-encrypted under it."""

from __future__ import annotations

import base64

import typer

from flows.cli.output import print_json, say
from snapshots.workspace import Workspace

app = typer.Typer()
"""This module's commands; the root app in ``flows.cli.app`` merges them in."""

key_app = typer.Typer(no_args_is_help=True, help="The master key (executor only)")
app.add_typer(key_app, name="key")


@key_app.command("rotate")
def rotate(as_json: bool = typer.Option(False, "--json")) -> None:
    """Re-encrypt every secret under a new master key as new revisions, re-sign every release, record the new
    key's fingerprint, and keep the old key as master.key.<fingerprint>.retired (old revisions stay readable
    until you delete it)."""
    from snapshots.keys import rotate as rotate_key
    from snapshots.store.crypto import short

    ctx = Workspace()
    done = rotate_key(ctx.store, ctx.settings.key_file, ctx.actor)
    new_key = base64.urlsafe_b64encode(done.new_key).decode("ascii") if done.from_env else None
    if as_json:
        print_json({"old": short(done.old), "new": short(done.new), "key_file": str(done.key_file),
                    "retired_key_file": str(done.retired_file), "projects": done.projects,
                    "variable_snapshots": done.variable_snapshots, "releases": done.releases,
                    "new_master_key": new_key})
        return
    say(f"master key rotated: {short(done.old)} → {short(done.new)}; {done.projects} project(s) and "
        f"{done.variable_snapshots} release variable snapshot(s) re-encrypted as new revisions, "
        f"{done.releases} release(s) re-signed")
    say(f"new key written to {done.key_file} (0600); the old key is kept as {done.retired_file} — delete it "
        "to retire the old key (revisions encrypted under it then become unreadable)")
    if new_key is not None:
        say(f"FERRY_MASTER_KEY was used: set it to the new key now, wherever the executor runs (ferry serve, "
            f"workers); commands with the old value are refused. New key (shown once): {new_key}")
