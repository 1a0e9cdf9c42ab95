"""Point this process's Prefect client at the session's real Prefect server.

Prefect reads its settings once, when it is imported, so setting ``PREFECT_API_URL`` in the environment
afterwards (as the ``prefect_env`` fixture does for the ``ferry`` subprocesses it starts) does not reach
code running in the test process: it would quietly start an ephemeral server of its own instead. In-process
tests enter a settings context instead.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from tests.servers.prefect_server import PrefectServer


@pytest.fixture
def prefect_api(prefect_server: PrefectServer, prefect_env: dict[str, str]) -> Iterator[str]:
    """The session's Prefect server, for this process's flows and clients (and its subprocesses)."""
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        yield prefect_server.api_url
