"""The session's Prefect server's API URL, for tests that talk to it directly.

``prefect_env`` already points this process's Prefect client (a settings context) and the ``ferry``
subprocesses a test starts (the environment) at the session's server; this fixture names its URL.
"""

from __future__ import annotations

import pytest

from tests.servers.prefect_server import PrefectServer


@pytest.fixture
def prefect_api(prefect_server: PrefectServer, prefect_env: dict[str, str]) -> str:
    """The session's Prefect server's API URL (this process's flows and clients already use it)."""
    return prefect_server.api_url
