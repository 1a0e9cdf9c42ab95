"""Look for a secret everywhere it must not be: the forms it could take (plain, base64 in any alignment,
URL-encoded, hex, JSON-escaped) in files, database dumps, HTTP responses, and every process's command line
and environment sampled while something runs.

The standing suite reuses these helpers; a test asserts ``report.total == 0`` and prints ``report`` on failure.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
import threading
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def forms(secret: str) -> dict[str, bytes]:
    """Every encoding of ``secret`` worth looking for, by name. Base64 of a value embedded in a longer blob
    depends on its offset modulo 3: all three alignments are included, trimmed to the characters that do not
    depend on the neighbours."""
    raw = secret.encode("utf-8")
    out: dict[str, bytes] = {"plain": raw, "utf-16-le": secret.encode("utf-16-le"),
                             "hex": binascii.hexlify(raw), "HEX": binascii.hexlify(raw).upper(),
                             "url": urllib.parse.quote(secret, safe="").encode(),
                             "url-plus": urllib.parse.quote_plus(secret).encode(),
                             "json": json.dumps(secret)[1:-1].encode(),
                             "json-unicode": json.dumps(secret, ensure_ascii=False)[1:-1].encode("utf-8")}
    for shift in range(3):
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            encoded = encode(b"\0" * shift + raw)
            start = (0, 2, 3)[shift]  # skip the characters mixed with the stand-in bytes before the value
            end = len(encoded) - (4 if (shift + len(raw)) % 3 else 0)  # and the last, partial group
            piece = encoded[start:end]
            if len(piece) >= 8:
                out[f"{name}@{shift}"] = piece
    return {k: v for k, v in out.items() if v}


@dataclass
class Report:
    """Where the secret was found: (place, form) → count; plus how much was looked at."""

    hits: dict[tuple[str, str], int] = field(default_factory=dict)
    looked_at: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.hits.values())

    def add(self, place: str, data: bytes, patterns: dict[str, bytes], kind: str) -> None:
        self.looked_at[kind] = self.looked_at.get(kind, 0) + 1
        for name, pattern in patterns.items():
            count = data.count(pattern)
            if count:
                self.hits[(place, name)] = self.hits.get((place, name), 0) + count

    def merge(self, other: Report) -> Report:
        for key, count in other.hits.items():
            self.hits[key] = self.hits.get(key, 0) + count
        for kind, count in other.looked_at.items():
            self.looked_at[kind] = self.looked_at.get(kind, 0) + count
        return self

    def __str__(self) -> str:
        looked = ", ".join(f"{n} {k}" for k, n in sorted(self.looked_at.items()))
        if not self.hits:
            return f"secret found 0 times (looked at {looked})"
        lines = [f"secret found {self.total} time(s) (looked at {looked}):"]
        lines += [f"  {place}: {form} ×{count}" for (place, form), count in sorted(self.hits.items())]
        return "\n".join(lines)


def scan_bytes(secret: str, data: bytes, place: str, kind: str = "blobs") -> Report:
    report = Report()
    report.add(place, data, forms(secret), kind)
    return report


def scan_files(secret: str, roots: Iterable[Path], *, skip: Iterable[Path] = ()) -> Report:
    """Every regular file under ``roots`` (SQLite databases with their -wal/-shm, logs, keys, results)."""
    patterns = forms(secret)
    skipped = [Path(p).resolve() for p in skip]
    report = Report()
    for root in roots:
        for path in _walk(Path(root)):
            if any(path.resolve().is_relative_to(s) for s in skipped):
                continue
            try:
                data = path.read_bytes()
            except (OSError, PermissionError):
                continue
            report.add(str(path), data, patterns, "files")
    return report


def _walk(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


def scan_json(secret: str, responses: dict[str, Any]) -> Report:
    """API responses (already decoded, or raw text/bytes), by where they came from."""
    patterns = forms(secret)
    report = Report()
    for place, body in responses.items():
        if isinstance(body, bytes):
            data = body
        elif isinstance(body, str):
            data = body.encode("utf-8")
        else:
            data = json.dumps(body).encode("utf-8") + b"\n" + json.dumps(body, ensure_ascii=False).encode("utf-8")
        report.add(place, data, patterns, "api responses")
    return report


def prefect_api_responses(api: Any, flow_run_id: str) -> dict[str, Any]:
    """What Prefect's API tells anyone about a flow run: the run, its states, task runs, logs, artifacts,
    its input (pauses) and the events that name it. ``api`` is an httpx client on ``…/api``."""
    out: dict[str, Any] = {}

    def get(path: str) -> None:
        response = api.get(path)
        out[f"GET {path}"] = response.content

    def post(path: str, body: dict[str, Any]) -> None:
        response = api.post(path, json=body)
        out[f"POST {path}"] = response.content

    get(f"/flow_runs/{flow_run_id}")
    get(f"/flow_run_states/?flow_run_id={flow_run_id}")
    get(f"/flow_runs/{flow_run_id}/graph-v2")
    post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    post("/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})
    post("/artifacts/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    post("/flow_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
    post("/events/filter", {"filter": {"any_resource": {"id": [f"prefect.flow-run.{flow_run_id}"]}}, "limit": 200})
    return out


def pg_dump(url: str) -> bytes:
    """A plain-text dump of one PostgreSQL database (``postgresql://…`` or ``postgresql+driver://…``)."""
    plain = "postgresql://" + url.split("://", 1)[1]
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))
    exe = str(found[-1]) if found else "pg_dump"
    return subprocess.run([exe, "--no-owner", plain], check=True, capture_output=True, timeout=120).stdout


def postgres_checkpoint(admin_url: str) -> None:
    """Write every dirty page of a PostgreSQL cluster to its files, so a scan of the data directory (tables,
    indexes, TOAST, WAL: also rows since deleted or updated) sees everything committed."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


class ProcSampler:
    """Reads ``/proc/*/cmdline`` and ``/proc/*/environ`` of every process it may read, every ``interval``
    seconds, in a thread, until stopped; each distinct (pid, start time) is scanned every time it is seen."""

    def __init__(self, secret: str, interval: float = 0.05) -> None:
        self.patterns = forms(secret)
        self.interval = interval
        self.report = Report()
        self.samples = 0
        self.processes: set[tuple[int, str]] = set()
        self.unreadable: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            self.sample(me)
            self._stop.wait(self.interval)
        self.sample(me)

    def sample(self, me: int | None = None) -> None:
        self.samples += 1
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            pid = int(entry.name)
            try:
                with open(f"/proc/{pid}/stat", "rb") as fh:
                    started = fh.read().rsplit(b")", 1)[-1].split()[19].decode()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, IndexError):
                continue
            self.processes.add((pid, started))
            name = cmdline.replace(b"\0", b" ")[:80].decode(errors="replace")
            self.report.add(f"/proc/{pid}/cmdline ({name})", cmdline, self.patterns, "cmdline reads")
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                self.unreadable.add(pid)
                continue
            self.report.add(f"/proc/{pid}/environ ({name})", environ, self.patterns, "environ reads")

    def start(self) -> ProcSampler:
        self._thread.start()
        return self

    def stop(self) -> Report:
        self._stop.set()
        self._thread.join(timeout=10)
        self.report.looked_at["samples"] = self.samples
        self.report.looked_at["distinct processes"] = len(self.processes)
        return self.report


@contextmanager
def sampling(secret: str, interval: float = 0.05) -> Iterator[ProcSampler]:
    sampler = ProcSampler(secret, interval).start()
    try:
        yield sampler
    finally:
        sampler.stop()
