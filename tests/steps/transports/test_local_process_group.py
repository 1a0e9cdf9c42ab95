"""The local transport's scripts end with ferry (issue 13 item 7): a SIGKILLed ferry leaves no script
running, and a script that leaves a background process holding its output returns when the script exits,
as the SSH transport does — while a daemon it started on purpose keeps running."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from steps.transports.local import LocalTransport


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(FileNotFoundError):  # a zombie waiting for its parent counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    return False


def _wait_for(condition, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_background_process_holding_the_output_does_not_hold_the_step(tmp_path: Path) -> None:
    transport = LocalTransport("t", tmp_path / "target")
    pidfile = tmp_path / "daemon.pid"
    started = time.monotonic()
    result = transport.run(f'echo before; sleep 25 & echo $! > {pidfile}; echo after')
    took = time.monotonic() - started
    daemon = int(pidfile.read_text())
    try:
        assert result.exit_code == 0 and result.output_tail == ["before", "after"]
        assert took < 10, f"returned after {took:.1f}s (the background sleep holds the output for 25 s)"
        assert _alive(daemon)  # started on purpose: it is not ferry's to end
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGKILL)


def test_late_output_of_a_background_process_is_still_read(tmp_path: Path) -> None:
    result = LocalTransport("t", tmp_path / "target").run("(sleep 0.3; echo late) & echo now")
    assert result.output_tail == ["now", "late"]


def test_sigkill_of_ferry_ends_the_script_and_what_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    runner = textwrap.dedent(f"""
        from steps.transports.local import LocalTransport
        LocalTransport("t", {str(tmp_path / "target")!r}).run(
            'sleep 300 & echo $! >> {pids}; echo $$ >> {pids}; sleep 300')
    """)
    proc = subprocess.Popen([sys.executable, "-c", runner], cwd=Path(__file__).resolve().parents[3])
    try:
        assert _wait_for(lambda: pids.exists() and len(pids.read_text().split()) == 2, 30), "script never started"
        children = [int(p) for p in pids.read_text().split()]
        assert all(_alive(pid) for pid in children)
        proc.kill()
        proc.wait()
        assert _wait_for(lambda: not any(_alive(pid) for pid in children), 5), "the script outlived ferry"
    finally:
        proc.kill()
        with contextlib.suppress(Exception):
            for pid in [int(p) for p in pids.read_text().split()]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
