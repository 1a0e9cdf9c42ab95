"""SSH transport (paramiko): one connection per target for the whole deployment, pinned host keys, scripts run
by bash with values passed as data, and sha256-checked uploads that skip files the target already holds.

Host keys are never accepted on first sight: the key must be pinned in the target (``host_key``) or recorded
beforehand with ``ferry target trust NAME`` in ``FERRY_HOME/known_hosts`` (OpenSSH's format). An unknown or a
changed key is refused with both SHA256 fingerprints, so a person can compare them out of band.

Scripts, their environment and their data travel as separate files in a private remote temp dir; the command
line sshd executes only holds quoted paths we generated. That keeps values out of script source (no quoting
bugs, no injection) without relying on sshd's ``AcceptEnv``, which most servers restrict.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import fcntl
import hashlib
import io
import json
import os
import posixpath
import re
import secrets
import shlex
import socket
import stat
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paramiko
from paramiko.sftp import CMD_EXTENDED, CMD_EXTENDED_REPLY, CMD_STATUS, CMD_WRITE, SFTP_OK

from snapshots.errors import ConnectionLost, SnapshotIntegrityError, TransportError
from snapshots.model.common import FromEnv, FromFile
from snapshots.model.infrastructure import SshTransport as SshSpec
from snapshots.model.infrastructure import Target
from snapshots.settings import Settings
from snapshots.variables.masking import Masker
from steps.transports.bash import BASH_PREAMBLE
from steps.transports.protocol import LineSink, RunResult

__all__ = [
    "KnownHosts",
    "SshTransport",
    "connect_target",
    "fingerprint",
    "parse_host_key",
    "read_secret",
    "scan_host_key",
]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Host-key algorithms to offer when a key of this type is pinned (RSA keys sign with SHA-2 these days).
_KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256")}
# Ciphers in the order we ask for them: AES-GCM is an AEAD done in one OpenSSL call per packet (no separate
# HMAC pass in Python), the cheapest option for paramiko's per-packet overhead on bulk uploads.
_FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
_UPLOAD_CHUNK = 4 << 20
_LINGER = 1.0  # seconds of silence after a script exits before we stop waiting for its background processes
_WINDOW = 1 << 24  # our receive window: large enough that a chatty script never stalls on flow control


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:…`` fingerprint of a public key."""
    return key.fingerprint


def parse_host_key(text: str) -> paramiko.PKey:
    """A public key from ``"type base64"`` (the form of ``host_key`` and of a known_hosts line's tail)."""
    parts = text.split()
    if len(parts) < 2:
        raise ValueError(f"not a public key ('type base64'): {text!r}")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except Exception as exc:  # paramiko raises several unrelated types for bad blobs
        raise ValueError(f"not a valid {parts[0]} public key: {exc}") from exc


def host_key_line(key: paramiko.PKey) -> str:
    """``"type base64"``: what ``host_key`` in infrastructure.yaml takes."""
    return f"{key.get_name()} {key.get_base64()}"


def _known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def default_known_hosts() -> Path:
    return Settings.from_env().home / "known_hosts"


def read_secret(ref: FromEnv | FromFile | str | None, *, target: str = "?") -> str | None:
    """Resolve a credential reference on the worker (the secret itself never sits in YAML or the store)."""
    if ref is None or isinstance(ref, str):
        return ref
    if isinstance(ref, FromEnv):
        value = os.environ.get(ref.from_env)
        if value is None:
            raise TransportError(f"environment variable {ref.from_env} is not set", target=target,
                                 operation="password")
        return value
    path = Path(ref.from_file).expanduser()
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise TransportError(f"cannot read {path}: {exc.strerror}", target=target, operation="password") from exc


