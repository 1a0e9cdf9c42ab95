"""``ferry cert list``: the certificates of the applied infrastructure — subject, thumbprint, expiry — never
their keys (issue 15 item 4)."""

from __future__ import annotations

import typer

from flows.cli.output import print_json, print_table
from snapshots.workspace import Workspace

app = typer.Typer()
"""This module's commands; the root app in ``flows.cli.app`` merges them in."""

cert_app = typer.Typer(no_args_is_help=True, help="Certificates (infrastructure certificates:)")
app.add_typer(cert_app, name="cert")


@cert_app.command("list")
def list_certificates(as_json: bool = typer.Option(False, "--json")) -> None:
    """Each certificate: subject, SHA-1 thumbprint (as Windows shows it), not-after and days left."""
    from snapshots import certificates
    from snapshots.projects import require_infrastructure

    ctx = Workspace()
    with ctx.store.read() as conn:
        infra = require_infrastructure(conn)
        found = certificates.listing(conn, [c.name for c in infra.certificates])
    rows = [c.as_dict() for c in found]
    if as_json:
        print_json(rows)
        return
    print_table(None, ["name", "subject", "thumbprint", "not after", "days left"],
                [(r["name"], r["subject"], r["thumbprint"], r["not_after"],
                  f"{r['days_left']}" + (" EXPIRED" if r["days_left"] < 0 else
                                         " (renew soon)" if r["days_left"] <= 30 else ""))
                 for r in rows])
