"""``ferry serve``: the long-running process behind the Prefect UI form, the REST API, schedules and
auto-deploys."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from flows.cli.output import say
from flows.orchestration.served_runs import api_url
from snapshots.errors import ConfigError

app = typer.Typer()
"""This module's commands; the root app in ``flows.cli.app`` merges them in."""


@app.command()
def serve(project: list[str] = typer.Option([], "--project", help="Serve only these projects (default: all)"),
          work_pool: str | None = typer.Option(None, "--work-pool",
                                               help="Register on this process work pool for `prefect worker "
                                                    "start` instead of running the flows here"),
          limit: int = typer.Option(5, "--limit", min=1, help="Flow runs at once in this process"),
          poll: float = typer.Option(0.2, "--poll-seconds", min=0.1, help="How often to ask for new runs"),
          sync: float = typer.Option(10.0, "--sync-seconds", min=1,
                                     help="How often to pick up applied projects and cancel expired runs"),
          warm: int = typer.Option(1, "--warm", min=0, help="Pre-started interpreters (faster run start)"),
          once: bool = typer.Option(False, "--once", help="Register deployments and schedules, then exit"),
          api_host: str = typer.Option("127.0.0.1", "--api-host", help="Address of the ferry server API"),
          api_port: int = typer.Option(4280, "--api-port", min=0, max=65535, help="Port of the ferry server API"),
          tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Serve the API over HTTPS: certificate "
                                                                        "(PEM, with its chain)"),
          tls_key: Path | None = typer.Option(None, "--tls-key", help="... and its private key (PEM)"),
          insecure_http: bool = typer.Option(False, "--insecure-http",
                                             help="Allow plain HTTP on a non-loopback --api-host (behind a TLS "
                                                  "proxy only)"),
          no_api: bool = typer.Option(False, "--no-api", help="Do not serve the ferry server API")) -> None:
    """Register each project's Prefect deployments (deploy-release, promote, rollback, create-release) and
    its triggers as schedules, then run them: needs a Prefect server (PREFECT_API_URL). Also serves the
    ferry server API for requesters holding an API key (`ferry api-key create`)."""
    from flows.orchestration.serving import ServeOptions, run  # Prefect and the served flows: only for serve

    if not api_url():
        raise ConfigError("ferry serve needs a Prefect server: start one (`prefect server start`) and set "
                          "PREFECT_API_URL, e.g. http://127.0.0.1:4200/api")
    api = None
    if not no_api and not once:
        from flows.server.app import ApiOptions, ApiServer

        api = ApiServer(ApiOptions(api_host, api_port, tls_cert, tls_key, insecure_http))
    options = ServeOptions(projects=list(project) or None, work_pool=work_pool, limit=limit, poll_seconds=poll,
                           sync_seconds=sync, warm=warm, once=once, api=api)
    try:
        asyncio.run(run(options, say))
    except KeyboardInterrupt:
        say("stopped")
