"""Shared fixtures: an isolated FERRY_HOME per test, the CLI runner, a real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings

from tests.servers.postgres import PostgresServer
from tests.servers.prefect_server import PrefectServer

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

# Property tests check behaviour, not speed: on a shared two-core machine a case can take longer than
# hypothesis's default 200 ms deadline without anything being wrong (speed lives in benchmarks/).
settings.register_profile("ferry", deadline=None)
settings.load_profile("ferry")


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@pytest.fixture
def ferry_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh FERRY_HOME (store, feed, master key) for one test."""
    home = tmp_path / "ferry-home"
    monkeypatch.setenv("FERRY_HOME", str(home))
    monkeypatch.delenv("FERRY_DATABASE_URL", raising=False)
    monkeypatch.delenv("FERRY_MASTER_KEY", raising=False)
    monkeypatch.setenv("FERRY_USER", "tester")
    monkeypatch.setenv("COLUMNS", "200")
    return home


@pytest.fixture
def ferry(ferry_home: Path) -> callable:
    """Run the real `ferry` console script as a user would: commands that start, steer or serve runs in a
    process of their own, the others through the same entry point in this process (tests/ferry_in_process.py;
    FERRY_TEST_SUBPROCESS=1 runs every one in its own process)."""
    from tests.ferry_in_process import run_main, runs_here

    exe = Path(sys.executable).parent / "ferry"
    every_in_own = os.environ.get("FERRY_TEST_SUBPROCESS") == "1"

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> CliResult:
        if not every_in_own and runs_here(args, env):
            return CliResult(*run_main(args, env, input or ""))
        proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env={**os.environ, **(env or {})},
                              input=input, timeout=300)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (Debian's package, started privately)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store URL, once per backend: every store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The OctoFX sample in the test's directory, with its sensitive variable's source set."""
    from tests.sample import SECRET, make_sample

    monkeypatch.setenv("OCTOFX_DB_PASSWORD", SECRET)
    return make_sample(tmp_path / "octofx")


@pytest.fixture(scope="session")
def prefect_server(postgres: PostgresServer) -> Iterator[PrefectServer]:
    """One real Prefect server (database on the test PostgreSQL) for every flow test in the session."""
    url = postgres.create_database("prefect", extensions=("pg_trgm",)).replace("postgresql://",
                                                                                "postgresql+asyncpg://")
    server = PrefectServer(database_url=url).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prefect_env(prefect_server: PrefectServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Point this test (and the `ferry` processes it starts) at the session's Prefect server.

    Prefect reads its settings once, when imported, so the environment alone does not reach code running in
    this process (a flow called here, ``Block.save``): after any earlier test it would quietly start an
    ephemeral server of its own. A settings context covers this process too."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env = prefect_server.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with temporary_settings(updates={PREFECT_API_URL: prefect_server.api_url}):
        yield env


from tests.servers.ssh_lab import LabInfo, start_lab  # noqa: E402


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabInfo]:
    """The real lab — 7 sshd targets named like the sample's, one HAProxy — in a private FERRY_HOME on this
    session's own loopback /24 (see tests/servers/ssh_lab.py); torn down at the end of the session."""
    info = start_lab(tmp_path_factory.mktemp("lab") / "ferry-home")
    try:
        yield info
    finally:
        info.lab.down()
