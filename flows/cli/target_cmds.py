"""``ferry target trust NAME``: record a target's SSH host key after a person has checked its fingerprint."""

from __future__ import annotations

import typer

from flows.cli.output import print_json, say
from snapshots.errors import ConfigError, NotFoundError
from snapshots.workspace import Workspace

app = typer.Typer()
"""This module's commands; the root app in ``flows.cli.app`` merges them in."""

target_app = typer.Typer(no_args_is_help=True, help="Deployment targets")
app.add_typer(target_app, name="target")


@target_app.command("trust")
def trust(name: str = typer.Argument(..., help="Target name from the applied infrastructure"),
          yes: bool = typer.Option(False, "--yes", "-y", help="Record the key without asking"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Connect to the target, show its host key's SHA256 fingerprint and record it in FERRY_HOME/known_hosts.

    Nothing is trusted on first use by a deployment: an unknown key is refused until it is recorded here (or
    pinned as ``host_key`` in the target)."""
    from snapshots.model.infrastructure import SshTransport as SshSpec
    from snapshots.projects import require_infrastructure
    from steps.transports.ssh import KnownHosts, fingerprint, host_key_line, parse_host_key, scan_host_key

    ctx = Workspace()
    with ctx.store.read() as conn:
        infra = require_infrastructure(conn)
    target = next((t for t in infra.targets if t.name == name), None)
    if target is None:
        known = ", ".join(t.name for t in infra.targets) or "none"
        raise NotFoundError(f"no target named {name!r} in the applied infrastructure (targets: {known})")
    spec = target.transport
    if not isinstance(spec, SshSpec):
        raise ConfigError(f"target {name} uses {spec.kind}: only SSH targets have host keys to trust")
    key = scan_host_key(spec.host, spec.port, timeout=float(spec.connect_timeout), target=name)
    known_hosts = KnownHosts(ctx.settings.home / "known_hosts")
    recorded = known_hosts.lookup(spec.host, spec.port)
    pinned = parse_host_key(spec.host_key) if spec.host_key else None
    info = {"target": name, "host": spec.host, "port": spec.port, "key_type": key.get_name(),
            "fingerprint": fingerprint(key), "host_key": host_key_line(key), "known_hosts": str(known_hosts.path),
            "previously_recorded": [fingerprint(k) for k in recorded], "recorded": False}
    where = f"{spec.host}:{spec.port}"
    if not as_json:
        say(f"{name} ({where}) presents a {key.get_name()} host key")
        say(f"  fingerprint {fingerprint(key)}")
    if pinned is not None and pinned.asbytes() != key.asbytes():
        say(f"  WARNING: the target pins a different key in infrastructure.yaml ({fingerprint(pinned)}); "
            "the pin wins, so deployments will still refuse this server")
    if any(k.asbytes() == key.asbytes() for k in recorded):
        info["recorded"] = True
        if as_json:
            print_json({**info, "already_trusted": True})
        else:
            say("already trusted: nothing to do")
        return
    if recorded and not as_json:
        say(f"  WARNING: the key CHANGED — recorded before: {', '.join(fingerprint(k) for k in recorded)}. "
            "Make sure the server was really reinstalled before trusting the new key.")
    if not yes and not typer.confirm("Compare the fingerprint with the server's (ssh-keygen -lf on it). "
                                     "Trust this key?", default=False):
        raise typer.Abort()
    known_hosts.add(spec.host, spec.port, key)
    info["recorded"] = True
    if as_json:
        print_json({**info, "already_trusted": False})
    else:
        say(f"recorded in {known_hosts.path}")
