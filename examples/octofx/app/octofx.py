"""OctoFX.Web: a tiny web app whose every response names its version (so a rollout can be watched).

Runs with the Python standard library only: `python3 octofx.py --bind 127.0.0.2 --port 8080`.
Every response carries ``X-OctoFX-Version`` and ``X-OctoFX-Machine`` (from config/site.conf, which ferry
renders per target). SIGTERM is a graceful stop: no new connections, requests in flight are answered, exit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip()
IN_FLIGHT = 0
_lock = threading.Lock()


def load_settings() -> dict:
    path = HERE / "config" / "appsettings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def site_conf() -> dict[str, str]:
    path = HERE / "config" / "site.conf"
    if not path.exists():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


SETTINGS = load_settings()
MACHINE = site_conf().get("machine", "")


class Handler(BaseHTTPRequestHandler):
    server_version = f"OctoFX/{VERSION}"
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body leave as written: no 40 ms delayed-ACK stall per request

    def do_GET(self) -> None:
        global IN_FLIGHT
        with _lock:
            IN_FLIGHT += 1
        try:
            if self.path == "/health":
                body = f"ok {VERSION}\n"
            elif self.path.startswith("/slow"):  # a slow page (?seconds=N, at most 30): watch a drain wait for it
                query = dict(p.split("=", 1) for p in self.path.partition("?")[2].split("&") if "=" in p)
                time.sleep(min(30.0, float(query.get("seconds", "5"))))
                body = f"slow page of version {VERSION}\n"
            else:
                banner = SETTINGS.get("Site", {}).get("Banner", "OctoFX")
                body = f"{banner} version {VERSION}" + (f" on {MACHINE}" if MACHINE else "") + "\n"
            data = body.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-OctoFX-Version", VERSION)
            self.send_header("X-OctoFX-Machine", MACHINE)
            self.end_headers()
            self.wfile.write(data)
        finally:
            with _lock:
                IN_FLIGHT -= 1

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections must not keep a stopping process alive

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # health checks and balancers hang up early; nothing to report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--pidfile")
    args = parser.parse_args()
    server = Server((args.bind, args.port), Handler)
    if args.pidfile:
        Path(args.pidfile).write_text(f"{os.getpid()}\n")
    # SIGTERM: stop accepting, let the requests in flight finish (up to 10 s), exit.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.1)  # a stop request is noticed within 0.1 s
    server.server_close()
    deadline = time.monotonic() + 10
    while IN_FLIGHT and time.monotonic() < deadline:
        time.sleep(0.02)
    sys.exit(0)


if __name__ == "__main__":
    main()
