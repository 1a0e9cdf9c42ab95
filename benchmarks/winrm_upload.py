"""Package upload over WinRM: ferry's streamed upload vs the naive pywinrm way, same file, same server, same run.

    .venv/bin/python -m benchmarks.winrm_upload [--mb 50] [--naive-mb 50] [--json]

The server is the WS-Management STAND-IN (tests/standins/wsman_standin.py: real WS-Man over HTTP with NTLM
authentication and message encryption, PowerShell/cmd emulated in Python) on loopback — not Windows. What it
measures is the protocol cost each approach pays: envelopes, round trips, shells, encryption. Real Windows adds
its own costs (process start of powershell.exe/cmd.exe, WinRM's service overhead), which hit the naive way
far harder: it starts one shell and one process per chunk.

* ferry: ``WinRmTransport.upload`` on an open connection (as in a deployment): the remote sha256 pre-check, one
  PowerShell process fed ``Add-FerryChunk`` lines sized to the server's ``MaxEnvelopeSizekb`` (500 KiB), the
  sha256 verified on the target and the move into place.
* naive: what upload helpers built on pywinrm commonly do — ``Session.run_cmd('echo <base64> >> file.b64')``
  per chunk (a command line holds 8191 characters under cmd.exe, so ~6 KB of data per call; each call opens
  a shell, runs, receives, signals and deletes the shell, on a fresh NTLM-authenticated connection), then
  ``certutil -decode``. Its time includes the decode; the sha256 is then checked (not timed) so both arrive
  intact.

Reports MB/s (10^6 bytes per second) for each and ferry/naive (target: at least 10x).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import winrm

from steps.transports.winrm import WinRmTransport
from tests.standins.windows_lab import PASSWORD, free_port, start_standin
from tests.standins.wsman_standin import StandinConfig

NAIVE_LINE = 8191  # cmd.exe's command-line limit
NAIVE_OVERHEAD = len("echo  >> C:\\ferry\\naive\\package.b64")


def _random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def ferry_upload(transport: WinRmTransport, local: Path, sha256: str) -> float:
    started = time.perf_counter()
    assert transport.upload(local, r"C:\ferry\packages\package.bin", sha256)
    return time.perf_counter() - started


def naive_upload(endpoint: str, local: Path, size: int) -> float:
    import base64

    session = winrm.Session(endpoint, auth=("deploy", PASSWORD), transport="ntlm")
    raw = (NAIVE_LINE - NAIVE_OVERHEAD) * 3 // 4 // 3 * 3
    started = time.perf_counter()
    with open(local, "rb") as source:
        sent = 0
        while sent < size and (chunk := source.read(min(raw, size - sent))):
            text = base64.b64encode(chunk).decode()
            result = session.run_cmd("echo", [text, ">>", r"C:\ferry\naive\package.b64"])
            if result.status_code != 0:
                raise RuntimeError(result.std_err.decode(errors="replace"))
            sent += len(chunk)
    result = session.run_cmd("certutil", ["-f", "-decode", r"C:\ferry\naive\package.b64",
                                          r"C:\ferry\naive\package.bin"])
    if result.status_code != 0:
        raise RuntimeError(result.std_err.decode(errors="replace"))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=50, help="size of the package (10^6 bytes)")
    parser.add_argument("--naive-mb", type=float, default=None,
                        help="send only this much the naive way and report its rate (default: all of it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    size = int(args.mb * 1_000_000)
    naive_size = int((args.naive_mb if args.naive_mb is not None else args.mb) * 1_000_000)
    with tempfile.TemporaryDirectory(prefix="ferry-winrm-bench-") as temp:
        root = Path(temp)
        local = root / "package.bin"
        sha256 = _random_file(local, size)
        config = StandinConfig(address="127.0.0.1", port=free_port("127.0.0.1"), state_dir=str(root / "standin"))
        server = start_standin(config)
        os.environ["FERRY_BENCH_WINRM_PASSWORD"] = PASSWORD
        try:
            from snapshots.model.infrastructure import WinRmTransport as Spec

            spec = Spec.model_validate({"kind": "winrm", "host": config.address, "port": config.port,
                                        "scheme": "http", "auth": "ntlm", "username": "deploy",
                                        "password": {"from_env": "FERRY_BENCH_WINRM_PASSWORD"}})
            with WinRmTransport("bench", spec) as transport:
                ferry_seconds = ferry_upload(transport, local, sha256)
            arrived = root / "standin" / "fs" / "C" / "ferry" / "packages" / "package.bin"
            assert hashlib.sha256(arrived.read_bytes()).hexdigest() == sha256
            naive_seconds = naive_upload(f"http://{config.address}:{config.port}/wsman", local, naive_size)
            naive_file = root / "standin" / "fs" / "C" / "ferry" / "naive" / "package.bin"
            with open(local, "rb") as source:
                assert naive_file.read_bytes() == source.read(naive_size), "the naive upload corrupted the file"
        finally:
            server.stop()
    ferry_rate = size / ferry_seconds / 1e6
    naive_rate = naive_size / naive_seconds / 1e6
    report: dict[str, Any] = {
        "server": "WS-Management stand-in on loopback (HTTP, NTLM, message encryption) — not Windows",
        "ferry": {"bytes": size, "seconds": round(ferry_seconds, 3), "mb_per_s": round(ferry_rate, 2),
                  "chunk_bytes": transport._chunk_bytes(), "max_envelope": transport.max_envelope},
        "naive": {"bytes": naive_size, "seconds": round(naive_seconds, 3), "mb_per_s": round(naive_rate, 3)},
        "ratio": round(ferry_rate / naive_rate, 1),
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"server: {report['server']}")
    print(f"ferry WinRM upload : {size / 1e6:.0f} MB in {ferry_seconds:.2f} s = {ferry_rate:.2f} MB/s "
          f"({report['ferry']['chunk_bytes']} bytes per Add-FerryChunk line, envelope {transport.max_envelope})")
    print(f"naive run_cmd echo : {naive_size / 1e6:.0f} MB in {naive_seconds:.2f} s = {naive_rate:.3f} MB/s")
    print(f"ferry / naive      : {report['ratio']}x (target: at least 10x)")


if __name__ == "__main__":
    main()
