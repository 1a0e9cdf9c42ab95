"""WinRM transport (pywinrm's ``Protocol``): one WS-Management shell per target for the whole deployment,
PowerShell scripts run with their values as data, and uploads streamed through one process's stdin.

Why it is built this way:

* pywinrm's ``Session.run_ps`` opens a shell, starts ``powershell.exe -EncodedCommand <script>`` and closes the
  shell on *every* call, and the script rides on the command line (8 KiB under cmd.exe). Here one shell is
  opened on first use and kept; every command is ``powershell -NoProfile -NonInteractive -Command -`` and what
  it runs arrives on stdin as one ASCII line: ferry's fixed ``runner.ps1`` (base64) invoked with a base64 JSON
  request holding the script, its parameters, environment and data. Values are never spliced into PowerShell
  source, and there is no length limit.
* Uploads: ``receive-file.ps1`` keeps its process open and reads lines ``Add-FerryChunk '<base64>'`` from
  stdin, each sized to fill a WS-Management envelope (the server's ``MaxEnvelopeSizekb``, read once per
  connection as pypsrp does), hashing as it writes; only a SHA-256 match is moved into place. The naive way —
  one shell and one process per ~6 KiB chunk on a command line — is what ``benchmarks/winrm_upload.py``
  compares against.
* Trust: HTTPS is verified against the system's CA bundle or the target's ``ca_file``; turning verification
  off has to be written down (``verify: false``) and is reported as a warning. Over plain HTTP the messages
  are encrypted with the NTLM/Kerberos/CredSSP session key (required: never sent in the clear).
* Errors a person can act on: refused credentials, an untrusted certificate, an unreachable port, a script's
  own error text (PowerShell's CLIXML error stream decoded to plain lines).
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import hashlib
import json
import logging
import os
import re
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar

import requests
import xmltodict
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)
from winrm.protocol import Protocol

from snapshots.errors import SnapshotIntegrityError, TransportError
from snapshots.model.infrastructure import Target
from snapshots.model.infrastructure import WinRmTransport as WinRmSpec
from snapshots.variables.masking import Masker
from steps.transports.protocol import LineSink, RunResult
from steps.transports.ssh import read_secret

__all__ = [
    "POWERSHELL",
    "SCRIPTS",
    "WinRmTransport",
    "bootstrap_line",
    "decode_clixml",
    "load_script",
    "request_payload",
]

log = logging.getLogger("ferry.winrm")

SCRIPTS = Path(__file__).resolve().parent / "powershell"
"""The transport's own PowerShell (runner, uploads, reads); a step kind ships its scripts beside itself."""
POWERSHELL = ("powershell", ["-NoProfile", "-NonInteractive", "-Command", "-"])
"""The one command ferry runs over WinRM; what it does arrives on stdin."""

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONFIG_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"
_DEFAULT_ENVELOPE = 153600  # what pywinrm and pypsrp assume when the server's limit cannot be read
_ENVELOPE_OVERHEAD = 6144  # SOAP header, Send element, NTLM/CredSSP MIME framing and signature, with margin
_CHUNK_LINE = "Add-FerryChunk '{}'\r\n"
_TRANSIENT_TRIES = 3
_TRANSIENT_DELAY = 0.5
_FAULT_SHELL_GONE = {2150858843}  # "the shell was not found" (server restarted, idle timeout)
_T = TypeVar("_T")
_AUTH_METHODS: dict[str, Literal["ntlm", "kerberos", "credssp", "certificate", "basic"]] = {
    "ntlm": "ntlm", "kerberos": "kerberos", "credssp": "credssp", "certificate": "certificate", "basic": "basic"}


@cache
def load_script(name: str, folder: Path = SCRIPTS) -> str:
    """The text of one of ferry's shipped ``.ps1`` files (package data: ``steps/transports/powershell`` or a
    step kind's ``powershell`` folder)."""
    return (folder / name).read_text(encoding="utf-8")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def request_payload(script: str, *, parameters: Mapping[str, Any] | None = None,
                    env: Mapping[str, str] | None = None, data: Mapping[str, Any] | None = None,
                    cwd: str | None = None, keep_open: bool = False) -> dict[str, Any]:
    """The JSON request ``runner.ps1`` decodes: everything a script gets, as data."""
    return {"script": script, "parameters": dict(parameters or {}), "env": dict(env or {}),
            "data": data, "cwd": cwd, "keep_open": keep_open}


