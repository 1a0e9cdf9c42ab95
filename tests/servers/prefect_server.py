"""A real ``prefect server start`` for the tests, on a loopback port, its database on PostgreSQL (the
test cluster) so concurrent flow runs don't fight over one SQLite file."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

QUIET = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    "PREFECT_LOGGING_LEVEL": "INFO",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrefectServer:
    def __init__(self, database_url: str | None = None, ui: bool = False, ui_api_url: str | None = None) -> None:
        """``ui_api_url``: where the UI's JavaScript sends its API calls (default: this server's own API; ferry's
        Prefect proxy in the browser test)."""
        self.ui_api_url = ui_api_url
        self.port = _free_port()
        self.home = Path(tempfile.mkdtemp(prefix="ferry-prefect-"))
        self.database_url = database_url
        self.ui = ui
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.home / "server.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """What a client process needs to talk to this server."""
        return {"PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.home / "client"), **QUIET}

    def start(self, timeout: float = 180) -> PrefectServer:
        env = {**os.environ, **QUIET, "PREFECT_HOME": str(self.home)}
        env.pop("PREFECT_API_URL", None)
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        prefect = str(Path(sys.executable).parent / "prefect")
        args = [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        if not self.ui:
            args.append("--no-ui")
        else:  # the UI's JavaScript calls the API at this URL (default: port 4200)
            env["PREFECT_UI_API_URL"] = self.ui_api_url or self.api_url
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"prefect server did not answer within {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
        shutil.rmtree(self.home, ignore_errors=True)
