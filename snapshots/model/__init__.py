"""pydantic models of what users write in YAML: projects and infrastructure."""

from snapshots.model.infrastructure import Environment, Infrastructure, Lifecycle, Phase, Target
from snapshots.model.project import Project, Scope, Variable
from snapshots.model.steps import STEP_KINDS, ParentStep, ProcessItem, Step

__all__ = ["STEP_KINDS", "Environment", "Infrastructure", "Lifecycle", "ParentStep", "Phase", "ProcessItem",
           "Project", "Scope", "Step", "Target", "Variable"]
