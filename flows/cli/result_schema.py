"""The ``deployment-result`` document (``flows.cli.json_result``) as pydantic models: ``ferry schema
deployment-result`` prints its JSON Schema, and the tests validate the documents the CLI prints against it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class StepOutcome(BaseModel):
    """One (step, target) result of a deployment, as recorded."""

    model_config = ConfigDict(extra="forbid")
    step: str = Field(description="The step's name")
    target: str | None = Field(description="None for a step that runs once, not per target")
    state: str = Field(description="success, failed, skipped, … as recorded")
    attempts: int | None = Field(default=None, description="How many times it ran (retries count)")
    message: str | None = Field(description="What happened; sensitive values are masked")
    started_at: str | None = Field(default=None, description="ISO 8601, UTC")
    finished_at: str | None = Field(default=None, description="ISO 8601, UTC")


class DeploymentOutcome(BaseModel):
    """One deployment the command started."""

    model_config = ConfigDict(extra="forbid")
    deployment_id: int = Field(description="`ferry deployment show ID` shows it")
    kind: str = Field(description="deployment, or runbook for a runbook run")
    project: str | None = Field(description="The project's name")
    release: str | None = Field(description="The release's version (a runbook run: its snapshot)")
    environment: str | None = Field(description="The environment deployed to")
    state: str | None = Field(description="Queued, Running, Paused, Success, Failed, Cancelled")
    no_change: bool = Field(default=False, description="Success that ran nothing: every target already had the "
                                                       "release (--force redeploys)")
    error: str | None = Field(description="Why it failed or was cancelled, one line")
    created_by: str | None = Field(description="Who started it (a user, or key:NAME through the ferry server)")
    created_at: str | None = Field(description="When it was recorded (ISO 8601, UTC)")
    started_at: str | None = Field(description="When it started running (ISO 8601, UTC)")
    finished_at: str | None = Field(description="When it ended (ISO 8601, UTC); None while it runs")
    flow_run_id: str | None = Field(description="Its Prefect flow run")
    flow_run_url: str | None = Field(description="The flow run in the Prefect UI, when its URL is known")
    log: str = Field(description="The log file's path, or the command that prints the log")
    results: list[StepOutcome] = Field(description="Per step and target, as recorded so far")


class DeploymentResult(BaseModel):
    """What ``deploy``/``promote``/``rollback``/``release create --deploy-to`` print on stdout with ``--json``."""

    model_config = ConfigDict(extra="forbid", title="ferry deployment-result")
    schema_: Literal["ferry/v1"] = Field(alias="schema", description="The version of every ferry JSON document")
    kind: Literal["deployment-result"] = Field(description="This document's kind")
    command: str = Field(description="deploy, promote, rollback or release create")
    waited: bool = Field(description="--wait (or --timeout): the document reports the end, else the start")
    outcome: Literal["succeeded", "started", "failed", "cancelled", "refused", "timed_out", "error"] = Field(
        description="How the command ended, in a word")
    exit_code: int = Field(description="0 succeeded/started, 1 failed or cancelled, 3 refused before start, "
                                       "124 --timeout passed")
    exit_meaning: str = Field(description="The exit code in words")
    error: str | None = Field(description="The one-line error (also on stderr), or the failed deployment's")
    deployments: list[DeploymentOutcome] = Field(description="What the command started, in order (none when "
                                                             "refused)")
    release: dict[str, Any] | None = Field(default=None, description="release create: the release's document")


def json_schema() -> dict[str, Any]:
    schema = DeploymentResult.model_json_schema(mode="validation", by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
