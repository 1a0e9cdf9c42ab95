"""``plan-release/<project>``: the served deployment's plan mode (issue 14 item 6) — what a deployment of a release
to an environment would do, published as a markdown artifact in the Prefect UI, touching no target.

It runs the same ``prepare`` + ``describe`` as ``ferry deploy … --plan`` (``flows.engine.plan_view``): the store is
only read (no deployment record, no audit entry), no concurrency slot is taken, and no target is opened unless
``check_targets`` asks to read each one's journal. A refused plan (lifecycle, unknown target or step) fails the
run with the one-line reason, as ``--plan`` exits non-zero.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Literal

from prefect import Flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run as current_flow_run

from flows.engine.plan import prepare
from flows.engine.plan_view import describe, read_journals
from snapshots.workspace import Workspace

FLOW_NAME = "plan-release"


def plan_document(project: str, environment: str, release: str = "latest", *, targets: list[str] | None = None,
                  exclude_targets: list[str] | None = None, skip_steps: list[str] | None = None,
                  guided_failure: bool | None = None, force: bool = False,
                  check_targets: bool = False) -> dict[str, Any]:
    """The plan document, from a read-only look at the store (rolled back: nothing is written)."""
    ctx = Workspace()
    with ctx.store.read() as conn:
        planned = prepare(conn, ctx.feed, ctx.vault, project=project, release=release, environment=environment,
                          targets=targets or [], exclude_targets=exclude_targets or [], skip_steps=skip_steps or [],
                          variables={}, guided_failure=guided_failure, force=force,
                          report_freeze=True)  # a plan shows the freeze check; it does not refuse
        journals = read_journals(planned, ctx.settings.home) if check_targets else None
        doc = describe(conn, planned, journals=journals)
        conn.rollback()
    return doc


def _cell(text: Any) -> str:
    """Text safe inside a markdown table cell."""
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def plan_markdown(doc: dict[str, Any]) -> str:
    """The plan for the Prefect UI: the checks, then one table row per (unit, target, step), then the variables
    each target would get (already masked by ``describe``)."""
    life = doc["lifecycle"]
    lines = [f"# Plan: {doc['project']} {doc['release']} → {doc['environment']}", "",
             "_Nothing was deployed, recorded or changed on any target._", "",
             f"- **Lifecycle** {life['name']}: phase {life.get('phase')!r} ({life.get('phase_number')} of "
             f"{life.get('phases')}) — {life['reason']}",
             f"- **Guided failure** {'on' if doc['guided_failure'] else 'off'}; **force** "
             f"{'yes' if doc['force'] else 'no'}" + (f"; **skipped** {', '.join(doc['skip_steps'])}"
                                                   if doc["skip_steps"] else "")]
    freeze = doc.get("freeze")
    if freeze:
        lines.append(f"- **Freeze** {freeze['reason']}")
    lines.append(f"- **Targets** ({len(doc['targets'])}): "
                 + (", ".join(f"{t['name']} ({t['journal']['state']})" for t in doc["targets"]) or "none")
                 + (f"; left out: {', '.join(doc['left_out'])}" if doc["left_out"] else ""))
    lines += ["", "## Process", "", "| # | step | target | where | action | why |", "|---|---|---|---|---|---|"]
    for unit in doc["units"]:
        rolling = unit.get("rolling")
        how = unit["runs"] + (f"; window {rolling['window']}: {rolling['arithmetic']}" if rolling else "")
        lines.append(f"| {unit['number']} | **{_cell(unit['name'])}** | | | {_cell(unit['action'])} | "
                     f"{_cell(unit.get('reason') or how)} |")
        for row in unit.get("steps", []):
            lines.append(f"| | {_cell(row['step'])} | | {_cell(row.get('where'))} | {_cell(row['action'])} | "
                         f"{_cell(row.get('reason'))} |")
        for target in unit.get("targets", []):
            for row in target["steps"]:
                lines.append(f"| | {_cell(row['step'])} | {_cell(target['target'])} | {_cell(row['where'])} | "
                             f"{_cell(row['action'])} | {_cell(row.get('reason'))} |")
    lines += ["", "## Variables per target (sensitive values masked)", ""]
    for target, values in doc["variables"].items():
        lines += [f"### {target}", "", "| name | value |", "|---|---|"]
        lines += [f"| {_cell(name)} | {_cell(value)} |" for name, value in values.items()]
        lines.append("")
    return "\n".join(lines)


def _key(project: str, environment: str) -> str:
    """Prefect artifact keys are lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9]+", "-", f"ferry-{project}-{environment}-plan".lower()).strip("-")


def plan_flow(spec: Any, finish: Callable[..., Flow[..., Any]]) -> Flow[..., Any]:
    """``plan-release/<project>``: ``spec`` is the project's ``ProjectSpec``; ``finish`` gives the function the
    identity Prefect reads (``served_flows._finish``)."""
    project = spec.name

    def plan_release(environment: str, release: str = "latest", targets: list[str] | None = None,
                     exclude_targets: list[str] | None = None, skip_steps: list[str] | None = None,
                     guided_failure: bool | None = None, force: bool = False,
                     check_targets: bool = False) -> dict[str, Any]:
        doc = plan_document(project, environment, release, targets=targets, exclude_targets=exclude_targets,
                            skip_steps=skip_steps, guided_failure=guided_failure, force=force,
                            check_targets=check_targets)
        create_markdown_artifact(plan_markdown(doc), key=_key(project, environment),
                                 description=f"{project} {doc['release']} → {environment}: what a deployment "
                                             "would do (nothing was changed)")
        steps = sum(len(t["steps"]) for u in doc["units"] for t in u.get("targets", []))
        get_run_logger().info(f"plan of {project} {doc['release']} → {environment}: {len(doc['units'])} process "
                              f"item(s), {len(doc['targets'])} target(s), {steps} step run(s) planned; nothing "
                              "was deployed")
        return doc

    def run_name() -> str:
        params = current_flow_run.parameters
        return f"{project} plan {params.get('release', 'latest')} → {params.get('environment')}"

    doc = f"""Show what deploying a release of {project} to an environment would do, touching nothing.

    Args:
        environment: The environment the deployment would go to.
        release: A release version such as 1.4.0, or "latest".
        targets: Plan only these targets (default: every target of the environment).
        exclude_targets: Leave these targets out.
        skip_steps: Steps that would be skipped.
        guided_failure: Whether failures would pause for a person. Empty: the environment's setting.
        force: Plan a redeployment to targets already at this release.
        check_targets: Open each target to read its journal (which steps it would skip); nothing is changed.
    """
    annotations = {"environment": Literal[spec.environments], "release": str, "targets": list[str] | None,
                   "exclude_targets": list[str] | None, "skip_steps": list[str] | None,
                   "guided_failure": bool | None, "force": bool, "check_targets": bool, "return": Any}
    return finish(plan_release, "plan_release", spec, annotations, doc, run_name,
                  f"What a deployment of {project} would do, as a plan artifact; touches no target (ferry).")
