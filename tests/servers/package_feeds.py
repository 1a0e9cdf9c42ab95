"""Real package feeds on loopback for the external-feed tests: a static HTTP server (python's http.server in a
thread) serving a NuGet v3 service index + flat container laid out as the protocol names its files, and a plain
directory with its listing page; and moto's S3 server (ThreadedMotoServer) with IAM authentication switched on."""

from __future__ import annotations

import base64
import functools
import http.server
import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

USER, PASSWORD = "feed-reader", "Feed-Pa55/word+secret"
S3_USER = "ferry-feeds"


def nupkg(package_id: str, version: str) -> bytes:
    """A small, deterministic .nupkg (a zip with a nuspec and one content file)."""
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as archive:
        for name, text in {f"{package_id}.nuspec": f"<package><metadata><id>{package_id}</id><version>{version}"
                                                   "</version></metadata></package>",
                           "content/VERSION": version}.items():
            info = zipfile.ZipInfo(name, (2020, 1, 1, 0, 0, 0))
            archive.writestr(info, text)
    return raw.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class StaticFeeds:
    root: Path
    base: str

    def nuget_url(self, private: bool = False) -> str:
        return f"{self.base}/{'private/' if private else ''}v3/index.json"

    def publish_nuget(self, package_id: str, versions: list[str], private: bool = False) -> None:
        """Lay out the flat container the way NuGet v3 names it (lower-case ids and versions)."""
        top = self.root / ("private" if private else "")
        flat = top / "v3-flatcontainer" / package_id.lower()
        flat.mkdir(parents=True, exist_ok=True)
        (top / "v3").mkdir(parents=True, exist_ok=True)
        prefix = f"{self.base}/{'private/' if private else ''}"
        (top / "v3" / "index.json").write_text(json.dumps({"version": "3.0.0", "resources": [
            {"@id": f"{prefix}query", "@type": "SearchQueryService"},
            {"@id": f"{prefix}v3-flatcontainer/", "@type": "PackageBaseAddress/3.0.0"}]}))
        (flat / "index.json").write_text(json.dumps({"versions": [v.lower() for v in versions]}))
        for version in versions:
            low = version.lower()
            (flat / low).mkdir(exist_ok=True)
            (flat / low / f"{package_id.lower()}.{low}.nupkg").write_bytes(nupkg(package_id, version))

    def nupkg_path(self, package_id: str, version: str) -> Path:
        low, ver = package_id.lower(), version.lower()
        return self.root / "v3-flatcontainer" / low / ver / f"{low}.{ver}.nupkg"

    def publish_files(self, names: list[str]) -> None:
        folder = self.root / "files"
        folder.mkdir(exist_ok=True)
        for name in names:
            (folder / name).write_bytes(nupkg("file", name))


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/private/"):
            wanted = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != wanted:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="feed"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_feeds(root: Path) -> Iterator[StaticFeeds]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StaticFeeds(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str

    def client(self, access_key: str | None = None, secret_key: str | None = None) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=access_key or self.access_key,
                            aws_secret_access_key=secret_key or self.secret_key)


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's S3 in server mode on 127.0.0.1 with authentication on: the first three calls (create the IAM user,
    its key and its policy) go unauthenticated, every later one needs that key."""
    import boto3
    from moto import settings
    from moto.server import ThreadedMotoServer

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 3
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bootstrap",
                           aws_secret_access_key="bootstrap")
        iam.create_user(UserName=S3_USER)
        key = iam.create_access_key(UserName=S3_USER)["AccessKey"]
        iam.put_user_policy(UserName=S3_USER, PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        yield S3Server(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        server.stop()
