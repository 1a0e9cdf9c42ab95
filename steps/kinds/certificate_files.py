"""Certificates as PEM files on a Linux target (issue 15 item 4): the package step's ``certificates:`` field.

``<path>/<name>.crt`` holds the certificate and its chain, ``<path>/<name>.key`` the private key; both are
written with mode 0600 set before any byte lands (the transport's ``write_file(mode=)``), replaced atomically.
The certificates come decrypted in ``ctx.shared["certificates"]`` (the deploy flow loaded them and refused an
expired one before touching any target); the key never reaches a log line (the run's masker holds it).
"""

from __future__ import annotations

import posixpath
from typing import Any

from snapshots.errors import StepFailed
from steps.context import StepContext

MODE = 0o600


def deploy_certificate_files(ctx: StepContext) -> None:
    entries = getattr(ctx.step, "certificates", None) or []
    if not entries:
        return
    available: dict[str, Any] = ctx.shared.get("certificates") or {}
    for entry in entries:
        cert = available.get(entry.name)
        if cert is None:
            raise StepFailed(f"certificate {entry.name!r} was not loaded for this deployment", step=ctx.step.name,
                             target=ctx.target_name)
        folder = ctx.render(entry.path, f"{ctx.where} certificates path").strip().rstrip("/")
        if not folder.startswith("/") or "\n" in folder or ".." in folder.split("/"):
            raise StepFailed(f"certificate path {folder!r} is not an absolute folder", step=ctx.step.name,
                             target=ctx.target_name)
        crt, key = posixpath.join(folder, f"{entry.name}.crt"), posixpath.join(folder, f"{entry.name}.key")
        ctx.transport.write_file(crt, cert.chain_pem.encode(), mode=MODE)
        if cert.key_pem:
            ctx.transport.write_file(key, cert.key_pem.encode(), mode=MODE)
        ctx.log(f"certificate {entry.name} ({cert.info.subject}, thumbprint {cert.info.thumbprint}, expires "
                f"{cert.info.not_after:%Y-%m-%d}) written to {crt}" + (f" and {key}" if cert.key_pem else "")
                + " (mode 0600)")
