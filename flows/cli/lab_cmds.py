"""``ferry lab up|down|status``: the local lab of SSH targets behind HAProxy, for the demo and tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from flows.cli.output import print_json, print_table, say

if TYPE_CHECKING:
    from flows.lab import Lab

app = typer.Typer()
"""This module's commands; the root app in ``flows.cli.app`` merges them in."""

lab_app = typer.Typer(no_args_is_help=True, help="The local lab: SSH targets and HAProxy on loopback addresses")
app.add_typer(lab_app, name="lab")


def _lab() -> Lab:
    from flows.lab import Lab  # the lab's modules load only for `ferry lab`

    return Lab()


def _show(status: dict[str, Any]) -> None:
    if not status.get("targets"):
        say(f"the lab is not running ({status['lab_dir']}); start it with `ferry lab up`")
        return
    print_table(None, ["target", "environment", "ssh", "app", "sshd", "balancer", "host key"],
                [(t["name"], t["environment"], f"{t['address']}:{t['ssh_port']}", t["app_url"], t["state"],
                  t["balancer_status"], t["fingerprint"]) for t in status["targets"]])
    haproxy = status["haproxy"]
    say(f"balancer     {status['balancer_url']}  (HAProxy {haproxy['state']}, backend {haproxy['backend']})")
    say(f"runtime API  {haproxy['api']}  {haproxy['socket']}")
    say(f"login        ssh -i {status['key_file']} -o UserKnownHostsFile={status['known_hosts']} "
        f"{status['user']}@{status['targets'][0]['address']}"
        + (f" -p {status['targets'][0]['ssh_port']}" if status["targets"][0]["ssh_port"] != 22 else ""))
    say(f"targets      {status['infrastructure']}  (host keys pinned; app roots: /srv on each target)")


@lab_app.command("up")
def up(targets: int = typer.Option(7, "--targets", "-n", help="How many SSH targets (the sample uses 7)"),
       network: str = typer.Option("127.0.0", help="Loopback /24 to use: balancer on .1, targets from .2"),
       ssh_port: int = typer.Option(22, help="Port every target's sshd listens on"),
       as_json: bool = typer.Option(False, "--json")) -> None:
    """Start the lab (or complete a running one): N sshd targets, one HAProxy, keys and infrastructure.yaml."""
    status = _lab().up(targets, network=network, ssh_port=ssh_port)
    if as_json:
        print_json(status)
        return
    changed = status.get("changed") or []
    say("lab started: " + ", ".join(changed) if changed else "lab already up: nothing to start")
    _show(status)
    say("stop it with `ferry lab down`")


@lab_app.command("down")
def down(as_json: bool = typer.Option(False, "--json")) -> None:
    """Stop every lab process (and what deployments started on the targets) and remove the lab's files."""
    result = _lab().down()
    if as_json:
        print_json(result)
        return
    if result["stopped"] or result.get("killed_processes"):
        say(f"lab stopped: {', '.join(result['stopped'])} ({result.get('killed_processes', 0)} processes)")
    else:
        say("the lab was not running")
    if result.get("prefect_server_stopped"):
        say(f"local Prefect server stopped (pid {result['prefect_server_stopped']})")


@lab_app.command("status")
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """What runs where: balancer URL, runtime API, and each target's address, app URL and state."""
    result = _lab().status()
    if as_json:
        print_json(result)
        return
    _show(result)