class KnownHosts:
    """Host keys recorded by ``ferry target trust``, in an OpenSSH known_hosts file.

    Writes take an exclusive lock and replace the file atomically, so two trusts at once or a crash midway
    never leave a truncated file (which would silently unpin every target)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path else default_known_hosts()

    def _load(self) -> paramiko.HostKeys:
        keys = paramiko.HostKeys()
        if self.path.exists():
            keys.load(str(self.path))
        return keys

    def lookup(self, host: str, port: int = 22) -> list[paramiko.PKey]:
        found = self._load().lookup(_known_hosts_name(host, port))
        return list(found.values()) if found else []

    def add(self, host: str, port: int, key: paramiko.PKey) -> None:
        """Record ``key`` for host:port, replacing any key of the same type recorded before."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            keys = self._load()
            name = _known_hosts_name(host, port)
            found = keys.lookup(name)
            if found is not None:  # a re-trust replaces whatever was recorded for this host
                for keytype in list(found.keys()):
                    del found[keytype]
            keys.add(name, key.get_name(), key)
            fd, tmp = tempfile.mkstemp(prefix=".known_hosts.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w") as out:
                    # paramiko's own save() is not atomic; _entries is the list it writes from
                    for entry in keys._entries:  # type: ignore[attr-defined]  # private, not in the stubs
                        line = entry.to_line()
                        if line:
                            out.write(line)
                    out.flush()
                    os.fsync(out.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise


def _open_socket(target: str, host: str, port: int, timeout: float) -> socket.socket:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
        # As OpenSSH does: without TCP_NODELAY, Nagle holds back a small SSH message while an earlier one is
        # unacknowledged, and the server's delayed ACK turns every channel open into a ~40 ms stall.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    except TimeoutError as exc:
        raise TransportError(f"cannot connect to {host}:{port}: timed out after {timeout:g}s",
                             target=target, operation="connect") from exc
    except socket.gaierror as exc:
        raise TransportError(f"cannot resolve {host}: {exc.strerror}", target=target, operation="connect") from exc
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise TransportError(f"cannot connect to {host}:{port}: {reason.lower()}",
                             target=target, operation="connect") from exc


def _start_client(target: str, host: str, port: int, timeout: float,
                  key_types: Iterable[str] | None = None) -> paramiko.Transport:
    sock = _open_socket(target, host, port, timeout)
    transport = paramiko.Transport(sock, default_window_size=_WINDOW)
    transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
    options = transport.get_security_options()
    options.ciphers = [c for c in _FAST_CIPHERS if c in options.ciphers] + [
        c for c in options.ciphers if c not in _FAST_CIPHERS]
    if key_types:
        options.key_types = list(dict.fromkeys(key_types))
    try:
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise TransportError(f"SSH handshake with {host}:{port} failed: {exc or type(exc).__name__}",
                             target=target, operation="connect") from exc
    if not (transport.is_active() and transport.initial_kex_done):  # start_client just returns on its timeout
        transport.close()
        raise TransportError(f"SSH handshake with {host}:{port} failed: no answer within {timeout:g}s",
                             target=target, operation="connect")
    return transport


def scan_host_key(host: str, port: int = 22, *, timeout: float = 10, target: str | None = None) -> paramiko.PKey:
    """The host key a server presents (for ``ferry target trust``; nothing is authenticated or trusted)."""
    transport = _start_client(target or host, host, port, timeout)
    try:
        return transport.get_remote_server_key()
    finally:
        transport.close()


def _describe(key: paramiko.PKey) -> str:
    return f"{fingerprint(key)} ({key.get_name()})"


class SshTransport:
    """One paramiko connection to one target, reused for every script and upload of a deployment.

    Implements ``steps.transports.protocol.Transport``. Thread-safe enough for one deployment: scripts may run
    concurrently on their own channels; SFTP use is serialised."""

    def __init__(self, target: str, spec: SshSpec, *, password: str | None = None,
                 known_hosts: KnownHosts | Path | None = None, masker: Masker | None = None,
                 connect: bool = True, tail_lines: int = 40) -> None:
        self.target = target
        self.spec = spec
        self._password = password if password is not None else read_secret(spec.password, target=target)
        self._known_hosts = known_hosts if isinstance(known_hosts, KnownHosts) else KnownHosts(known_hosts)
        self._masker = masker
        self._tail_lines = tail_lines
        self._transport: paramiko.Transport | None = None
        self._sftp_client: paramiko.SFTPClient | None = None
        self._sftp_lock = threading.Lock()
        self._folders: set[str] = set()
        """Folders this connection has written a file into: the next write there (a journal marker) skips the
        folder check, one of its SFTP round trips."""
        self._tmpdir: str | None = None
        self._runs = 0
        self._preamble_written = False
        self._write_size: int | None = None
        self._lock = threading.Lock()
        self.channels_opened = 0
        """Sessions (exec and SFTP) opened on this connection: a diagnostic (one package install opens one)."""
        if connect:
            self.connect()

    @classmethod
    def for_target(cls, target: Target, *, home: Path | None = None, password: str | None = None,
                   masker: Masker | None = None) -> SshTransport:
        """Connect to an ssh ``Target``, trusting the keys pinned in it or recorded in ``home/known_hosts``."""
        spec = target.transport
        if not isinstance(spec, SshSpec):
            raise TransportError(f"is a {spec.kind} target, not ssh", target=target.name, operation="connect")
        known = KnownHosts(Path(home) / "known_hosts") if home is not None else None
        return cls(target.name, spec, password=password, known_hosts=known, masker=masker)

    # -- connection -----------------------------------------------------------------------------------------

    def _error(self, message: str, operation: str) -> TransportError:
        return TransportError(message, target=self.target, operation=operation)

    def _pinned_keys(self) -> tuple[list[paramiko.PKey], str]:
        if self.spec.host_key:
            return [parse_host_key(self.spec.host_key)], "pinned in the target's host_key"
        keys = self._known_hosts.lookup(self.spec.host, self.spec.port)
        return keys, f"recorded in {self._known_hosts.path}"

    def connect(self) -> None:
        """Open the connection: TCP, handshake, host-key check against the pin, then authentication."""
        if self._transport is not None and self._transport.is_active():
            return
        spec, timeout = self.spec, float(self.spec.connect_timeout)
        pinned, source = self._pinned_keys()
        key_types: list[str] = []
        for key in pinned:
            key_types.extend(_KEY_ALGORITHMS.get(key.get_name(), (key.get_name(),)))
        transport = _start_client(self.target, spec.host, spec.port, timeout, key_types or None)
        try:
            presented = transport.get_remote_server_key()
            if not pinned:
                raise self._error(
                    f"unknown host key: the server presents {_describe(presented)}, expected: none pinned. "
                    f"Check the fingerprint out of band, then run `ferry target trust {self.target}` "
                    f"or set host_key in the target", "connect")
            if not any(key.asbytes() == presented.asbytes() for key in pinned):
                expected = ", ".join(_describe(key) for key in pinned)
                raise self._error(
                    f"host key changed (REFUSED — possible man-in-the-middle, or the server was reinstalled): "
                    f"expected {expected} ({source}), presented {_describe(presented)}", "connect")
            self._authenticate(transport)
            transport.set_keepalive(30)
        except BaseException:
            transport.close()
            raise
        self._transport = transport

    def _authenticate(self, transport: paramiko.Transport) -> None:
        spec, tried = self.spec, []
        keys: list[tuple[str, paramiko.PKey]] = []
        if spec.key_file:
            path = Path(spec.key_file).expanduser()
            try:
                keys.append((f"key file {spec.key_file}", paramiko.PKey.from_path(path)))
            except FileNotFoundError as exc:
                raise self._error(f"key file {path} does not exist", "authenticate") from exc
            except (paramiko.SSHException, ValueError, OSError) as exc:
                raise self._error(f"cannot load key file {path}: {exc}", "authenticate") from exc
        else:
            with contextlib.suppress(paramiko.SSHException, OSError):
                keys.extend((f"agent key {k.fingerprint}", k) for k in paramiko.Agent().get_keys())
        allowed: list[str] | None = None
        for label, key in keys:
            tried.append(label)
            try:
                transport.auth_publickey(spec.user, key)
                return
            except paramiko.BadAuthenticationType as exc:
                allowed = exc.allowed_types
                break
            except paramiko.AuthenticationException:
                continue
            except (paramiko.SSHException, OSError) as exc:
                raise self._error(f"authentication as {spec.user} failed: {exc}", "authenticate") from exc
        if self._password is not None and (allowed is None or "password" in allowed):
            tried.append("password")
            try:
                transport.auth_password(spec.user, self._password)
                return
            except paramiko.BadAuthenticationType as exc:
                allowed = exc.allowed_types
            except paramiko.AuthenticationException:
                pass
            except (paramiko.SSHException, OSError) as exc:
                raise self._error(f"authentication as {spec.user} failed: {exc}", "authenticate") from exc
        what = ", ".join(tried) if tried else "nothing (no key_file, no agent keys, no password)"
        extra = f"; the server accepts only: {', '.join(allowed)}" if allowed else ""
        raise self._error(f"authentication as {spec.user} refused (tried {what}){extra}", "authenticate")

    @property
    def transport(self) -> paramiko.Transport:
        if self._transport is None or not self._transport.is_active():
            raise self._error("not connected (connection closed or lost)", "session")
        return self._transport

    def close(self) -> None:
        """Remove the remote temp dir and close the connection (safe to call twice)."""
        if self._transport is None:
            return
        try:
            if self._tmpdir and self._transport.is_active():
                with contextlib.suppress(Exception):
                    self._exec(f"rm -rf -- {shlex.quote(self._tmpdir)}", timeout=10)
            if self._sftp_client is not None:
                with contextlib.suppress(Exception):
                    self._sftp_client.close()
        finally:
            transport, self._transport = self._transport, None
            self._sftp_client, self._tmpdir = None, None
            self._preamble_written = False
            transport.close()

    def __enter__(self) -> SshTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------------------------

    def _sftp(self) -> paramiko.SFTPClient:
        if self._sftp_client is None:
            try:
                self.channels_opened += 1
                client = paramiko.SFTPClient.from_transport(
                    self.transport, window_size=_WINDOW, max_packet_size=1 << 15)
            except (paramiko.SSHException, OSError) as exc:
                raise self._error(f"cannot open SFTP: {exc}", "sftp") from exc
            if client is None:  # paramiko's answer when the server opens no channel for it
                raise self._error("cannot open SFTP: the server opened no channel", "sftp")
            self._sftp_client = client
        return self._sftp_client

    def _exec(self, command: str, *, timeout: float = 60, operation: str = "run") -> tuple[int, str]:
        """Run a short internal command we composed (quoted paths only); return exit code and stdout, or
        stdout and stderr together when it fails. stderr is kept apart because sshd writes its own notices
        there (e.g. "Could not chdir to home directory"), which must not be mistaken for the output."""
        try:
            self.channels_opened += 1
            channel = self.transport.open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            channel.shutdown_write()
            out = io.BytesIO()
            while chunk := channel.recv(65536):
                out.write(chunk)
            err = io.BytesIO()
            while chunk := channel.recv_stderr(65536):
                err.write(chunk)
            code = channel.recv_exit_status()
            channel.close()
        except TimeoutError as exc:
            raise self._error(f"internal command timed out after {timeout:g}s", operation) from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._error(f"connection failed: {exc}", operation) from exc
        text = out.getvalue().decode("utf-8", "replace")
        if code != 0:
            text += err.getvalue().decode("utf-8", "replace")
        return code, text

    def _remote_tmpdir(self) -> str:
        with self._lock:
            if self._tmpdir is None:
                code, out = self._exec('umask 077 && mktemp -d "${TMPDIR:-/tmp}/ferry.XXXXXXXX"', timeout=30)
                if code != 0:
                    raise self._error(f"cannot create a temp dir: {out.strip()}", "run")
                self._tmpdir = out.strip()
            return self._tmpdir

    def _put_bytes(self, path: str, data: bytes) -> None:
        with self._sftp_lock:
            try:
                with self._sftp().open(path, "wb") as remote:
                    remote.write(data)
            except (OSError, paramiko.SSHException) as exc:
                raise self._error(f"cannot write {path}: {exc}", "run") from exc

    def _preamble(self) -> str:
        """The shared bash preamble (``ferry_var``, pipefail), written once per connection beside the runs."""
        tmpdir = self._remote_tmpdir()
        path = f"{tmpdir}/preamble.sh"
        with self._lock:
            written = self._preamble_written
        if not written:
            self._put_bytes(path, BASH_PREAMBLE.encode("utf-8"))
            with self._lock:
                self._preamble_written = True
        return path

    def _mask(self, text: str) -> str:
        return self._masker.mask(text) if self._masker else text

    # -- Transport ------------------------------------------------------------------------------------------

    def run(self, script: str, *, env: Mapping[str, str] | None = None, data: Mapping[str, Any] | None = None,
            cwd: str | None = None, timeout: float | None = None, on_line: LineSink | None = None) -> RunResult:
        """Run ``script`` with bash on the target, streaming combined stdout/stderr lines to ``on_line``.

        ``env`` values are exported from a sourced file of ``shlex.quote``-d assignments; ``data`` is a JSON
        file whose path is in ``FERRY_DATA``. Both files (and the script) are deleted when it ends. A
        ``timeout`` kills the script's whole process group and raises ``TransportError``."""
        env = dict(env or {})
        for name, value in env.items():
            if not _ENV_NAME.match(name):
                raise self._error(f"invalid environment variable name {name!r}", "run")
            if "\0" in str(value):
                raise self._error(f"environment variable {name} contains a NUL byte", "run")
        tmpdir = self._remote_tmpdir()
        with self._lock:
            self._runs += 1
            base = f"{tmpdir}/run{self._runs}-{secrets.token_hex(4)}"
        q = shlex.quote
        env_lines = [f"export {name}={q(str(value))}" for name, value in env.items()]
        if data is not None:
            env_lines.append(f"export FERRY_DATA={q(base + '.json')}")
            self._put_bytes(base + ".json", json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8"))
        self._put_bytes(base + ".env", ("\n".join(env_lines) + "\n").encode("utf-8"))
        # The preamble is sourced on the script's own first line, so bash's "line N" messages stay true.
        self._put_bytes(base + ".sh", f". {q(self._preamble())}; {script}".encode())
        enter_cwd = f"cd -- {q(cwd)} || exit 1\n" if cwd else ""
        # The watcher reads the channel's stdin, which ferry keeps open: when the connection drops (ferry
        # killed, network cut) sshd closes it, and the watcher removes the run's files and ends the script's
        # whole process group (TERM, then KILL) instead of leaving it running on its own.
        wrapper = (
            f"echo $$ > {q(base + '.pid')}\n"
            "exec {pipe}<&0\n"
            f"( read -r -u \"$pipe\" _ || {{ trap '' TERM; rm -f -- {q(base)}.*; kill -TERM -- \"-$$\"; sleep 2; "
            "kill -KILL -- \"-$$\"; } ) </dev/null >/dev/null 2>&1 &\n"
            "watch=$!\n"
            "exec {pipe}<&- 0</dev/null\n"
            f". {q(base + '.env')}\n"
            f"{enter_cwd}"
            f"bash --noprofile --norc {q(base + '.sh')} < /dev/null 2>&1\n"
            "rc=$?\n"
            "exec 2>/dev/null\n"
            'kill -KILL "$watch"\n'
            f"rm -f -- {q(base)}.*\n"
            "exit $rc\n"
        )
        # The login shell is a session and process-group leader (sshd setsid()s it); `exec` keeps that pid, so
        # killing its process group on timeout takes the script and everything it started with it.
        command = f"exec bash --noprofile --norc -c {q(wrapper)}"
        tail: deque[str] = deque(maxlen=self._tail_lines)

        def emit(line: str) -> None:
            line = self._mask(line.rstrip("\r"))
            tail.append(line)
            if on_line is not None:
                on_line(line)

        deadline = time.monotonic() + timeout if timeout is not None else None
        channel = self._open_exec(command)

        def timed_out() -> TransportError:
            return self._error(f"script timed out after {timeout:g}s; {self._kill(base)}", "run")

        code = self._pump(channel, emit, deadline, timed_out)
        return RunResult(exit_code=code, output_tail=list(tail))

    def run_program(self, program: str, header: Mapping[str, Any], *, env: Mapping[str, str] | None = None,
                    attachment: Path | None = None, send_on: str | None = None, timeout: float | None = None,
                    on_line: LineSink | None = None) -> RunResult:
        """Run a Python program (standard library only) on the target in ONE session, nothing written first.

        The command line holds only a fixed bootstrap; stdin carries the program, then ``header`` as JSON (with
        ``env`` merged into its ``"env"``): values never appear in source or on a command line, and never touch
        the target's disk on the way. When the program prints the line ``send_on``, ``attachment``'s bytes follow
        on stdin (from a thread, while its output keeps streaming). stdin then stays open: its end of file tells
        the program ferry is gone (the program ends what it started). Output lines are masked and streamed to
        ``on_line``; past ``timeout`` the session is closed, which the program takes as that end of file."""
        document = json.dumps({**header, "env": {**dict(header.get("env") or {}), **dict(env or {})}},
                              ensure_ascii=False).encode("utf-8")
        source = program.encode("utf-8")
        channel = self._open_exec(f"exec python3 -I -S -c {shlex.quote(_PROGRAM_BOOT)}")  # stdlib only: no site
        tail: deque[str] = deque(maxlen=self._tail_lines)
        failures: list[BaseException] = []
        sender: list[threading.Thread] = []

        def send() -> None:
            assert attachment is not None
            try:
                with open(attachment, "rb") as handle:
                    while chunk := handle.read(_UPLOAD_CHUNK):
                        channel.sendall(chunk)
            except (OSError, paramiko.SSHException, EOFError) as exc:
                failures.append(exc)

        def emit(line: str) -> None:
            line = line.rstrip("\r")
            if send_on is not None and attachment is not None and line == send_on and not sender:
                sender.append(threading.Thread(target=send, name=f"send-{self.target}", daemon=True))
                sender[0].start()
                return
            line = self._mask(line)
            tail.append(line)
            if on_line is not None:
                on_line(line)

        def timed_out() -> TransportError:
            channel.close()  # end of file on the program's stdin: it ends its running phase and exits
            return self._error(f"the install did not finish within {timeout:g}s; the session was closed", "run")

        try:
            channel.sendall(b"%d\n%s%d\n%s" % (len(source), source, len(document), document))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            channel.close()
            raise ConnectionLost(str(exc), target=self.target) from exc
        deadline = time.monotonic() + timeout if timeout is not None else None
        code = self._pump(channel, emit, deadline, timed_out)
        if sender:
            sender[0].join(timeout=5)
        if failures and code != 0:
            raise self._error(f"sending {attachment} failed: {failures[0]}", "upload")
        return RunResult(exit_code=code, output_tail=list(tail))

    def _open_exec(self, command: str) -> paramiko.Channel:
        """A session running ``command``, stderr merged into stdout; its stdin stays open (see ``run``)."""
        try:
            self.channels_opened += 1
            channel = self.transport.open_session(timeout=self.spec.connect_timeout)
            channel.set_combine_stderr(True)
            channel.exec_command(command)  # stdin stays open: its end of file tells the wrapper ferry is gone
            channel.settimeout(0.25)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._error(f"cannot start the script: {exc}", "run") from exc
        return channel

    def _pump(self, channel: paramiko.Channel, emit: Callable[[str], None], deadline: float | None,
              timed_out: Callable[[], TransportError]) -> int:
        """Forward the channel's output lines to ``emit`` until the command ends; its exit code.
        Past ``deadline``, ``timed_out()`` (which ends the remote side) is raised."""
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending, quiet = "", 0
        try:
            while True:
                if deadline is not None and time.monotonic() > deadline:
                    if pending:
                        emit(pending)
                    raise timed_out()
                try:
                    chunk = channel.recv(65536)
                except TimeoutError:
                    # The script has exited but something it started in the background still holds its output
                    # open (a daemon without redirection): OpenSSH would hang here until that process ends.
                    if channel.exit_status_ready():
                        quiet += 1
                        if quiet * 0.25 >= _LINGER:
                            break
                    continue
                quiet = 0
                if not chunk:
                    break
                pending += decoder.decode(chunk)
                *lines, pending = pending.split("\n")
                for line in lines:
                    emit(line)
            pending += decoder.decode(b"", final=True)
            if pending:
                emit(pending)
            while not channel.exit_status_ready():
                if deadline is not None and time.monotonic() > deadline:
                    raise timed_out()
                if not self.transport.is_active():
                    break
                time.sleep(0.01)
            code = channel.recv_exit_status()
            if code == -1 and self._dropped():  # closed without an exit status because the connection died
                raise ConnectionLost(target=self.target)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise ConnectionLost(str(exc), target=self.target) from exc
        finally:
            channel.close()
        return code

    def _io_error(self, what: str, exc: BaseException, operation: str) -> TransportError:
        """A failed file operation: "connection to T lost" when that is why (paramiko says "Socket is closed")."""
        if self._dropped(wait=0.5):
            return self._error(f"connection to {self.target} lost ({what})", operation)
        return self._error(f"{what}: {exc}", operation)

    def _dropped(self, wait: float = 1.0) -> bool:
        """Whether the connection itself is gone. paramiko closes a dead connection's channels a moment before
        it marks the connection inactive; a script killed by a signal (exit-signal, no exit status) leaves the
        connection up."""
        deadline = time.monotonic() + wait
        while True:
            if self._transport is None or not self._transport.is_active():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _kill(self, base: str) -> str:
        """Kill the process group of a timed-out run (TERM, then KILL after 2 s) and remove its files."""
        q = shlex.quote
        command = (
            f"pid=$(cat {q(base + '.pid')} 2>/dev/null) || exit 3\n"
            'kill -TERM -- "-$pid" 2>/dev/null || { echo "$pid"; exit 0; }\n'
            'for _ in $(seq 1 20); do kill -0 -- "-$pid" 2>/dev/null || { echo "$pid"; exit 0; }; sleep 0.1; done\n'
            'kill -KILL -- "-$pid" 2>/dev/null; echo "$pid"\n'
        )
        try:
            code, out = self._exec(f"bash -c {q(command)}; rm -f -- {q(base)}.*", timeout=15)
        except TransportError as exc:
            return f"killing the remote process failed: {exc}"
        pid = out.strip().splitlines()[-1] if out.strip() else "?"
        if code == 3:
            return "the remote process had not started"
        return f"killed the remote process group {pid}"

    def read_file(self, remote: str) -> bytes | None:
        """A small file's bytes over SFTP, or None when it does not exist (relative paths: the login home)."""
        with self._sftp_lock:
            try:
                with self._sftp().open(remote, "rb") as handle:
                    return bytes(handle.read())
            except FileNotFoundError:
                return None
            except (OSError, paramiko.SSHException, EOFError) as exc:
                raise self._io_error(f"cannot read {remote}", exc, "read") from exc

    def write_file(self, remote: str, data: bytes, mode: int | None = None) -> None:
        """Replace a small file atomically over SFTP: folders created, bytes to a temp name beside it, then
        ``posix-rename`` over the old one (a reader sees the old file or the new one, never half of one). An
        existing file keeps its permission bits unless ``mode`` is given (set before the bytes are written)."""
        directory, name = posixpath.split(remote.rstrip("/"))
        tmp = posixpath.join(directory, f".{name}.ferry-{secrets.token_hex(6)}")
        with self._sftp_lock:
            sftp = self._sftp()
            try:
                if directory not in self._folders:
                    self._sftp_makedirs(sftp, directory)
                if mode is None:
                    with contextlib.suppress(FileNotFoundError):
                        mode = stat.S_IMODE(sftp.stat(remote).st_mode or 0) or None
                try:
                    handle = sftp.open(tmp, "wb")
                except FileNotFoundError:  # the folder went since this connection last wrote here
                    self._sftp_makedirs(sftp, directory)
                    handle = sftp.open(tmp, "wb")
                with handle:
                    if mode is not None:
                        handle.chmod(mode)
                    handle.write(data)
                sftp.posix_rename(tmp, remote)
                self._folders.add(directory)
            except (OSError, paramiko.SSHException, EOFError) as exc:
                self._folders.discard(directory)
                with contextlib.suppress(Exception):
                    sftp.remove(tmp)
                raise self._io_error(f"cannot write {remote}", exc, "write") from exc

    @staticmethod
    def _sftp_makedirs(sftp: paramiko.SFTPClient, directory: str) -> None:
        if not directory or directory in (".", "/"):
            return
        try:
            sftp.stat(directory)
            return
        except FileNotFoundError:
            pass
        SshTransport._sftp_makedirs(sftp, posixpath.dirname(directory))
        with contextlib.suppress(OSError):  # created meanwhile by another writer: the stat below decides
            sftp.mkdir(directory)
        sftp.stat(directory)

    def remote_sha256(self, remote: str) -> str | None:
        """sha256 of a remote file, or None when it does not exist."""
        code, out = self._exec(f"{_HASH_FN} h {shlex.quote(_safe_path(remote))} 2>/dev/null", operation="upload")
        return out.split()[0] if code == 0 and out.split() else None

    def upload(self, local: Path, remote: str, sha256: str) -> bool:
        """Put ``local`` at ``remote`` unless a file with that sha256 is already there; True if bytes were sent.

        Bytes go to a temp name beside ``remote`` over pipelined SFTP (no per-write round trip); the local
        bytes are hashed as they stream and the remote copy is hashed before a ``mv`` puts it in place, so
        ``remote`` is never a partial or wrong file."""
        sha256 = sha256.lower()
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        q = shlex.quote
        remote = _safe_path(remote.rstrip("/"))
        directory, name = os.path.split(remote)
        code, out = self._exec(f"{_HASH_FN} mkdir -p -- {q(directory)} && {{ h {q(remote)} 2>/dev/null || true; }}",
                               operation="upload")
        if code != 0:
            raise self._error(f"cannot create {directory}: {out.strip()}", "upload")
        if out.split() and out.split()[0] == sha256:
            return False
        tmp = f"{directory}/.{name}.ferry-{secrets.token_hex(6)}"
        try:
            digest = self._send_file(Path(local), tmp)
        except FileNotFoundError as exc:
            raise self._error(f"local file {local} does not exist", "upload") from exc
        except (OSError, paramiko.SSHException, EOFError) as exc:
            with contextlib.suppress(TransportError):
                self._exec(f"rm -f -- {q(tmp)}", operation="upload")
            raise self._error(f"sending {local} to {tmp} failed: {exc}", "upload") from exc
        if digest != sha256:
            self._exec(f"rm -f -- {q(tmp)}", operation="upload")
            raise SnapshotIntegrityError(
                f"{local} has sha256 {digest}, expected {sha256}: refusing to install it on {self.target}")
        verify = (f'{_HASH_FN} sum=$(h {q(tmp)} | cut -d" " -f1) && '
                  f'if [ "$sum" = {sha256} ]; then mv -f -- {q(tmp)} {q(remote)}; '
                  f'else rm -f -- {q(tmp)}; echo "arrived with sha256 $sum"; exit 3; fi')
        code, out = self._exec(verify, timeout=600, operation="upload")
        if code != 0:
            raise self._error(f"{remote}: {out.strip() or 'verification failed'}, expected {sha256}", "upload")
        return True

    def _send_file(self, local: Path, remote: str) -> str:
        """Stream ``local`` to ``remote`` over pipelined SFTP; return the sha256 of the bytes sent.

        paramiko's ``SFTPFile.write`` frames every 32 KiB write as its own message and SSH packet(s), which
        caps it far below OpenSSH. Here the SFTP WRITE requests are framed directly — as large as the server
        allows (OpenSSH's ``limits@openssh.com``: 255 KiB) — and streamed with ``Channel.sendall``, which cuts
        them into full-size SSH packets; the status replies are collected as they arrive, with a bounded
        number of writes in flight. This uses ``SFTPClient``'s request counter and packet reader (stable
        paramiko internals since 1.x; the upload tests check them). Hashing (which releases the GIL) runs in
        a second thread, overlapping the sending."""
        digest = hashlib.sha256()
        with self._sftp_lock, open(local, "rb") as source, ThreadPoolExecutor(1) as hasher:
            sftp = self._sftp()
            write_size = self._max_write(sftp)
            in_flight_limit = max(4, (8 << 20) // write_size)
            read_size = write_size * max(1, _UPLOAD_CHUNK // write_size)
            with sftp.open(remote, "wb") as target:
                writer = _RawWriter(sftp, target.handle)  # type: ignore[arg-type]  # bytes; stubs: SFTPHandle
                offset, pending = 0, None
                while chunk := source.read(read_size):
                    if pending is not None:
                        pending.result()
                    pending = hasher.submit(digest.update, chunk)
                    view = memoryview(chunk)
                    for start in range(0, len(chunk), write_size):
                        piece = view[start:start + write_size]
                        writer.write(offset, piece)
                        offset += len(piece)
                        writer.collect(in_flight_limit)
                writer.collect(0)
                if pending is not None:
                    pending.result()
        return digest.hexdigest()

    def _max_write(self, sftp: paramiko.SFTPClient) -> int:
        """Largest SFTP write the server takes: ``limits@openssh.com`` when offered, else the 32 KiB every
        server must accept (less the request's header, so a write fills exactly one SSH packet)."""
        if self._write_size is None:
            size = 32768 - 64 - 64
            with contextlib.suppress(Exception):  # not OpenSSH, or an old one: keep the portable size
                kind, msg = sftp._request(CMD_EXTENDED, "limits@openssh.com")  # type: ignore[attr-defined]  # private
                if kind == CMD_EXTENDED_REPLY:
                    msg.get_int64()  # max packet length
                    msg.get_int64()  # max read length
                    size = max(size, min(msg.get_int64(), _UPLOAD_CHUNK))
            self._write_size = size
        return self._write_size


class _RawWriter:
    """Pipelined SFTP WRITE requests for one open handle, framed without paramiko's per-write overhead."""

    def __init__(self, sftp: paramiko.SFTPClient, handle: bytes) -> None:
        self.sftp, self.channel = sftp, sftp.sock
        self.handle = struct.pack(">I", len(handle)) + handle
        self.in_flight: set[int] = set()

    def write(self, offset: int, data: memoryview) -> None:
        with self.sftp._lock:  # type: ignore[attr-defined]  # private (see _send_file)
            request = self.sftp.request_number
            self.sftp.request_number += 1
        length = 1 + 4 + len(self.handle) + 8 + 4 + len(data)
        self.channel.sendall(b"".join((struct.pack(">IBI", length, CMD_WRITE, request), self.handle,
                                       struct.pack(">QI", offset, len(data)), data)))
        self.in_flight.add(request)

    def collect(self, limit: int) -> None:
        """Read status replies while more than ``limit`` writes are in flight, or while replies are waiting."""
        while len(self.in_flight) > limit or (self.in_flight and self.channel.recv_ready()):
            kind, data = self.sftp._read_packet()  # type: ignore[attr-defined]  # private (see _send_file)
            msg = paramiko.Message(data)
            request = msg.get_int()
            if kind != CMD_STATUS or request not in self.in_flight:
                raise OSError(f"unexpected SFTP reply (type {kind}, request {request}) to a write")
            self.in_flight.discard(request)
            code = msg.get_int()
            if code != SFTP_OK:
                raise OSError(f"the server refused a write: {msg.get_text()} (SFTP status {code})")


def _safe_path(path: str) -> str:
    """A relative path that starts with ``-`` would read as an option to mkdir/openssl/sha256sum."""
    return f"./{path}" if path.startswith("-") else path


# Defines `h FILE`: print "<sha256> ..." for FILE. OpenSSL's sha256 uses the CPU's SHA extensions and runs
# about 3x faster than coreutils' sha256sum on a large package; sha256sum is the fallback.
_HASH_FN = ('h() { if command -v openssl >/dev/null 2>&1; then openssl dgst -sha256 -r "$1"; '
            'else sha256sum -- "$1"; fi; };')


# The whole command line of ``run_program``: read the program's length and text from stdin, run it.
_PROGRAM_BOOT = ('import sys; r = sys.stdin.buffer; n = int(r.readline()); '
                 'exec(compile(r.read(n), "ferry-program", "exec"), {"__name__": "ferry_install"})')


def connect_target(target: Target, *, home: Path | None = None, password: str | None = None,
                   masker: Masker | None = None) -> SshTransport:
    """Open an ``SshTransport`` for an ssh ``Target`` from infrastructure.yaml."""
    return SshTransport.for_target(target, home=home, password=password, masker=masker)
