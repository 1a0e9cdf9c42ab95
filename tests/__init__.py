"""The test suite. Set here, before any test module or conftest runs (pytest imports this package first):

without PREFECT_API_URL, ferry starts a local Prefect server per FERRY_HOME that outlives the command
(flows/orchestration/local_prefect.py). Tests that do not point at the session's Prefect server (``prefect_env``)
keep Prefect's temporary server per process instead, so no test leaves a server behind; the ``ferry``
processes they start inherit it. tests/flows/orchestration/test_local_prefect.py lifts this to test the local
server itself, and stops what it started."""

import os

os.environ.setdefault("FERRY_PREFECT_SERVER", "ephemeral")
