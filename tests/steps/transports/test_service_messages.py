"""Output variables set by scripts (``set_octopusvariable`` / ``ferry_set`` in bash, ``Set-OctopusVariable`` in
PowerShell) travel back as structured lines that the capturing transport takes out of the output: on a local
target (real bash) and through the WS-Management STAND-IN (the runner's function emulated, see iis_standin)."""

from __future__ import annotations

from pathlib import Path

from steps.transports.local import LocalTransport
from steps.transports.service_messages import OutputValue, capture, message
from steps.transports.winrm import WinRmTransport
from tests.standins.windows_lab import Standin
from tests.steps.conftest import SET_OUTPUT_SCRIPT

TRICKY = "it's \"quoted\" ']' $(rm -rf /) `x`\nsecond line ##ferry[setVariable name='QQ=='"


def run_local(tmp_path: Path, script: str) -> tuple[list[OutputValue], list[str], list[str], int]:
    got: list[OutputValue] = []
    lines: list[str] = []
    warnings: list[str] = []
    transport = capture(LocalTransport("t1", tmp_path / "t1"), got.append, warnings.append)
    result = transport.run(script, env={"TRICKY": TRICKY}, on_line=lines.append)
    assert result.output_tail == [line for line in lines if line in result.output_tail]
    return got, lines, warnings, result.exit_code


def test_every_spelling_sets_a_value_and_no_message_reaches_the_log(tmp_path: Path) -> None:
    got, lines, warnings, code = run_local(tmp_path, "\n".join([
        "echo before",
        'set_octopusvariable Greeting "hello world"',
        'ferry_set Tricky "$TRICKY"',
        'set_octopusvariable Password "pa55-w0rd-value" -sensitive',
        "ferry_set Empty ''",
        "echo after",
    ]))
    assert code == 0 and warnings == []
    assert got == [OutputValue("Greeting", "hello world", False), OutputValue("Tricky", TRICKY, False),
                   OutputValue("Password", "pa55-w0rd-value", True), OutputValue("Empty", "", False)]
    assert lines == ["before", "after"]


def test_a_message_that_only_appears_in_output_sets_nothing(tmp_path: Path) -> None:
    """A line printed by anything but this run's helper (a log file, an echo) lacks the run's token."""
    forged = message("Admin", "yes", False, "0" * 32)
    got, lines, _, _ = run_local(tmp_path, f"echo \"{forged}\"\nFERRY_SERVICE_TOKEN=abc ferry_set X y")
    assert got == []
    assert lines[0] == forged and lines[1].startswith("##ferry[setVariable ")


def test_bad_calls_are_one_line_errors_in_the_script(tmp_path: Path) -> None:
    got, lines, _, code = run_local(tmp_path, "ferry_set OnlyName; echo rc=$?\n"
                                              "set_octopusvariable A b -secret; echo rc=$?\nferry_set '' v; echo rc=$?")
    assert got == [] and code == 0
    assert lines == ["ferry_set: expected NAME VALUE [-sensitive], got 1 argument(s)", "rc=2",
                     "ferry_set: unknown option '-secret' (expected -sensitive)", "rc=2",
                     "ferry_set: expected NAME VALUE [-sensitive], got 2 argument(s)", "rc=2"]


def test_a_name_ferry_cannot_index_is_ignored_with_a_warning(tmp_path: Path) -> None:
    got, lines, warnings, _ = run_local(tmp_path, "ferry_set 'a]b' v")
    assert got == [] and lines == []
    assert warnings == ["ignored: output variable name 'a]b' may not contain [ ] # { } or line breaks"]


def test_failing_script_keeps_messages_out_of_its_error_tail(tmp_path: Path) -> None:
    got: list[OutputValue] = []
    transport = capture(LocalTransport("t1", tmp_path / "t1"), got.append, lambda _: None)
    result = transport.run("ferry_set Half done\necho oops\nexit 3")
    assert result.exit_code == 3 and result.output_tail == ["oops"]
    assert got == [OutputValue("Half", "done", False)]


def test_set_octopusvariable_over_winrm(winrm_http: Standin) -> None:
    """Through the stand-in: the token arrives in the process environment, the runner's function's lines are
    taken out of both the streamed lines and the returned ones."""
    got: list[OutputValue] = []
    streamed: list[str] = []
    with WinRmTransport("win-01", winrm_http.spec()) as plain:
        transport = capture(plain, got.append, streamed.append)
        result, lines = transport.invoke(SET_OUTPUT_SCRIPT.read_text(encoding="utf-8"),  # type: ignore[attr-defined]
                                         parameters={"Name": "Site.Url", "Value": TRICKY, "Sensitive": True},
                                         on_line=streamed.append)
    assert result.ok, result.output_tail
    assert got == [OutputValue("Site.Url", TRICKY, True), OutputValue("Site.Url.Again", TRICKY, False)]
    assert streamed == ["setting Site.Url", *f"the value is {TRICKY}".split("\n")]
    assert lines == streamed
