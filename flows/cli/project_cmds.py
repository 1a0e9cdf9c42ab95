"""``ferry apply`` and ``ferry schema``."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

import typer

from flows.cli.output import print_json, say
from snapshots.workspace import Workspace

app = typer.Typer()
"""This module's commands; the root app in ``flows.cli.app`` merges them in."""


_KINDS = {"project": "project", "variable_set": "library variable set", "step_template": "step template"}
"""How ``ferry apply`` names each kind of document it stored."""


@app.command()
def apply(files: list[Path] = typer.Argument(..., help="project, infrastructure, library_variable_set and "
                                                        "step_template YAML files"),
          as_json: bool = typer.Option(False, "--json")) -> None:
    """Validate YAML files and store a new revision of each one that changed."""
    from snapshots.projects import apply as apply_files

    ctx = Workspace()
    with ctx.store.begin() as conn:
        results = apply_files(conn, files, ctx.vault, ctx.actor)
    for r in results:
        for warning in r.warnings:
            typer.echo(f"warning: {warning}", err=True)
    if as_json:
        print_json([r.__dict__ for r in results])
        return
    for r in results:
        what = "infrastructure" if r.kind == "infrastructure" else f"{_KINDS.get(r.kind, r.kind)} {r.name}"
        state = f"stored revision {r.revision}" if r.changed else f"unchanged (revision {r.revision})"
        say(f"{what}: {state}  ← {r.source}")


class SchemaKind(StrEnum):
    project = "project"
    infrastructure = "infrastructure"
    library_variable_set = "library-variable-set"
    step_template = "step-template"
    deployment_result = "deployment-result"


@app.command()
def schema(kind: SchemaKind = typer.Argument(..., metavar="KIND", show_choices=False, help=(
        "project, infrastructure, library-variable-set, step-template or deployment-result"))) -> None:
    """Print the JSON Schema of a project, infrastructure, library variable set or step template file (for
    editors), or of the deployment-result document `deploy --json` prints (for CI)."""
    if kind is SchemaKind.deployment_result:
        from flows.cli.result_schema import json_schema

        typer.echo(json.dumps(json_schema(), indent=2))
        return
    from pydantic import BaseModel

    from snapshots.model import Infrastructure, Project
    from snapshots.model.library import LibraryVariableSet, StepTemplate

    models: dict[SchemaKind, type[BaseModel]] = {  # the YAML files' models
        SchemaKind.project: Project, SchemaKind.infrastructure: Infrastructure,
        SchemaKind.library_variable_set: LibraryVariableSet, SchemaKind.step_template: StepTemplate}
    model = models[kind]
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"ferry {kind.value}"
    typer.echo(json.dumps(schema, indent=2))
