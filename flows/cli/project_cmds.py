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


@app.command()
def apply(files: list[Path] = typer.Argument(..., help="project and/or infrastructure YAML files"),
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
        what = "infrastructure" if r.kind == "infrastructure" else f"project {r.name}"
        state = f"stored revision {r.revision}" if r.changed else f"unchanged (revision {r.revision})"
        say(f"{what}: {state}  ← {r.source}")


class SchemaKind(StrEnum):
    project = "project"
    infrastructure = "infrastructure"


@app.command()
def schema(kind: SchemaKind) -> None:
    """Print the JSON Schema of a project or infrastructure file (for editors)."""
    from snapshots.model import Infrastructure, Project

    model = Project if kind is SchemaKind.project else Infrastructure
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"ferry {kind.value}"
    typer.echo(json.dumps(schema, indent=2))
