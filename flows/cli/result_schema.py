"""The ``deployment-result`` document (``flows.cli.json_result``) as pydantic models: ``ferry schema
deployment-result`` prints its JSON Schema, and the tests validate the documents the CLI prints against it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class StepOutcome(BaseModel):
    """One (step, target) result of a deployment, as recorded."""

    model_config = ConfigDict(extra="forbid")
    step: str
    target: str | None = Field(description="None for a step that runs once, not per target")
    state: str = Field(description="success, failed, skipped, … as recorded")
    attempts: int | None = None
    message: str | None = Field(description="What happened; sensitive values are masked")
    started_at: str | None = None
    finished_at: str | None = None


class DeploymentOutcome(BaseModel):
    """One deployment the command started."""

    model_config = ConfigDict(extra="forbid")
    deployment_id: int
    kind: str = Field(description="deployment (or runbook)")
    project: str | None
    release: str | None
    environment: str | None
    state: str | None = Field(description="Queued, Running, Paused, Success, Failed, Cancelled")
    error: str | None
    created_by: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    flow_run_id: str | None
    flow_run_url: str | None
    log: str = Field(description="The log file's path, or the command that prints the log")
    results: list[StepOutcome]


class DeploymentResult(BaseModel):
    """What ``deploy``/``promote``/``rollback``/``release create --deploy-to`` print on stdout with ``--json``."""

    model_config = ConfigDict(extra="forbid", title="ferry deployment-result")
    schema_: Literal["ferry/v1"] = Field(alias="schema")
    kind: Literal["deployment-result"]
    command: str = Field(description="deploy, promote, rollback or release create")
    waited: bool = Field(description="--wait (or --timeout): the document reports the end, else the start")
    outcome: Literal["succeeded", "started", "failed", "cancelled", "refused", "timed_out", "error"]
    exit_code: int = Field(description="0 succeeded/started, 1 failed or cancelled, 3 refused before start, "
                                       "124 --timeout passed")
    exit_meaning: str
    error: str | None = Field(description="The one-line error (also on stderr), or the failed deployment's")
    deployments: list[DeploymentOutcome]
    release: dict[str, Any] | None = Field(default=None, description="release create: the release's document")


def json_schema() -> dict[str, Any]:
    schema = DeploymentResult.model_json_schema(mode="validation", by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
