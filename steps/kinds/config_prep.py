"""Preparing a package's configuration on the worker, shared by the package and iis-website steps: Octopus's order
of ``#{...}`` substitution in files, then XDT transforms, then structured variables."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path
from typing import Any

from snapshots.variables import transforms
from snapshots.variables.configfiles import apply_to_directory
from steps.context import StepContext


def archive_names(archive: Path) -> list[str]:
    """The package's file names ('/' paths) read from the archive on the worker, without extracting it: enough to
    plan the transforms (a step with none to run then costs no round trip to the target)."""
    if archive.name.lower().endswith((".zip", ".nupkg")):
        with zipfile.ZipFile(archive) as package:
            return [n for n in package.namelist() if not n.endswith("/")]
    with tarfile.open(archive) as package:
        return [m.name.removeprefix("./") for m in package.getmembers() if m.isfile()]


def wants_transforms(ctx: StepContext) -> bool:
    return bool(getattr(ctx.step, "transforms", None) or getattr(ctx.step, "automatic_transforms", False))


def transform_entries(ctx: StepContext) -> list[tuple[str, bool]]:
    """The step's ``transforms:`` with their ``#{...}`` rendered for this target."""
    entries: list[Any] = list(getattr(ctx.step, "transforms", []) or [])
    return [(ctx.render(e.transform, f"{ctx.where} transforms[{i}]"), e.optional) for i, e in enumerate(entries)]


def transform_plan(ctx: StepContext, files: list[str]) -> list[transforms.Pair]:
    """Which transforms run, from the package's file list (raises one line for a missing required file)."""
    return transforms.plan(files, ctx.environment, transform_entries(ctx),
                           automatic=bool(getattr(ctx.step, "automatic_transforms", False)))


def prepare(ctx: StepContext, root: Path, pairs: list[transforms.Pair], *, variables: Any) -> list[str]:
    """Substitute, transform, set structured variables — in memory per phase, each phase written atomically."""
    step: Any = ctx.step
    files, structured = list(step.substitute.files), list(step.substitute.structured)
    report: list[str] = []
    if files:
        report += apply_to_directory(root, substitute_globs=files, structured_globs=[], variables=variables,
                                     render=ctx.render)
    if pairs:
        report += [f"transform: {line}" for line in transforms.apply(root, pairs)]
    if structured:
        report += apply_to_directory(root, substitute_globs=[], structured_globs=structured, variables=variables,
                                     render=ctx.render)
    return report
