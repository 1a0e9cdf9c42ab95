"""Output variables travelling back from a script: ``set_octopusvariable`` / ``ferry_set`` (bash) and
``Set-OctopusVariable`` (PowerShell) print one structured line on stdout,

    ##ferry[setVariable name='<base64>' value='<base64>' sensitive='True|False' token='<run token>']

and ``capture`` — wrapped around any transport for one step — takes such lines out of the output before
anything logs them, hands each value to ``on_output`` (which adds a sensitive one to the run's masker) and
only then passes the next line on. Names and values are base64 of UTF-8, so no value can break or forge a
line; the token is fresh for every script run (``FERRY_SERVICE_TOKEN`` in its environment), so a line that
merely appears in output — a log file the script cats, a command echoing its input — sets nothing and is
logged like any other line.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from steps.transports.protocol import LineSink, RunResult, Transport

TOKEN_ENV = "FERRY_SERVICE_TOKEN"
MAX_NAME = 200
MAX_VALUE = 256 * 1024
_LINE = re.compile(r"^##ferry\[setVariable name='([A-Za-z0-9+/=]*)' value='([A-Za-z0-9+/=]*)' "
                   r"sensitive='(True|False)' token='([0-9a-f]+)'\]\s*$")


@dataclass(frozen=True)
class OutputValue:
    """One value a script set: what ``on_output`` receives."""

    name: str
    value: str
    sensitive: bool


OnOutput = Callable[[OutputValue], None]


def message(name: str, value: str, sensitive: bool, token: str) -> str:
    """The line a script prints (the bash and PowerShell helpers write exactly this)."""
    def b64(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    return f"##ferry[setVariable name='{b64(name)}' value='{b64(value)}' sensitive='{sensitive}' token='{token}']"


def check_name(name: str) -> str | None:
    """Why ``name`` cannot be an output variable's name, or None."""
    if not name.strip():
        return "an output variable needs a name"
    if len(name) > MAX_NAME:
        return f"output variable name {name[:40]!r}… is longer than {MAX_NAME} characters"
    if any(c in name for c in "[]\r\n#{}"):
        return f"output variable name {name!r} may not contain [ ] # {{ }} or line breaks"
    return None


class _Filter:
    """The line sink put between a transport and the step: messages out, everything else through."""

    def __init__(self, token: str, on_line: LineSink | None, on_output: OnOutput,
                 warn: Callable[[str], None]) -> None:
        self.token, self.on_line, self.on_output, self.warn = token, on_line, on_output, warn
        self.seen: set[str] = set()

    def __call__(self, line: str) -> None:
        if self.take(line):
            return
        if self.on_line is not None:
            self.on_line(line)

    def take(self, line: str) -> bool:
        """True when ``line`` is this run's message (handled, not to be logged)."""
        if not line.startswith("##ferry[setVariable "):
            return False
        match = _LINE.match(line)
        if match is None or not secrets.compare_digest(match.group(4), self.token):
            return False  # not from this run's helpers: an ordinary line
        self.seen.add(line)
        try:
            name = base64.b64decode(match.group(1), validate=True).decode("utf-8")
            value = base64.b64decode(match.group(2), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            self.warn("ignored an output variable message that is not base64 of UTF-8 text")
            return True
        problem = check_name(name) or (f"output variable {name!r}: the value is longer than {MAX_VALUE} characters"
                                       if len(value) > MAX_VALUE else None)
        if problem:
            self.warn(f"ignored: {problem}")
            return True
        self.on_output(OutputValue(name, value, match.group(3) == "True"))
        return True

    def strip(self, lines: list[str]) -> list[str]:
        return [line for line in lines if line not in self.seen]


class CapturingTransport:
    """A transport whose scripts may set output variables: every ``run`` (and WinRM's ``invoke``) gets a fresh
    token, and the messages never reach the step's log, its error tail or its returned lines."""

    def __init__(self, transport: Transport, on_output: OnOutput, warn: Callable[[str], None]) -> None:
        self._transport = transport
        self._on_output = on_output
        self._warn = warn

    @property
    def wrapped(self) -> Transport:
        return self._transport

    def run(self, script: str, *, env: Mapping[str, str] | None = None, data: Mapping[str, Any] | None = None,
            cwd: str | None = None, timeout: float | None = None, on_line: LineSink | None = None) -> RunResult:
        token = secrets.token_hex(16)
        sink = _Filter(token, on_line, self._on_output, self._warn)
        result = self._transport.run(script, env={**(env or {}), TOKEN_ENV: token}, data=data, cwd=cwd,
                                     timeout=timeout, on_line=sink)
        result.output_tail = sink.strip(result.output_tail)
        return result

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._transport, name)
        if name == "run_program":
            return self._run_program(attribute)
        if name == "upload_then_invoke":
            return self._upload_then_invoke(attribute)
        if name != "invoke":
            return attribute

        def invoke(script: str, *, env: Mapping[str, str] | None = None, on_line: LineSink | None = None,
                   **options: Any) -> tuple[RunResult, list[str]]:
            token = secrets.token_hex(16)
            sink = _Filter(token, on_line, self._on_output, self._warn)
            result, lines = attribute(script, env={**(env or {}), TOKEN_ENV: token}, on_line=sink, **options)
            result.output_tail = sink.strip(result.output_tail)
            return result, sink.strip(lines)

        return invoke

    def _run_program(self, attribute: Callable[..., RunResult]) -> Callable[..., RunResult]:
        """SSH's one-session program (the package install): its scripts get a token, its messages are taken."""
        def run_program(program: str, header: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                        on_line: LineSink | None = None, **options: Any) -> RunResult:
            token = secrets.token_hex(16)
            sink = _Filter(token, on_line, self._on_output, self._warn)
            result = attribute(program, header, env={**(env or {}), TOKEN_ENV: token}, on_line=sink, **options)
            result.output_tail = sink.strip(result.output_tail)
            return result

        return run_program

    def _upload_then_invoke(self, attribute: Callable[..., tuple[bool, RunResult, list[str]]]
                            ) -> Callable[..., tuple[bool, RunResult, list[str]]]:
        """WinRM's upload + script in one invocation: the script gets a token, its messages are taken."""
        def upload_then_invoke(*args: Any, env: Mapping[str, str] | None = None, on_line: LineSink | None = None,
                               **options: Any) -> tuple[bool, RunResult, list[str]]:
            token = secrets.token_hex(16)
            sink = _Filter(token, on_line, self._on_output, self._warn)
            sent, result, lines = attribute(*args, env={**(env or {}), TOKEN_ENV: token}, on_line=sink, **options)
            result.output_tail = sink.strip(result.output_tail)
            return sent, result, sink.strip(lines)

        return upload_then_invoke


def capture(transport: Transport, on_output: OnOutput, warn: Callable[[str], None]) -> Transport:
    """``transport`` with output-variable messages taken out of its scripts' output (see the module doc)."""
    wrapped: Transport = CapturingTransport(transport, on_output, warn)
    return wrapped
