"""Every field a person writes in YAML is described in `ferry schema` (issue 14): the generated JSON Schemas of
every document kind are walked, and any property without a description fails the test, naming it — so a field
added later without ``Field(description=...)`` is caught here."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from snapshots.model import Infrastructure, Project
from snapshots.model.library import LibraryVariableSet, StepTemplate

DOCUMENTS: dict[str, type[BaseModel]] = {"project": Project, "infrastructure": Infrastructure,
                                         "library-variable-set": LibraryVariableSet, "step-template": StepTemplate}


def undescribed(schema: dict[str, Any]) -> list[str]:
    """``Model.field`` for each property, in the document and in every definition it uses, with no description."""
    missing = []
    places = [("(document)", schema), *schema.get("$defs", {}).items()]
    for owner, definition in places:
        for name, prop in (definition.get("properties") or {}).items():
            if not str(prop.get("description") or "").strip():
                missing.append(f"{definition.get('title', owner)}.{name}")
    return sorted(set(missing))


@pytest.mark.parametrize("kind", DOCUMENTS)
def test_every_field_has_a_description(kind: str) -> None:
    missing = undescribed(DOCUMENTS[kind].model_json_schema(mode="validation"))
    assert not missing, f"ferry schema {kind}: fields without Field(description=...): {', '.join(missing)}"


def test_the_walk_finds_a_field_without_description() -> None:
    class Thing(BaseModel):
        described: int = 0

    schema = Thing.model_json_schema()
    schema["properties"]["described"]["description"] = "yes"
    schema["$defs"] = {"Inner": {"title": "Inner", "properties": {"bare": {"type": "string"}}}}
    assert undescribed(schema) == ["Inner.bare"]


@pytest.mark.parametrize("kind", DOCUMENTS)
def test_ferry_schema_prints_each_document_kind_fully_described(kind: str) -> None:
    from flows.cli.app import app

    result = CliRunner().invoke(app, ["schema", kind])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema["title"] == f"ferry {kind}" and undescribed(schema) == []
