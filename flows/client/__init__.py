"""The thin client of the ferry server API (``ferry serve``): what a requester — the CLI in remote mode, CI,
``ferry deploy --wait`` — needs to ask the executor for work, holding nothing but a scoped API key.

It imports httpx and ``snapshots.errors`` only: no Prefect, no store, no master key, so it starts fast and
runs where none of those exist.
"""

from flows.client.http import FerryClient, FollowResult, LogLine

__all__ = ["FerryClient", "FollowResult", "LogLine"]
