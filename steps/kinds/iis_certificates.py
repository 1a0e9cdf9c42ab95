"""Certificates for the ``iis-website`` step (issue 15 item 4): a binding's ``certificate: NAME`` becomes its
thumbprint, and before ``iis-deploy.ps1`` runs, ``certificate-import.ps1`` imports each such certificate into
``Cert:\\LocalMachine\\My`` and grants the app pool's identity read on its private key.

The certificate travels as a PKCS#12 blob under a one-off random password, both as *data* in the request over
the WinRM transport's encrypted channel (never spliced into script text); the password and the blob are added to
nothing that is logged. What the WS-Management stand-in proves and what only Windows can: see the README.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

from snapshots.errors import StepFailed
from steps.context import StepContext
from steps.transports.winrm import load_script

SCRIPT = "certificate-import.ps1"
SCRIPTS = Path(__file__).resolve().parent / "powershell"


def _certificate(ctx: StepContext, name: str) -> Any:
    cert = (ctx.shared.get("certificates") or {}).get(name)
    if cert is None:
        raise StepFailed(f"certificate {name!r} was not loaded for this deployment", step=ctx.step.name,
                         target=ctx.target_name)
    return cert


def binding_certificates(ctx: StepContext) -> list[str]:
    site = getattr(ctx.step, "site", None)
    return [b.certificate for b in (site.bindings if site else []) if b.certificate]


def thumbprint_of(ctx: StepContext, name: str) -> str:
    return str(_certificate(ctx, name).info.thumbprint)


def pool_account(ctx: StepContext) -> str:
    """The Windows account the app pool runs as, which must read the private key ('' when none needs to:
    LocalSystem, or no app pool)."""
    pool = getattr(ctx.step, "app_pool", None)
    if pool is None or pool.identity == "LocalSystem":
        return ""
    if pool.identity == "ApplicationPoolIdentity":
        return "IIS AppPool\\" + ctx.render(pool.name, f"{ctx.where} app_pool.name")
    if pool.identity == "SpecificUser":
        return ctx.render(pool.username or "", f"{ctx.where} app_pool.username")
    return {"NetworkService": "NT AUTHORITY\\NETWORK SERVICE", "LocalService": "NT AUTHORITY\\LOCAL SERVICE"}[
        pool.identity]


def import_certificates(ctx: StepContext) -> None:
    """Import every certificate the step's bindings name; nothing to do when they name none."""
    names = sorted(set(binding_certificates(ctx)))
    invoke: Callable[..., Any] | None = getattr(ctx.transport, "invoke", None)
    if not names or invoke is None:
        return
    items = []
    for name in names:
        cert = _certificate(ctx, name)
        if not cert.key_pem:
            raise StepFailed(f"certificate {name!r} has no private key: an HTTPS binding needs one",
                             step=ctx.step.name, target=ctx.target_name)
        blob, password = cert.pfx()
        items.append({"Name": name, "Thumbprint": cert.info.thumbprint,
                      "Pfx": base64.b64encode(blob).decode("ascii"), "Password": password})
    account = pool_account(ctx)
    result, lines = invoke(load_script(SCRIPT, SCRIPTS), parameters={"Certificates": items, "Account": account},
                           timeout=300)
    if not result.ok:
        errors = [line[len("ERROR: "):] for line in result.output_tail if line.startswith("ERROR: ")]
        raise StepFailed(f"certificate import failed: {errors[0] if errors else 'certificate-import.ps1 failed'}",
                         step=ctx.step.name, target=ctx.target_name, exit_code=result.exit_code)
    for line in lines:
        if line.startswith("##ferry-certificate "):
            what, thumbprint, *who = line.split(" ", 3)[1:]
            name = next((n for n in names if thumbprint_of(ctx, n) == thumbprint), thumbprint)
            ctx.log({"imported": f"certificate {name} ({thumbprint}) imported into Cert:\\LocalMachine\\My",
                     "present": f"certificate {name} ({thumbprint}) is already in Cert:\\LocalMachine\\My",
                     "granted": f"granted {' '.join(who)} read on the private key of {name}"}.get(what, line))
