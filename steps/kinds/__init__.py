"""Step kinds: the function that runs each ``kind`` on one target."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from snapshots.errors import StepFailed
from steps.context import StepContext

# kind → module in steps.kinds with a ``run(ctx)`` function
_MODULES = {
    "script": "script",
    "package": "package",
    "load-balancer": "load_balancer",
    "http-check": "http_check",
    "iis-website": "iis_website",
    "windows-service": "windows_service",
    "systemd-service": "systemd_service",
}


def executor(kind: str) -> Callable[[StepContext], None]:
    """The ``run`` function for a step kind (``manual`` steps are handled by the flow: they pause it)."""
    module_name = _MODULES.get(kind)
    if module_name is None:
        raise StepFailed(f"step kind {kind!r} is not run on targets", step=kind)
    try:
        module = importlib.import_module(f"steps.kinds.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"steps.kinds.{module_name}":
            raise
        raise StepFailed(f"step kind {kind!r} is not available in this ferry build", step=kind) from exc
    return module.run
