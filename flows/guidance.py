"""People in the loop: guided failure and manual steps pause the flow run and wait for an answer given
in the Prefect UI (the resume form) or with ``ferry deployment answer``."""

from __future__ import annotations

from typing import Literal

from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

POLL_SECONDS = 2


class FailureAnswer(RunInput):
    """How to continue after a failed step on a target."""

    action: Literal["retry", "skip", "ignore", "abort"] = Field(
        description="retry: run the failed step again; skip: leave this target out; ignore: carry on with the "
                    "next step as if it had succeeded; abort: stop the deployment")
    notes: str = Field("", description="Recorded on the deployment")


class ManualAnswer(RunInput):
    """A person's decision at a manual intervention step."""

    action: Literal["proceed", "abort"] = Field(description="proceed with the deployment, or abort it")
    notes: str = Field("", description="Recorded on the deployment")


def ask_failure(description: str, timeout: int) -> FailureAnswer:
    """Pause until someone answers (raises Prefect's FlowPauseTimeout after ``timeout`` seconds)."""
    answer = pause_flow_run(wait_for_input=FailureAnswer.with_initial_data(description=description, action="retry"),
                            timeout=timeout, poll_interval=POLL_SECONDS)
    return answer  # type: ignore[return-value]


def ask_manual(description: str, timeout: int) -> ManualAnswer:
    answer = pause_flow_run(wait_for_input=ManualAnswer.with_initial_data(description=description, action="proceed"),
                            timeout=timeout, poll_interval=POLL_SECONDS)
    return answer  # type: ignore[return-value]
