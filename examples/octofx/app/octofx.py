"""OctoFX.Web: a tiny web app whose every response names its version (so a rollout can be watched).

Runs with the Python standard library only: `python3 octofx.py --bind 127.0.0.2 --port 8080`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSION = (HERE / "VERSION").read_text().strip()


def load_settings() -> dict:
    path = HERE / "config" / "appsettings.json"
    return json.loads(path.read_text()) if path.exists() else {}


class Handler(BaseHTTPRequestHandler):
    server_version = f"OctoFX/{VERSION}"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        settings = load_settings()
        if self.path == "/health":
            body = f"ok {VERSION}\n"
        else:
            body = f"{settings.get('Site', {}).get('Banner', 'OctoFX')} version {VERSION}\n"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-OctoFX-Version", VERSION)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--pidfile")
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.bind, args.port), Handler)
    server.daemon_threads = True
    if args.pidfile:
        Path(args.pidfile).write_text(f"{__import__('os').getpid()}\n")
    # SIGTERM: stop accepting, finish in-flight requests, exit (a graceful restart).
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
