"""``ferry package push|list``: the built-in feed (through the ferry server API in remote mode)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from flows.cli.output import err_console, print_json, print_table, say
from flows.cli.remote import remote_client
from snapshots.workspace import Workspace

if TYPE_CHECKING:
    from flows.client import FerryClient

app = typer.Typer()
"""This module's commands; the root app in ``flows.cli.app`` merges them in."""

package_app = typer.Typer(no_args_is_help=True, help="The built-in package feed")
app.add_typer(package_app, name="package")


@package_app.command("push")
def push(files: list[Path] = typer.Argument(..., help="<Id>.<SemVer>.zip|.tar.gz|.nupkg"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Add package files to the feed (same bytes again: no-op; other bytes under a pushed version: refused)."""
    if (client := remote_client()) is not None:
        _push_remote(client, files, as_json)
        return
    ctx = Workspace()
    results = []
    for file in files:
        with ctx.store.begin() as conn:
            package, created = ctx.feed.push(conn, file, ctx.actor)
        results.append((package, created))
    if not as_json:
        for package, created in results:
            state = "pushed" if created else "already in the feed (same sha256)"
            say(f"{package.package_id} {package.version}: {state}  sha256 {package.sha256}  {package.size} bytes")
    # Projects with a create-release-on-push trigger for a newly pushed package get a release now (the
    # triggers load the recipe models and the engine: imported here, not when the CLI starts).
    from flows.orchestration.triggers import releases_on_push

    messages: list[str] = []
    errors = [e for package, created in results if created
              for e in releases_on_push(ctx, package.package_id, package.version, messages.append)]
    if as_json:
        print_json([{**p.as_dict(), "created": c} for p, c in results])
    else:
        for message in messages:
            say(message)
    if errors:
        for error in errors:
            err_console.print(f"error: {error}", markup=False)
        raise typer.Exit(1)


def _push_remote(client: FerryClient, files: list[Path], as_json: bool) -> None:
    """``package push`` through the ferry server: each file streamed with its sha256; the same lines and
    JSON as a local push (the server runs the create-release-on-push triggers)."""
    pushed = []
    messages: list[str] = []
    errors: list[str] = []
    for file in files:
        answer = client.push_package(file)
        pushed.append({"id": answer["package_id"], "version": answer["version"],
                       "filename": answer.get("filename", file.name), "size": answer["size"],
                       "sha256": answer["sha256"], "pushed_at": answer.get("pushed_at"),
                       "pushed_by": answer.get("pushed_by"), "created": answer["created"]})
        if not as_json:
            state = "pushed" if answer["created"] else "already in the feed (same sha256)"
            say(f"{answer['package_id']} {answer['version']}: {state}  sha256 {answer['sha256']}  "
                f"{answer['size']} bytes")
        messages += [str(m) for m in answer.get("releases") or []]
        errors += [str(e) for e in answer.get("errors") or []]
    if as_json:
        print_json(pushed)
    else:
        for message in messages:
            say(message)
    if errors:
        for error in errors:
            err_console.print(f"error: {error}", markup=False)
        raise typer.Exit(1)


@package_app.command("list")
def list_packages(package_id: str | None = typer.Argument(None, metavar="[ID]"),
                  feed_name: str | None = typer.Option(
                      None, "--feed", metavar="NAME",
                      help="Ask an external feed of the infrastructure (feeds:) which versions of ID it holds"),
                  as_json: bool = typer.Option(False, "--json")) -> None:
    """Packages in the feed, newest version first per id."""
    from snapshots.versions import sort_key  # semver: a quarter of a second, only for this command

    if feed_name is not None:
        _list_external(feed_name, package_id, as_json)
        return
    if (client := remote_client()) is not None:
        found = [{"id": p["package_id"], "version": p["version"], "filename": p.get("filename"), "size": p["size"],
                  "sha256": p["sha256"], "pushed_at": p.get("pushed_at"), "pushed_by": p.get("pushed_by")}
                 for p in client.list_packages(package_id)]
    else:
        ctx = Workspace()
        with ctx.store.read() as conn:
            found = [p.as_dict() for p in ctx.feed.list(conn, package_id)]
    found.sort(key=lambda p: (p["id"], sort_key(p["version"])), reverse=True)
    found.sort(key=lambda p: p["id"])
    if as_json:
        print_json(found)
        return
    print_table(None, ["id", "version", "size", "sha256", "pushed"],
                [(p["id"], p["version"], p["size"], p["sha256"][:16] + "…", p["pushed_at"]) for p in found])


def _list_external(feed_name: str, package_id: str | None, as_json: bool) -> None:
    """``package list ID --feed NAME``: the versions an external feed holds (asked live, with its credentials)."""
    from snapshots import release_feeds
    from snapshots.errors import ConfigError
    from snapshots.versions import sort_key

    if package_id is None:
        raise ConfigError("--feed needs a package ID: external feeds are asked for one package's versions")
    if remote_client() is not None:
        raise ConfigError("--feed asks the feed with the executor's credentials: run it where ferry serve runs")
    ctx = Workspace()
    with ctx.store.read() as conn:
        feeds = release_feeds.external_feeds(conn, ctx.feed, ctx.vault)
    found = [{"id": package_id, "version": v, "filename": name, "feed": feed_name}
             for v, name in sorted(feeds.versions(feed_name, package_id).items(), key=lambda kv: sort_key(kv[0]),
                                   reverse=True)]
    if as_json:
        print_json(found)
        return
    print_table(None, ["id", "version", "file", "feed"], [(p["id"], p["version"], p["filename"], p["feed"])
                                                          for p in found])
