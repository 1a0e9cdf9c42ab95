"""A WS-Management STAND-IN for a Windows server — not Windows, not WinRM, not PowerShell, not IIS.

No Windows can run on this machine, so this process plays one as honestly as a Linux box can:

* **Real protocol.** It speaks WS-Management over HTTP(S) the way pywinrm needs it: SOAP envelopes for
  ``Create`` (shell), ``Command``, ``Send`` (stdin), ``Receive`` (long-polled output, the
  ``OperationTimeout`` fault code 2150858793 when nothing came), ``Signal`` and ``Delete``, plus the WS-Transfer
  ``Get`` of the WinRM config that clients read ``MaxEnvelopeSizekb`` from. Requests larger than that are
  refused, and each Receive answer stays within the client's ``MaxEnvelopeSize``, as real WinRM does.
* **Real authentication.** NTLM through pyspnego's acceptor (a wrong password is refused with 401; over HTTPS
  the channel binding token is checked), message encryption over HTTP (``multipart/encrypted``, the
  ``HTTP-SPNEGO-session-encrypted`` protocol of MS-WSMV 2.2.9.1, unencrypted traffic refused), Basic only
  over HTTPS, and client-certificate auth, with a certificate from a test CA.
* **Not real PowerShell.** A command must be ``powershell -NoProfile -NonInteractive -Command -``; each stdin
  line must be one ferry writes: its ``runner.ps1`` bootstrap (compared byte for byte with the shipped file)
  carrying a request whose script is one of ferry's shipped ``.ps1`` files (by SHA-256), or the upload's
  ``Add-FerryChunk``/``Complete-FerryUpload`` lines. Each known script is *emulated by Python* that reproduces
  its effect (``tests/standins/iis_standin.py``) on a simulated IIS (sites, app pools, bindings, physical paths in
  a JSON state file) and on a sandboxed ``C:`` drive. Anything else is refused with an error. Whether the
  ``.ps1`` files do the same on real Windows is what the ``windows`` tests and
  ``.github/workflows/windows-iis.yml`` check; here they are only parsed (tree-sitter-powershell).
* ``cmd /c echo <text> >> file`` and ``certutil -f -decode`` are emulated too, for the naive upload the
  benchmark compares against.

Run: ``python -m tests.standins.wsman_standin CONFIG.json`` (see ``StandinConfig``); it prints ``ready`` when
listening. ``NTLM_USER_FILE`` is set by the config's users.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
CONFIG_URI = "http://schemas.microsoft.com/wbem/wsman/1/config"
A_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
A_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
A_GET = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
A_COMMAND = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command"
A_SEND = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send"
A_RECEIVE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive"
A_SIGNAL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal"
STATE_RUNNING = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Running"
STATE_DONE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/CommandState/Done"
FAULT_TIMEOUT = 2150858793
FAULT_SHELL_NOT_FOUND = 2150858843
FAULT_ENVELOPE = 2150858817
FAULT_ACCESS_DENIED = 5
BOUNDARY = b"--Encrypted Boundary"
ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
MUTUAL = "http://schemas.dmtf.org/wbem/wsman/1/wsman/secprofile/https/mutual"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class StandinConfig:
    """Everything one stand-in "server" is: where it listens, who may log on, where its state lives."""

    address: str
    port: int
    state_dir: str
    scheme: str = "http"
    users: dict[str, str] = field(default_factory=lambda: {"deploy": "Passw0rd!"})
    admins: list[str] = field(default_factory=lambda: ["deploy"])
    basic: bool = True
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    cert_users: dict[str, str] = field(default_factory=dict)
    """Client-certificate common name → user (WinRM's certificate mapping)."""
    max_envelope_kb: int = 500
    machine: str = "WIN-STANDIN"
    extra_scripts: dict[str, str] = field(default_factory=dict)
    """Extra known scripts for tests: path of a .ps1 → name of its Python stand-in in iis_standin.HANDLERS."""

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> StandinConfig:
        return cls(**json.loads(path.read_text()))


# ------------------------------------------------------------------------------------------- SOAP replies

def _envelope(action: str, relates_to: str, body: str, extra_header: str = "") -> bytes:
    return (
        '<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
        'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
        'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
        'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" '
        'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">'
        f"<s:Header><a:Action>{action}</a:Action><a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{relates_to}</a:RelatesTo>{extra_header}</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def _fault(relates_to: str, code: int, reason: str, machine: str, subcode: str = "w:InternalError") -> bytes:
    body = (
        "<s:Fault><s:Code><s:Value>s:Receiver</s:Value>"
        f"<s:Subcode><s:Value>{subcode}</s:Value></s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(reason)}</s:Text></s:Reason>'
        f'<s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" Code="{code}" '
        f'Machine="{machine}"><f:Message>{escape(reason)}</f:Message></f:WSManFault></s:Detail></s:Fault>')
    return _envelope("http://schemas.dmtf.org/wbem/wsman/1/wsman/fault", relates_to, body)


class SoapFault(Exception):
    def __init__(self, code: int, reason: str, subcode: str = "w:InternalError", status: int = 500) -> None:
        super().__init__(reason)
        self.code, self.reason, self.subcode, self.status = code, reason, subcode, status


# ------------------------------------------------------------------------------------------- processes

class Pipe:
    """A byte stream between the HTTP side and an emulated process (stdin, stdout or stderr)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False
        self.cond = threading.Condition()

    def write(self, data: bytes) -> None:
        with self.cond:
            self.data.extend(data)
            self.cond.notify_all()

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def readline(self) -> bytes | None:
        """The next line (without its newline), or None at end of input."""
        with self.cond:
            while True:
                index = self.data.find(b"\n")
                if index >= 0:
                    line = bytes(self.data[:index])
                    del self.data[:index + 1]
                    return line.rstrip(b"\r")
                if self.closed:
                    if self.data:
                        line = bytes(self.data)
                        self.data.clear()
                        return line.rstrip(b"\r")
                    return None
                self.cond.wait()

    def take(self, limit: int) -> bytes:
        with self.cond:
            chunk = bytes(self.data[:limit])
            del self.data[:limit]
            return chunk


class Process:
    """One command in a shell: a thread running an emulation, with stdin/stdout/stderr pipes."""

    def __init__(self, server: Standin, shell: Shell, command: str, arguments: str) -> None:
        self.id = str(uuid.uuid4()).upper()
        self.server, self.shell = server, shell
        self.command, self.arguments = command, arguments
        self.stdin, self.stdout, self.stderr = Pipe(), Pipe(), Pipe()
        self.exit_code: int | None = None
        self.terminated = threading.Event()
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._main, name=f"ps-{self.id[:8]}", daemon=True)
        self.thread.start()

    def out(self, text: str) -> None:
        self.stdout.write((text + "\r\n").encode("utf-8"))
        self._notify()

    def err(self, text: str) -> None:
        self.stderr.write(text.encode("utf-8"))
        self._notify()

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    def _main(self) -> None:
        from tests.standins import iis_standin
        try:
            code = iis_standin.run_process(self)
        except Exception as exc:  # the stand-in's own bug: say so, do not hang the client
            self.err(f"ferry WS-Management stand-in internal error: {type(exc).__name__}: {exc}\r\n")
            code = 1
        self.exit_code = code
        self.stdout.close()
        self.stderr.close()
        self._notify()

    @property
    def done(self) -> bool:
        return self.exit_code is not None

    def receive(self, timeout: float, limit: int) -> tuple[bytes, bytes, bool]:
        """Wait until there is output or the process ended (at most ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (self.stdout.data or self.stderr.data or self.done):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self.changed.wait(remaining)
        out = self.stdout.take(limit)
        err = self.stderr.take(max(0, limit - len(out)))
        done = self.done and not self.stdout.data and not self.stderr.data
        return out, err, done

    def terminate(self) -> None:
        self.terminated.set()
        self.stdin.close()


@dataclass
class Shell:
    id: str
    user: str
    processes: dict[str, Process] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- the server

class Standin:
    """The stand-in server: shells, processes, the simulated IIS, its site listeners."""

    def __init__(self, config: StandinConfig) -> None:
        from tests.standins import iis_standin, service_standin
        self.config = config
        self.state_dir = Path(config.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.shells: dict[str, Shell] = {}
        self.lock = threading.Lock()
        self.iis = iis_standin.Iis(self)
        self.known_scripts = iis_standin.known_scripts(config.extra_scripts)
        self.services = service_standin.ServiceTable(self.state_dir)
        self.requests = 0

    def fs(self, windows_path: str) -> Path:
        """Where a Windows path lives in the sandbox: ``C:\\a\\b`` → ``<state>/fs/C/a/b``."""
        match = re.match(r"^([A-Za-z]):[\\/]*(.*)$", windows_path)
        if not match:
            raise ValueError(f"not an absolute Windows path: {windows_path!r}")
        parts = [p for p in re.split(r"[\\/]+", match.group(2)) if p]
        if any(p == ".." for p in parts):
            raise ValueError(f"'..' in {windows_path!r}")
        return self.state_dir.joinpath("fs", match.group(1).upper(), *parts)

    def home(self, user: str) -> str:
        return f"C:\\Users\\{user}"

    # -- WS-Management operations ---------------------------------------------------------------------------

    def handle(self, body: bytes, user: str) -> bytes:
        limit = self.config.max_envelope_kb * 1024
        if len(body) > limit:
            raise SoapFault(FAULT_ENVELOPE, f"The WS-Management service cannot process the request because the "
                            f"request size {len(body)} exceeds MaxEnvelopeSizekb ({self.config.max_envelope_kb}).",
                            "w:EncodingLimit")
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise SoapFault(2150858817, f"The WS-Management service cannot process the request because the XML "
                            f"is invalid: {exc}", "w:SchemaValidationError") from None
        header = root.find("s:Header", NS)
        envelope_body = root.find("s:Body", NS)
        if header is None or envelope_body is None:
            raise SoapFault(2150858817, "not a SOAP envelope", "w:SchemaValidationError")
        action = (header.findtext("a:Action", "", NS) or "").strip()
        message_id = (header.findtext("a:MessageID", "", NS) or "").strip()
        resource = (header.findtext("w:ResourceURI", "", NS) or "").strip()
        timeout = _duration(header.findtext("w:OperationTimeout", "PT60S", NS) or "PT60S")
        max_size = int(header.findtext("w:MaxEnvelopeSize", "153600", NS) or 153600)
        selector = header.find("w:SelectorSet/w:Selector[@Name='ShellId']", NS)
        shell_id = selector.text if selector is not None else None
        self.requests += 1
        try:
            if action == A_GET and resource == CONFIG_URI:
                if user not in self.config.admins:
                    raise SoapFault(FAULT_ACCESS_DENIED, "Access is denied.", "w:AccessDenied")
                return _envelope(action + "Response", message_id, (
                    '<cfg:Config xmlns:cfg="http://schemas.microsoft.com/wbem/wsman/1/config">'
                    f"<cfg:MaxEnvelopeSizekb>{self.config.max_envelope_kb}</cfg:MaxEnvelopeSizekb>"
                    "<cfg:MaxTimeoutms>60000</cfg:MaxTimeoutms><cfg:MaxBatchItems>32000</cfg:MaxBatchItems>"
                    "</cfg:Config>"))
            if resource != SHELL_URI:
                raise SoapFault(2150858778, f"unsupported resource {resource}", "w:DestinationUnreachable")
            if action == A_CREATE:
                return self._create(message_id, user)
            shell = self._shell(shell_id, user)
            if action == A_COMMAND:
                return self._command(message_id, shell, envelope_body)
            if action == A_SEND:
                return self._send(message_id, shell, envelope_body)
            if action == A_RECEIVE:
                return self._receive(message_id, shell, envelope_body, timeout, max_size)
            if action == A_SIGNAL:
                return self._signal(message_id, shell, envelope_body)
            if action == A_DELETE:
                with self.lock:
                    self.shells.pop(shell.id, None)
                for process in shell.processes.values():
                    process.terminate()
                return _envelope(A_DELETE + "Response", message_id, "")
            raise SoapFault(2150858778, f"unsupported action {action}", "a:ActionNotSupported")
        except SoapFault as fault:
            fault.relates_to = message_id  # type: ignore[attr-defined]
            raise

    def _create(self, message_id: str, user: str) -> bytes:
        shell = Shell(str(uuid.uuid4()).upper(), user)
        with self.lock:
            self.shells[shell.id] = shell
        body = (
            "<x:ResourceCreated><a:Address>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:Address>"
            "<a:ReferenceParameters><w:ResourceURI>" + SHELL_URI + "</w:ResourceURI>"
            f'<w:SelectorSet><w:Selector Name="ShellId">{shell.id}</w:Selector></w:SelectorSet>'
            "</a:ReferenceParameters></x:ResourceCreated>"
            f"<rsp:Shell><rsp:ShellId>{shell.id}</rsp:ShellId><rsp:Owner>{escape(user)}</rsp:Owner></rsp:Shell>")
        return _envelope(A_CREATE + "Response", message_id, body)

    def _shell(self, shell_id: str | None, user: str) -> Shell:
        with self.lock:
            shell = self.shells.get(shell_id or "")
        if shell is None or shell.user != user:
            raise SoapFault(FAULT_SHELL_NOT_FOUND, f"The request for the Windows Remote Shell with ShellId "
                            f"{shell_id} failed because the shell was not found on the server.",
                            "w:InvalidSelectors")
        return shell

    def _process(self, shell: Shell, command_id: str | None) -> Process:
        process = shell.processes.get(command_id or "")
        if process is None:
            raise SoapFault(2150858843, f"no command {command_id} in shell {shell.id}", "w:InvalidSelectors")
        return process

    def _command(self, message_id: str, shell: Shell, body: ET.Element) -> bytes:
        line = body.find("rsp:CommandLine", NS)
        command = (line.findtext("rsp:Command", "", NS) if line is not None else "") or ""
        arguments = (line.findtext("rsp:Arguments", "", NS) if line is not None else "") or ""
        if len(shell.processes) >= 25:
            raise SoapFault(2150859174, "The WS-Management service cannot process the request. The maximum "
                            "number of concurrent operations for this user has been exceeded.", "w:QuotaLimit")
        process = Process(self, shell, command.strip(), arguments.strip())
        shell.processes[process.id] = process
        return _envelope(A_COMMAND + "Response", message_id,
                         f"<rsp:CommandResponse><rsp:CommandId>{process.id}</rsp:CommandId></rsp:CommandResponse>")

    def _send(self, message_id: str, shell: Shell, body: ET.Element) -> bytes:
        stream = body.find("rsp:Send/rsp:Stream", NS)
        if stream is None:
            raise SoapFault(2150858817, "Send without a stream", "w:SchemaValidationError")
        process = self._process(shell, stream.get("CommandId"))
        if process.done or process.stdin.closed:
            raise SoapFault(2150858843, "The pipe has been ended. The command is no longer accepting input.",
                            "w:InvalidSelectors")
        if stream.text:
            process.stdin.write(base64.b64decode(stream.text))
        if stream.get("End", "false").lower() == "true":
            process.stdin.close()
        return _envelope(A_SEND + "Response", message_id, "<rsp:SendResponse/>")

    def _receive(self, message_id: str, shell: Shell, body: ET.Element, timeout: float, max_size: int) -> bytes:
        desired = body.find("rsp:Receive/rsp:DesiredStream", NS)
        process = self._process(shell, desired.get("CommandId") if desired is not None else None)
        limit = max(1024, (max_size - 4096) * 3 // 4)
        out, err, done = process.receive(timeout, limit)
        if not (out or err or done):
            raise SoapFault(FAULT_TIMEOUT, "The WS-Management service cannot complete the operation within the "
                            "time specified in OperationTimeout.", "w:TimedOut")
        cid = process.id
        streams = ""
        if out:
            streams += f'<rsp:Stream Name="stdout" CommandId="{cid}">{base64.b64encode(out).decode()}</rsp:Stream>'
        if err:
            streams += f'<rsp:Stream Name="stderr" CommandId="{cid}">{base64.b64encode(err).decode()}</rsp:Stream>'
        if done:
            streams += (f'<rsp:Stream Name="stdout" CommandId="{cid}" End="true"></rsp:Stream>'
                        f'<rsp:CommandState CommandId="{cid}" State="{STATE_DONE}">'
                        f"<rsp:ExitCode>{process.exit_code}</rsp:ExitCode></rsp:CommandState>")
        else:
            streams += f'<rsp:CommandState CommandId="{cid}" State="{STATE_RUNNING}"/>'
        return _envelope(A_RECEIVE + "Response", message_id,
                         f'<rsp:ReceiveResponse SequenceID="0">{streams}</rsp:ReceiveResponse>')

    def _signal(self, message_id: str, shell: Shell, body: ET.Element) -> bytes:
        signal_node = body.find("rsp:Signal", NS)
        command_id = signal_node.get("CommandId") if signal_node is not None else None
        process = shell.processes.pop(command_id or "", None)
        if process is not None:
            process.terminate()
        return _envelope(A_SIGNAL + "Response", message_id, "<rsp:SignalResponse/>")


def _duration(text: str) -> float:
    match = re.match(r"^PT(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$", text.strip())
    if not match:
        return 60.0
    return float(match.group(1) or 0) * 60 + float(match.group(2) or 0)


# ------------------------------------------------------------------------------------------- HTTP + auth

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    standin: Standin

    def setup(self) -> None:
        super().setup()
        # headers and body go out as two writes: without NODELAY, Nagle + the client's delayed ACK stall each
        # reply ~40 ms (HTTP.sys does not do that to real WinRM clients)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ntlm: Any = None
        self.user: str | None = None

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body and "Content-Type" not in (headers or {}):
            self.send_header("Content-Type", "application/soap+xml;charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _challenge(self) -> dict[str, str]:
        config = self.standin.config
        offers = ["Negotiate"]
        if config.basic and config.scheme == "https":
            offers.append('Basic realm="WSMAN"')
        return {"WWW-Authenticate": ", ".join(offers)}

    def do_GET(self) -> None:
        self._reply(405)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/").lower() != "/wsman":
            self._reply(404)
            return
        config = self.standin.config
        authorization = self.headers.get("Authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() in ("negotiate", "ntlm"):
            if not self._ntlm_step(scheme, token):
                return
        elif scheme.lower() == "basic":
            if config.scheme != "https" or not config.basic:
                self._reply(401, headers=self._challenge())
                return
            user, _, password = base64.b64decode(token).decode("utf-8", "replace").partition(":")
            if config.users.get(user) != password:
                self._reply(401, headers=self._challenge())
                return
            self.user = user
        elif authorization == MUTUAL and config.scheme == "https":
            user = self._certificate_user()
            if user is None:
                self._reply(401, headers=self._challenge())
                return
            self.user = user
        elif self.user is None:
            self._reply(401, headers=self._challenge())
            return
        content_type = self.headers.get("Content-Type", "")
        encrypted = content_type.startswith("multipart/encrypted")
        if encrypted:
            if self.ntlm is None or not self.ntlm.complete:
                self._reply(400)
                return
            body = self._decrypt(raw)
        else:
            if raw and config.scheme == "http":  # AllowUnencrypted=false, WinRM's default
                self._reply(400, b"unencrypted traffic is disabled on this server (AllowUnencrypted=false)",
                            {"Content-Type": "text/plain"})
                return
            body = raw
        if not body:
            self._reply(200)
            return
        status = 200
        try:
            reply = self.standin.handle(body, self.user or "")
        except SoapFault as fault:
            status = fault.status
            reply = _fault(getattr(fault, "relates_to", ""), fault.code, fault.reason, config.machine, fault.subcode)
        if encrypted:
            self._reply(status, self._encrypt(reply), {
                "Content-Type": f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'})
        else:
            self._reply(status, reply)

    def _ntlm_step(self, scheme: str, token: str) -> bool:
        import spnego
        from spnego.channel_bindings import GssChannelBindings

        data = base64.b64decode(token)
        if self.ntlm is None or data[8:12] == b"\x01\x00\x00\x00":  # a NEGOTIATE message starts a new context
            self.ntlm = spnego.server(protocol="ntlm")
            self.user = None
        bindings = None
        if self.standin.config.scheme == "https" and data[8:12] == b"\x03\x00\x00\x00":
            certificate = self.server.certificate_der  # type: ignore[attr-defined]
            bindings = GssChannelBindings(application_data=b"tls-server-end-point:"
                                          + hashlib.sha256(certificate).digest())
        try:
            reply = self.ntlm.step(data, channel_bindings=bindings)
        except Exception:  # wrong password, tampered token, channel binding mismatch: Windows just says 401
            self.ntlm = None
            self._reply(401, headers=self._challenge())
            return False
        if not self.ntlm.complete:
            self._reply(401, headers={"WWW-Authenticate": f"{scheme} {base64.b64encode(reply or b'').decode()}"})
            return False
        principal = self.ntlm.client_principal or ""
        self.user = principal.split("\\")[-1]
        return True

    def _certificate_user(self) -> str | None:
        getpeercert = getattr(self.connection, "getpeercert", None)
        peer = getpeercert() if getpeercert else None
        if not peer:
            return None
        for rdn in peer.get("subject", ()):
            for key, value in rdn:
                if key == "commonName" and value in self.standin.config.cert_users:
                    return self.standin.config.cert_users[value]
        return None

    def _decrypt(self, raw: bytes) -> bytes:
        parts = [p for p in raw.split(BOUNDARY + b"\r\n") if p]
        message = b""
        for i in range(0, len(parts) - 1, 2):
            length = int(parts[i].split(b"Length=")[1].strip())
            payload = parts[i + 1]
            if payload.endswith(BOUNDARY + b"--\r\n"):
                payload = payload[: -len(BOUNDARY + b"--\r\n")]
            payload = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
            signature_length = struct.unpack("<i", payload[:4])[0]
            signature = payload[4:4 + signature_length]
            sealed = payload[4 + signature_length:]
            plain = self.ntlm.unwrap(signature + sealed).data
            if len(plain) != length:
                raise ValueError("decrypted length differs from the announced one")
            message += plain
        return message

    def _encrypt(self, message: bytes) -> bytes:
        wrapped = self.ntlm.wrap(message, encrypt=True).data
        signature, sealed = wrapped[:16], wrapped[16:]
        return (BOUNDARY + b"\r\n"
                + f"\tContent-Type: {ENCRYPTED_PROTOCOL}\r\n".encode()
                + f"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={len(message)}\r\n".encode()
                + BOUNDARY + b"\r\n\tContent-Type: application/octet-stream\r\n"
                + struct.pack("<i", len(signature)) + signature + sealed + BOUNDARY + b"--\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    certificate_der: bytes = b""


def serve(config: StandinConfig, *, ready: Callable[[], None] | None = None) -> None:
    users_file = Path(config.state_dir) / "ntlm-users"
    Path(config.state_dir).mkdir(parents=True, exist_ok=True)
    users_file.write_text("".join(f":{user}:{password}\n" for user, password in config.users.items()))
    os.environ["NTLM_USER_FILE"] = str(users_file)
    standin = Standin(config)
    handler = type("BoundHandler", (Handler,), {"standin": standin})
    server = _Server((config.address, config.port), handler)
    if config.scheme == "https":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(config.cert_file or "", config.key_file)
        if config.client_ca_file:
            context.verify_mode = ssl.CERT_OPTIONAL
            context.load_verify_locations(config.client_ca_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        pem = Path(config.cert_file or "").read_text()
        server.certificate_der = ssl.PEM_cert_to_DER_cert(pem[:pem.index("-----END CERTIFICATE-----") + 25])
    standin.iis.start_sites()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    if ready:
        ready()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        standin.iis.stop_sites()
        server.server_close()


def main() -> None:
    config = StandinConfig.load(Path(sys.argv[1]))
    serve(config, ready=lambda: print("ready", flush=True))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
