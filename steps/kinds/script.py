"""The ``script`` step: run an inline bash (or, on Windows targets, PowerShell) script.

The script text is sent as written, except that Octostache's escape ``##{`` becomes ``#{`` (``ferry apply``
refuses a bare ``#{...}`` in a script body: it is never substituted there). Variables reach it as data:
``ferry_var NAME`` (or Octopus's ``get_octopusvariable NAME``) reads a value from the JSON document in
``$FERRY_DATA``; the step's ``parameters`` (templates rendered per target) become environment variables.
"""

from __future__ import annotations

import re

from snapshots.errors import StepFailed
from steps.context import StepContext

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def unescape(script: str) -> str:
    """``##{`` → ``#{`` (each run of ``#`` before ``{`` halved, the inverse of ``octostache.escape``), so a script
    that needs a literal ``#{`` (Ruby or CoffeeScript interpolation) writes ``##{`` as in Octopus."""
    return re.sub(r"#{2,}(?=\{)", lambda m: m.group(0)[: len(m.group(0)) // 2], script)


def run(ctx: StepContext) -> None:
    step = ctx.step
    params = {name: ctx.render(value, f"{ctx.where} parameter {name}") for name, value in step.parameters.items()}
    env = {name: value for name, value in params.items() if _ENV_NAME.match(name)}
    data = {"variables": ctx.evaluated_variables(), "parameters": params}
    result = ctx.transport.run(unescape(step.script), env=env, data=data, timeout=step.timeout, on_line=ctx.log)
    if not result.ok:
        raise StepFailed("script failed", step=step.name, target=ctx.target_name, exit_code=result.exit_code,
                         output_tail=result.output_tail)
