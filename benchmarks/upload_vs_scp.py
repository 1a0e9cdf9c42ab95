"""Package upload: ferry's SFTP upload vs OpenSSH ``scp``, same file, same key, same lab target, same run.

    .venv/bin/python -m benchmarks.upload_vs_scp [--mb 200] [--rounds 3] [--json]

Starts a private one-target lab (its own FERRY_HOME and loopback /24, so a running demo lab is not
disturbed; needs root like `ferry lab up`), writes a file of random bytes, then uploads it alternately with
ferry and with scp (the order flips every round), each to a fresh remote path. ferry's time is its whole
``upload()`` on an open connection — as in a deployment, where the connection is already open: the sha256
check of the remote path, the pipelined SFTP transfer with the local bytes hashed on the way, the remote
sha256 verification and the ``mv`` into place. scp's time is the whole ``scp`` command (its own SSH
handshake included, about 0.05 s here). Reports MB/s (10^6 bytes per second) per round, the medians, and
ferry/scp (target: at least 0.70).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from flows.lab import LAB_USER, Lab
from snapshots.model.infrastructure import SshTransport as SshSpec
from steps.transports.ssh import SshTransport

TARGET_RATIO = 0.70


def _random_file(path: Path, megabytes: int) -> str:
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for _ in range(megabytes):
            chunk = os.urandom(1_000_000)
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _scp(lab: Lab, target: dict[str, Any], local: Path, remote: str, cipher: str | None = None) -> None:
    subprocess.run(
        ["scp", "-q", *(["-c", cipher] if cipher else []), "-i", str(lab.key_file),
         "-o", f"UserKnownHostsFile={lab.home / 'known_hosts'}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-P", str(target["ssh_port"]),
         str(local), f"{LAB_USER}@{target['address']}:{remote}"], check=True)


def run(megabytes: int, rounds: int, home: Path, verbose: bool = True) -> dict[str, Any]:
    lab = Lab(home)
    network = f"127.{200 + os.getpid() % 50}.{os.getpid() // 50 % 250 + 1}"  # apart from demo and test labs
    target = lab.up(1, network=network, ssh_port=2222)["targets"][0]
    try:
        local = home / "payload.bin"
        sha = _random_file(local, megabytes)
        size = local.stat().st_size
        spec = SshSpec(kind="ssh", host=target["address"], port=target["ssh_port"], user=LAB_USER,
                       key_file=str(lab.key_file), host_key=target["host_key"])
        ssh = SshTransport(target["name"], spec)
        cipher = ssh.transport.local_cipher
        ssh.run("rm -rf /srv/bench && mkdir -p /srv/bench")
        results: dict[str, list[float]] = {"ferry": [], "scp": [], "scp-gcm": []}
        for i in range(rounds):
            order = ["ferry", "scp", "scp-gcm"]
            order = order[i % 3:] + order[:i % 3]  # rotate who goes first
            for tool in order:
                remote = f"/srv/bench/{tool}-{i}.bin"
                start = time.perf_counter()
                if tool == "ferry":
                    assert ssh.upload(local, remote, sha) is True
                else:
                    _scp(lab, target, local, remote, cipher="aes128-gcm@openssh.com" if tool == "scp-gcm" else None)
                seconds = time.perf_counter() - start
                results[tool].append(size / seconds / 1e6)
                assert ssh.remote_sha256(remote) == sha, f"{tool} delivered different bytes"
                ssh.run(f"rm -f {remote}")
                if verbose:
                    print(f"round {i + 1} {tool:7} {seconds:6.2f} s  {results[tool][-1]:7.1f} MB/s", flush=True)
        skip_start = time.perf_counter()
        ssh.upload(local, "/srv/bench/again.bin", sha)
        assert ssh.upload(local, "/srv/bench/again.bin", sha) is False
        skip = time.perf_counter() - skip_start
        ssh.run("rm -rf /srv/bench")
        ssh.close()
    finally:
        lab.down()
    ferry, scp, scp_gcm = (statistics.median(results[k]) for k in ("ferry", "scp", "scp-gcm"))
    return {"megabytes": size / 1e6, "rounds": rounds, "ferry_cipher": cipher,
            "mb_s": {k: [round(v, 1) for v in values] for k, values in results.items()},
            "ferry_median_mb_s": round(ferry, 1), "scp_median_mb_s": round(scp, 1),
            "scp_gcm_median_mb_s": round(scp_gcm, 1),
            "ratio": round(ferry / scp, 3), "ratio_same_cipher": round(ferry / scp_gcm, 3),
            "target_ratio": TARGET_RATIO, "meets_target": ferry / scp >= TARGET_RATIO,
            "upload_plus_skipped_reupload_s": round(skip, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=200, help="file size in MB (10^6 bytes)")
    parser.add_argument("--rounds", type=int, default=3, help="uploads per tool (at least 3)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ferry-bench-upload-") as tmp:
        result = run(args.mb, max(3, args.rounds), Path(tmp) / "ferry-home", verbose=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"upload of {result['megabytes']:.0f} MB to a lab target, {result['rounds']} rounds each (median):")
    print(f"  ferry SFTP ({result['ferry_cipher']}, incl. sha256 check + verify + mv): "
          f"{result['ferry_median_mb_s']:7.1f} MB/s")
    print(f"  OpenSSH scp, its default cipher (chacha20-poly1305):         {result['scp_median_mb_s']:7.1f} MB/s")
    print(f"  OpenSSH scp -c aes128-gcm@openssh.com (ferry's cipher):      {result['scp_gcm_median_mb_s']:7.1f} MB/s")
    verdict = "meets" if result["meets_target"] else "BELOW"
    print(f"  ferry/scp = {result['ratio']:.2f} ({verdict} the {TARGET_RATIO:.2f} target); "
          f"against scp with the same cipher: {result['ratio_same_cipher']:.2f}")
    print(f"  re-upload of a file the target already holds: skipped after a remote sha256 "
          f"(upload + skipped re-upload: {result['upload_plus_skipped_reupload_s']:.2f} s)")


if __name__ == "__main__":
    main()
