"""Writes step results to the store in small batches from one background thread.

Recording each (step, target) result in its own transaction made the store the bottleneck of a wide
rollout (measured: a third of a trivial step's time went to SQLite commits contending across window
threads). Results are queued and flushed together at least every ``interval`` seconds, and on close.
"""

from __future__ import annotations

import queue
import threading

from snapshots.store import Store, records


class ResultWriter:
    def __init__(self, store: Store, deployment_id: int, interval: float = 0.5) -> None:
        self.store, self.deployment_id, self.interval = store, deployment_id, interval
        self._queue: queue.Queue[records.StepResult | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="ferry-results", daemon=True)
        self._error: BaseException | None = None
        self._thread.start()

    def add(self, result: records.StepResult) -> None:
        self._queue.put(result)

    def _loop(self) -> None:
        closing = False
        while not closing:
            batch: list[records.StepResult] = []
            try:
                item = self._queue.get(timeout=self.interval)
                if item is None:
                    closing = True
                else:
                    batch.append(item)
            except queue.Empty:
                continue
            while True:  # everything already waiting goes in the same transaction
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[records.StepResult]) -> None:
        if not batch:
            return
        try:
            with self.store.begin() as conn:
                for result in batch:
                    records.record_result(conn, self.deployment_id, result)
        except BaseException as exc:  # surfaced by close(): a result that cannot be stored fails the deployment
            self._error = exc

    def close(self) -> None:
        """Flush what is queued and stop; re-raise a storage error."""
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
