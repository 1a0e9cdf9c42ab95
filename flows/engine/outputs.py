"""The output variables of one running deployment: what its scripts set, as later steps read them.

Each value arrives from a step's transport (``steps.transports.service_messages``) while the script still runs:
a sensitive one joins the run's masker at once — before the script's next line is logged — then the value is
kept in memory for the steps that follow and recorded with the deployment (encrypted) for ``deployment show``.
A step that runs again on the same target (a retry, a guided-failure retry) replaces its earlier values.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from snapshots.store import Store
from snapshots.store import outputs as store_outputs
from snapshots.store.crypto import Vault
from snapshots.store.outputs import Output
from snapshots.variables.masking import Masker
from snapshots.variables.scopes import output_variables
from steps.transports.service_messages import OutputValue


class DeploymentOutputs:
    def __init__(self, store: Store, vault: Vault, deployment_id: int, masker: Masker) -> None:
        self.store, self.vault, self.deployment_id, self.masker = store, vault, deployment_id, masker
        self._lock = threading.Lock()
        self._values: dict[tuple[str, str | None, str], Output] = {}

    def receiver(self, step: str, target: str | None, log: Callable[[str], None]) -> Callable[[OutputValue], None]:
        """What a step's capturing transport calls for each value its script sets."""
        def receive(value: OutputValue) -> None:
            if value.sensitive:
                self.masker.add(value.value)
            with self.store.begin() as conn:
                kept = store_outputs.record(conn, self.vault, self.deployment_id, step, target, value.name,
                                            value.value, value.sensitive)
            with self._lock:
                key = (step.casefold(), target, value.name.casefold())
                self._values.pop(key, None)  # re-set: it moves to the end, as the newest value
                self._values[key] = kept
            shown = "********" if value.sensitive else self.masker.mask(value.value)
            log(f"output variable Octopus.Action[{step}].Output.{value.name} = {shown}"
                + (" (sensitive)" if value.sensitive else ""))
        return receive

    def variables(self, target: str | None) -> tuple[dict[str, str], set[str]]:
        """The ``Octopus.Action[...].Output...`` names a step on ``target`` sees (values, sensitive names)."""
        with self._lock:
            kept = list(self._values.values())
        return output_variables(kept, target)

    def all(self) -> list[Output]:
        with self._lock:
            return list(self._values.values())