def bootstrap_line(payload: Mapping[str, Any]) -> str:
    """The single stdin line that makes ``powershell -Command -`` run ``runner.ps1`` with ``payload``.

    Only base64 ([A-Za-z0-9+/=]) sits inside the single quotes, so no value can end the string or be read
    as code; and the line is ASCII, so the console's OEM code page cannot mangle it."""
    runner = _b64(load_script("runner.ps1"))
    request = _b64(json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    return (f"& ([ScriptBlock]::Create([Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('{runner}'))))"
            f" -Payload '{request}'\r\n")


_XML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def decode_clixml(data: bytes | str) -> str:
    """PowerShell's serialized error stream (``#< CLIXML`` + ``<Objs>``) as the plain text it stands for.

    Only the ``Error`` (and ``Warning``) strings are kept; progress records are noise. ``_xHHHH_`` is the
    serializer's escape for characters XML cannot hold (``_x000D__x000A_`` is CRLF). Anything that is not
    CLIXML is returned decoded as it is."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    marker = "#< CLIXML"
    if marker not in text:
        return text
    before, _, rest = text.partition(marker)
    pieces = [before.strip()] if before.strip() else []
    for document in rest.split(marker):
        document = document.strip()
        try:
            root = ET.fromstring(document)
        except ET.ParseError:
            pieces.append(document)
            continue
        for node in root.iter():
            if node.tag.rsplit("}", 1)[-1] == "S" and node.get("S") in ("Error", "Warning") and node.text:
                value = _XML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), node.text)
                pieces.append(("WARNING: " if node.get("S") == "Warning" else "") + value)
    return "".join(p if p.endswith("\n") else p + "\n" for p in pieces).replace("\r\n", "\n").strip()


@dataclass
class _Output:
    """What one command printed: stdout lines (streamed as they come) and stderr bytes."""

    lines: list[str] = field(default_factory=list)
    stderr: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None
    _pending: str = ""
    _decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")("replace"))

    def feed(self, chunk: bytes, final: bool = False) -> list[str]:
        self._pending += self._decoder.decode(chunk, final)
        *complete, self._pending = self._pending.split("\n")
        if final and self._pending:
            complete.append(self._pending)
            self._pending = ""
        new = [line.rstrip("\r") for line in complete]
        self.lines.extend(new)
        return new


class WinRmTransport:
    """One WS-Management shell on one Windows target, reused for every script and upload of a deployment.

    Implements ``steps.transports.protocol.Transport`` (scripts are PowerShell). Commands on the shell run one at a
    time (a lock serialises them), as an NTLM-sealed HTTP connection carries one message stream."""

    def __init__(self, target: str, spec: WinRmSpec, *, password: str | None = None, masker: Masker | None = None,
                 connect: bool = True, tail_lines: int = 40) -> None:
        self.target = target
        self.spec = spec
        self._password = password if password is not None else read_secret(spec.password, target=target)
        self._masker = masker
        self._tail_lines = tail_lines
        self._lock = threading.RLock()
        self.commands_started = 0
        """PowerShell invocations started on this connection: a diagnostic (an IIS install pushing its package
        is one)."""
        self._protocol: Protocol | None = None
        self._shell: str | None = None
        self.max_envelope = _DEFAULT_ENVELOPE
        self.notices: list[str] = []
        """Warnings a person should see once (e.g. certificate verification turned off)."""
        if connect:
            self.connect()

    @classmethod
    def for_target(cls, target: Target, *, home: Path | None = None, password: str | None = None,
                   masker: Masker | None = None) -> WinRmTransport:
        """Connect to a winrm ``Target`` from infrastructure.yaml (``home`` is unused: trust is TLS/NTLM)."""
        spec = target.transport
        if not isinstance(spec, WinRmSpec):
            raise TransportError(f"is a {spec.kind} target, not winrm", target=target.name, operation="connect")
        return cls(target.name, spec, password=password, masker=masker)

    # -- connection -----------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        spec = self.spec
        port = spec.port or (5986 if spec.scheme == "https" else 5985)
        return f"{spec.scheme}://{spec.host}:{port}/wsman"

    def _error(self, message: str, operation: str) -> TransportError:
        return TransportError(self._mask(message), target=self.target, operation=operation)

    def _mask(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "********")
        return self._masker.mask(text) if self._masker else text

    def _trust(self) -> tuple[Literal["validate", "ignore"], str | None]:
        """(server_cert_validation, ca_trust_path) for pywinrm: the given CA file, else the system bundle."""
        spec = self.spec
        if spec.scheme != "https":
            return "validate", None
        if not spec.verify:
            notice = (f"{self.target}: TLS certificate verification is OFF for {self.endpoint} (verify: false) — "
                      "anyone on the path can impersonate this server")
            self.notices.append(notice)
            log.warning(notice)
            return "ignore", None
        if spec.ca_file:
            path = Path(spec.ca_file).expanduser()
            if not path.is_file():
                raise self._error(f"ca_file {path} does not exist", "connect")
            return "validate", str(path)
        paths = ssl.get_default_verify_paths()
        for candidate in (paths.cafile, paths.openssl_cafile):
            if candidate and os.path.isfile(candidate):
                return "validate", candidate
        return "validate", None  # requests' own bundle (certifi)

    def _build_protocol(self) -> Protocol:
        spec = self.spec
        if spec.read_timeout <= spec.operation_timeout:
            raise self._error(f"read_timeout ({spec.read_timeout:g}s) must exceed operation_timeout "
                              f"({spec.operation_timeout:g}s): the server holds a Receive open that long", "connect")
        if spec.auth == "certificate" and spec.scheme != "https":
            raise self._error("certificate auth needs scheme https", "connect")
        validation, ca = self._trust()
        kwargs: dict[str, Any] = {}
        if spec.auth == "certificate":
            kwargs.update(cert_pem=str(Path(spec.cert_file or "").expanduser()),
                          cert_key_pem=str(Path(spec.cert_key_file or "").expanduser()))
        try:
            return Protocol(
                self.endpoint, transport=_AUTH_METHODS[spec.auth],
                username=spec.username, password=self._password, server_cert_validation=validation,
                # None (requests' own bundle) is a value pywinrm handles but leaves out of its annotation
                ca_trust_path=ca if ca is not None else None,  # type: ignore[arg-type]  # None is accepted
                read_timeout_sec=int(spec.read_timeout), operation_timeout_sec=int(spec.operation_timeout),
                # over HTTP the body must be sealed with the auth session key; "always" refuses auth that can't
                message_encryption="always" if spec.scheme == "http" else "auto",
                proxy=None, **kwargs)
        except WinRMError as exc:
            raise self._error(str(exc), "connect") from exc

    def connect(self) -> None:
        """Authenticate, read the server's envelope limit and open the deployment's shell."""
        with self._lock:
            if self._shell is not None:
                return
            if self._protocol is None:
                self._protocol = self._build_protocol()
            self.max_envelope = self._read_max_envelope()
            self._shell = self._call("open a shell", lambda p: p.open_shell(codepage=65001, noprofile=True),
                                     operation="connect")

    def _read_max_envelope(self) -> int:
        """``MaxEnvelopeSizekb`` from the server's WinRM config (500 KiB on current Windows, 150 on old ones).
        Reading it needs an administrator; anyone else gets pywinrm's conservative default."""
        protocol = self.protocol
        request = {"env:Envelope": protocol.build_wsman_header(
            action="http://schemas.xmlsoap.org/ws/2004/09/transfer/Get", resource_uri=_CONFIG_URI)}
        request["env:Envelope"]["env:Body"] = {}
        try:
            reply = self._call("read the WinRM config", lambda p: p.send_message(xmltodict.unparse(request)),
                               operation="connect")
        except TransportError as exc:
            if exc.operation == "authenticate" or "certificate" in str(exc) or "cannot connect" in str(exc):
                raise
            return _DEFAULT_ENVELOPE
        with contextlib.suppress(ET.ParseError, ValueError, TypeError):
            for node in ET.fromstring(reply).iter():
                if node.tag.rsplit("}", 1)[-1] == "MaxEnvelopeSizekb" and node.text:
                    return max(_DEFAULT_ENVELOPE, int(node.text) * 1024)
        return _DEFAULT_ENVELOPE

    @property
    def protocol(self) -> Protocol:
        if self._protocol is None:
            self._protocol = self._build_protocol()
        return self._protocol

    @property
    def shell(self) -> str:
        if self._shell is None:
            self.connect()
        assert self._shell is not None
        return self._shell

    def _call(self, what: str, action: Callable[[Protocol], _T], *, operation: str = "run",
              retry: bool = True) -> _T:
        """Run one WS-Management exchange, retrying transient failures (connection reset or refused, HTTP 503,
        a read timeout) and turning the rest into one clear ``TransportError``."""
        delay = _TRANSIENT_DELAY
        for attempt in range(1, _TRANSIENT_TRIES + 1):
            try:
                return action(self.protocol)
            except WinRMOperationTimeoutError:
                raise
            except InvalidCredentialsError as exc:
                user = self.spec.username or "(certificate)"
                raise self._error(
                    f"{self.endpoint} refused the credentials of {user} ({self.spec.auth}): wrong user name or "
                    "password, or the account may not log on over WinRM", "authenticate") from exc
            except requests.exceptions.SSLError as exc:
                reason = _ssl_reason(exc)
                if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason:
                    raise self._error(
                        f"the TLS certificate of {self.endpoint} is not trusted ({reason}); give the CA that "
                        "signed it in the target's ca_file (turning verification off needs verify: false)",
                        "connect") from exc
                raise self._error(f"TLS with {self.endpoint} failed: {reason}", "connect") from exc
            except requests.exceptions.ConnectionError as exc:
                if attempt < _TRANSIENT_TRIES:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise self._error(f"cannot connect to {self.endpoint}: {_connection_reason(exc)} "
                                  f"(tried {attempt} times)", "connect") from exc
            except requests.exceptions.Timeout as exc:
                if attempt < _TRANSIENT_TRIES and operation != "run":
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise self._error(f"{what}: no answer from {self.endpoint} within {self.spec.read_timeout:g}s",
                                  operation) from exc
            except WSManFaultError as exc:
                raise self._error(f"{what}: WS-Management fault: {exc.reason} (code {exc.wsman_fault_code})",
                                  operation) from exc
            except WinRMTransportError as exc:
                if exc.code in (502, 503, 504) and retry and attempt < _TRANSIENT_TRIES:
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise self._error(f"{what}: HTTP {exc.code} from {self.endpoint}: {exc.response_text[:300]}",
                                  operation) from exc
            except WinRMError as exc:
                raise self._error(f"{what}: {exc}", operation) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Delete the shell (ending anything still running in it) and drop the HTTP session; safe twice."""
        with self._lock:
            protocol, shell = self._protocol, self._shell
            self._shell = None
            if protocol is None:
                return
            if shell is not None:
                with contextlib.suppress(Exception):
                    protocol.close_shell(shell, close_session=False)
            with contextlib.suppress(Exception):
                protocol.transport.close_session()
            self._protocol = None

    def __enter__(self) -> WinRmTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands -------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _command(self) -> Iterator[str]:
        """Start ``powershell -NoProfile -NonInteractive -Command -`` in the shell; clean it up afterwards.

        stdin is a pipe (``WINRS_CONSOLEMODE_STDIN`` false, as Ansible does) so PowerShell reads it as a stream,
        not through a console with its line-length limit. A shell that vanished (idle timeout, service restart)
        is reopened once."""
        executable, arguments = POWERSHELL
        self.commands_started += 1
        try:
            command_id = self._call("start powershell", lambda p: p.run_command(
                self.shell, executable, arguments, console_mode_stdin=False))
        except TransportError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, WSManFaultError) and cause.wsman_fault_code in _FAULT_SHELL_GONE):
                raise
            self._shell = None
            command_id = self._call("start powershell", lambda p: p.run_command(
                self.shell, executable, arguments, console_mode_stdin=False))
        try:
            yield command_id
        finally:
            with contextlib.suppress(Exception):
                self.protocol.cleanup_command(self.shell, command_id)

    def _send(self, command_id: str, text: str, *, end: bool = False) -> None:
        """Write ``text`` to the command's stdin, in pieces that each fit one envelope."""
        data = text.encode("ascii")
        piece = self._max_stdin_bytes()
        pieces = [data[i:i + piece] for i in range(0, len(data), piece)] or [b""]
        for index, chunk in enumerate(pieces):
            last = end and index == len(pieces) - 1

            def send(p: Protocol, chunk: bytes = chunk, last: bool = last) -> None:
                p.send_command_input(self.shell, command_id, chunk, last)

            self._call("send input", send, retry=False)

    def _max_stdin_bytes(self) -> int:
        """stdin bytes per Send: the envelope is base64 of them plus the SOAP around it."""
        return max(3072, (self.max_envelope - _ENVELOPE_OVERHEAD) * 3 // 4)

    def _receive(self, command_id: str, output: _Output, *, deadline: float | None, on_line: LineSink | None,
                 until: Callable[[str], bool] | None = None) -> bool:
        """Receive until the command is done (True) or a stdout line satisfies ``until`` (False).

        Each Receive is a long poll the server holds for up to the operation timeout; it is shortened near
        ``deadline`` so a script timeout is noticed on time."""
        protocol = self.protocol
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise _Deadline()
            budget = self.spec.operation_timeout if remaining is None else min(self.spec.operation_timeout,
                                                                                max(1, int(remaining)))
            protocol.operation_timeout_sec = int(budget)
            try:
                stdout, stderr, code, done = self._call(
                    "receive output", lambda p: p.get_command_output_raw(self.shell, command_id), retry=False)
            except WinRMOperationTimeoutError:
                continue
            finally:
                protocol.operation_timeout_sec = int(self.spec.operation_timeout)
            if stderr:
                output.stderr.extend(stderr)
            matched = False
            for line in output.feed(stdout, final=done):
                if until is not None and until(line):
                    matched = True
                elif on_line is not None:
                    on_line(self._mask(line))
            if done:
                output.exit_code = code
                return True
            if matched:
                return False

    def invoke(self, script: str, *, parameters: Mapping[str, Any] | None = None,
               env: Mapping[str, str] | None = None, data: Mapping[str, Any] | None = None, cwd: str | None = None,
               timeout: float | None = None, on_line: LineSink | None = None) -> tuple[RunResult, list[str]]:
        """Run a PowerShell ``script`` with named ``parameters`` (JSON values); return the result and every
        stdout line (unmasked, for ferry's own ``##ferry-`` replies). stderr is decoded (CLIXML → text) and
        its lines follow the output in ``on_line`` and in the result's tail."""
        payload = request_payload(script, parameters=parameters, env=self._checked_env(env), data=data, cwd=cwd)
        tail, emit = self._tail_and_emit(on_line)
        output = _Output()
        with self._lock, self._command() as command_id:
            self._send(command_id, bootstrap_line(payload), end=True)
            self._read_script(command_id, output, timeout, emit)
        return self._script_result(output, tail, emit), output.lines

    def _checked_env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        """Environment variables for a script: names PowerShell can set, values without NUL bytes."""
        checked = dict(env or {})
        for name, value in checked.items():
            if not _ENV_NAME.match(name):
                raise self._error(f"invalid environment variable name {name!r}", "run")
            if "\0" in str(value):
                raise self._error(f"environment variable {name} contains a NUL byte", "run")
        return checked

    def _tail_and_emit(self, on_line: Callable[[str], None] | None) -> tuple[deque[str], Callable[[str], None]]:
        """The last lines kept for the result, and the callback that keeps them and passes each on."""
        tail: deque[str] = deque(maxlen=self._tail_lines)

        def emit(line: str) -> None:
            tail.append(line)
            if on_line is not None:
                on_line(line)

        return tail, emit

    def _read_script(self, command_id: str, output: _Output, timeout: float | None,
                     emit: Callable[[str], None]) -> None:
        """The script's output until it ends; past ``timeout`` its PowerShell process is stopped."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        try:
            self._receive(command_id, output, deadline=deadline, on_line=emit)
        except _Deadline:
            with contextlib.suppress(Exception):
                self.protocol.cleanup_command(self.shell, command_id)
            raise self._error(f"script timed out after {timeout:g}s; the PowerShell process was terminated",
                              "run") from None

    def _script_result(self, output: _Output, tail: deque[str], emit: Callable[[str], None]) -> RunResult:
        """The exit code and tail, after the error stream's lines (CLIXML decoded, masked)."""
        for line in decode_clixml(bytes(output.stderr)).splitlines() if output.stderr else []:
            emit(self._mask(line))
        code = output.exit_code if output.exit_code is not None else -1
        return RunResult(exit_code=code, output_tail=list(tail))

    def _ferry_script(self, name: str, parameters: Mapping[str, Any], operation: str,
                      timeout: float | None = 300) -> list[str]:
        """Run one of ferry's own scripts; fail with its error text unless it exits 0."""
        result, lines = self.invoke(load_script(name), parameters=parameters, timeout=timeout)
        if not result.ok:
            detail = " / ".join(line for line in result.output_tail if line.strip()) or "no output"
            raise self._error(f"{name} failed (exit code {result.exit_code}): {detail}", operation)
        return lines

    # -- Transport ------------------------------------------------------------------------------------------

    def run(self, script: str, *, env: Mapping[str, str] | None = None, data: Mapping[str, Any] | None = None,
            cwd: str | None = None, timeout: float | None = None, on_line: LineSink | None = None) -> RunResult:
        """Run a PowerShell ``script``: ``env`` become process environment variables, ``data`` is ``$FerryData``.
        Output lines stream to ``on_line`` as the server hands them over; a ``timeout`` terminates the process."""
        result, _ = self.invoke(script, env=env, data=data, cwd=cwd, timeout=timeout, on_line=on_line)
        return result

    def upload(self, local: Path, remote: str, sha256: str) -> bool:
        """Put ``local`` at ``remote`` unless a file with that sha256 is there already; True if bytes were sent.

        One PowerShell process receives the whole file through stdin in envelope-sized base64 lines, hashing
        as it writes a temp file beside ``remote``; the local bytes are hashed as they are read, and a mismatch
        on either side leaves ``remote`` untouched."""
        sha256 = sha256.lower()
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        local = Path(local)
        if not local.is_file():
            raise self._error(f"local file {local} does not exist", "upload")
        payload = request_payload(load_script("receive-file.ps1"), parameters={"Path": remote, "Sha256": sha256},
                                  keep_open=True)
        output = _Output()
        with self._lock, self._command() as command_id:
            self._send(command_id, bootstrap_line(payload))
            done = self._receive(command_id, output, deadline=time.monotonic() + 300, on_line=None,
                                 until=lambda line: line in ("##ferry-ready", "##ferry-present"))
            if not done and "##ferry-present" in output.lines:
                self._receive(command_id, output, deadline=time.monotonic() + 60, on_line=None)
                done = True
            if done:
                if "##ferry-present" in output.lines and output.exit_code == 0:
                    return False
                raise self._upload_error(remote, output)
            self._stream_chunks(command_id, local, remote, sha256, output)
            self._send(command_id, "Complete-FerryUpload\r\n", end=True)
            self._receive(command_id, output, deadline=time.monotonic() + 600, on_line=None)
        if output.exit_code != 0 or not any(line.startswith("##ferry-uploaded ") for line in output.lines):
            raise self._upload_error(remote, output)
        return True

    def _stream_chunks(self, command_id: str, local: Path, remote: str, sha256: str, output: _Output) -> None:
        """Send ``local`` as ``Add-FerryChunk`` lines to a waiting receive-file.ps1, hashing as it reads; a local
        file that is not the pinned one stops the upload (nothing is moved into place)."""
        raw = self._chunk_bytes()
        digest = hashlib.sha256()
        with open(local, "rb") as source:
            while chunk := source.read(raw):
                digest.update(chunk)
                line = _CHUNK_LINE.format(base64.b64encode(chunk).decode("ascii"))
                try:
                    self._send(command_id, line)
                except TransportError:
                    # the receiver may have stopped (disk full, ...): its own message says why
                    with contextlib.suppress(TransportError, _Deadline):
                        self._receive(command_id, output, deadline=time.monotonic() + 30, on_line=None)
                    if output.exit_code not in (None, 0):
                        raise self._upload_error(remote, output) from None
                    raise
        if digest.hexdigest() != sha256:
            self._send(command_id, "Stop-FerryUpload 'the local file does not match the release' 5\r\n", end=True)
            with contextlib.suppress(TransportError, _Deadline):
                self._receive(command_id, output, deadline=time.monotonic() + 60, on_line=None)
            raise SnapshotIntegrityError(f"{local} has sha256 {digest.hexdigest()}, expected {sha256}: "
                                         f"refusing to install it on {self.target}")

    def upload_then_invoke(self, local: Path, remote: str, sha256: str, script: str, *,
                           parameters: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                           timeout: float | None = None, on_line: LineSink | None = None
                           ) -> tuple[bool, RunResult, list[str]]:
        """``upload`` and then ``invoke(script)`` in ONE PowerShell invocation (an install's one round of
        commands): receive-file.ps1 ``-Continue`` stays open after ``##ferry-present`` or the completed upload,
        and the script's runner line follows on the same stdin. Returns whether bytes were sent, the script's
        result and its stdout lines (as ``invoke``)."""
        sha256 = sha256.lower()
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        local = Path(local)
        if not local.is_file():
            raise self._error(f"local file {local} does not exist", "upload")
        env = self._checked_env(env)
        receive = request_payload(load_script("receive-file.ps1"),
                                  parameters={"Path": remote, "Sha256": sha256, "Continue": True}, keep_open=True)
        tail, emit = self._tail_and_emit(on_line)
        output = _Output()
        with self._lock, self._command() as command_id:
            self._send(command_id, bootstrap_line(receive))
            done = self._receive(command_id, output, deadline=time.monotonic() + 300, on_line=None,
                                 until=lambda line: line in ("##ferry-ready", "##ferry-present"))
            if done:
                raise self._upload_error(remote, output)
            sent = "##ferry-ready" in output.lines
            if sent:
                self._stream_chunks(command_id, local, remote, sha256, output)
                self._send(command_id, "Complete-FerryUpload\r\n")
                done = self._receive(command_id, output, deadline=time.monotonic() + 600, on_line=None,
                                     until=lambda line: line.startswith("##ferry-uploaded "))
                if done:
                    raise self._upload_error(remote, output)
            output.lines.clear()  # from here on: the script's own lines
            self._send(command_id, bootstrap_line(request_payload(script, parameters=parameters, env=env)), end=True)
            self._read_script(command_id, output, timeout, emit)
        return sent, self._script_result(output, tail, emit), output.lines

    def _chunk_bytes(self) -> int:
        """Raw bytes per ``Add-FerryChunk`` line so that base64(line) plus the SOAP fits one envelope."""
        line_budget = self._max_stdin_bytes() - len(_CHUNK_LINE.format(""))
        return max(3, line_budget * 3 // 4 // 3 * 3)

    def _upload_error(self, remote: str, output: _Output) -> TransportError:
        text = decode_clixml(bytes(output.stderr)).strip() or " / ".join(output.lines[-5:]) or "no output"
        return self._error(f"{remote}: {text} (exit code {output.exit_code})", "upload")

    def pull(self, url: str, remote: str, sha256: str, *, timeout: float = 600) -> bool:
        """``acquire: target-pulls``: the target downloads ``url`` itself and keeps it only if its sha256
        matches; True when it downloaded, False when ``remote`` already held those bytes."""
        lines = self._ferry_script("pull-package.ps1", {"Url": url, "Path": remote, "Sha256": sha256.lower(),
                                                         "TimeoutSeconds": int(timeout)}, "download", timeout + 60)
        return "##ferry-present" not in lines

    def read_file(self, remote: str) -> bytes | None:
        """A small file's bytes, or None when it does not exist (relative paths: the deploy user's home)."""
        for line in self._ferry_script("read-file.ps1", {"Path": remote}, "read"):
            if line == "##ferry-nofile":
                return None
            if line.startswith("##ferry-file "):
                return base64.b64decode(line.split(" ", 1)[1])
        raise self._error(f"read-file.ps1 gave no answer for {remote}", "read")

    def write_file(self, remote: str, data: bytes, mode: int | None = None) -> None:
        """Replace a small file atomically, creating its folder (relative paths: the deploy user's home).
        ``mode`` does not apply: on Windows the file inherits its folder's ACL."""
        self._ferry_script("write-file.ps1", {"Path": remote, "Content": base64.b64encode(data).decode("ascii")},
                           "write")


class _Deadline(Exception):
    """A script ran past its timeout."""


def _ssl_reason(exc: Exception) -> str:
    text = str(exc)
    match = re.search(r"\[SSL: ([A-Z_]+)\][^)'\"]*", text)
    return match.group(0).strip() if match else text


def _connection_reason(exc: Exception) -> str:
    text = str(exc)
    for pattern, reason in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                            ("Name or service not known", "host name not found"),
                            ("Connection reset", "connection reset")):
        if pattern in text:
            return reason
    return text[:200]

