"""A cut SSH connection mid-script (issue 13 item 7), on the lab's real sshd through a TCP proxy that drops
every connection at once: ferry reports the connection as lost (not "exit code -1"), and the remote wrapper
ends the script's whole process group and removes its files (the values it read included)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from snapshots.errors import ConnectionLost
from steps.transports.ssh import SshTransport
from tests.servers.ssh_lab import LabInfo
from tests.servers.tcp_proxy import TcpProxy


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_cut_connection_is_reported_as_lost_and_the_remote_group_ends(lab: LabInfo) -> None:
    target = lab.info("test-02")
    with TcpProxy((target["address"], target["ssh_port"]), listen_host=target["address"]) as proxy:
        transport = SshTransport("test-02", lab.spec("test-02", port=proxy.port), known_hosts=lab.known_hosts)
        lines: list[str] = []
        errors: list[BaseException] = []

        def run() -> None:
            try:
                transport.run('sleep 300 & echo "child $!"; echo "main $$"; echo "data $FERRY_DATA"; sleep 300',
                               data={"variables": {"Secret": "s3cr3t-value"}}, on_line=lines.append)
            except BaseException as exc:  # handed to the test thread
                errors.append(exc)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        deadline = time.monotonic() + 30
        while len(lines) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(lines) == 3, lines
        pids = [int(lines[0].split()[1]), int(lines[1].split()[1])]
        data_file = Path(lines[2].split()[1])
        assert all(_alive(p) for p in pids) and data_file.exists()
        cut_at = time.monotonic()
        assert proxy.cut() == 1
        worker.join(20)
        assert not worker.is_alive(), "run() still waiting after the connection was cut"
        assert time.monotonic() - cut_at < 10
        [error] = errors
        assert isinstance(error, ConnectionLost)
        assert error.target == "test-02" and "exit code" not in str(error)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids), "the script kept running on the target after the cut"
        assert not data_file.exists(), "the run's data file (its values) outlived the connection"
        transport.close()


@pytest.mark.parametrize("seconds", [0.2])
def test_scripts_still_end_normally_and_quickly(dev: SshTransport, seconds: float) -> None:
    started = time.monotonic()
    result = dev.run(f"sleep {seconds}; echo done; exit 4")
    assert (result.exit_code, result.output_tail) == (4, ["done"])
    assert time.monotonic() - started < 5
