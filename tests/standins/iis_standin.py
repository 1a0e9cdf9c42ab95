"""The STAND-IN's emulation of PowerShell running ferry's scripts, and of the IIS they drive.

This is Python pretending, script by script, to be ``powershell -Command -`` running ferry's shipped ``.ps1``
files. Each handler below reproduces what its script does — same parameters, same ``##ferry-`` replies, same
error texts, the same order of IIS operations and the same revert on failure — on a *simulated* IIS kept in
``<state>/iis.json`` and a sandboxed ``C:`` drive under ``<state>/fs``. It proves that ferry's side (protocol,
parameters, sequencing, error handling) is right and that the scripts' intended effect is coherent; it does not
prove the ``.ps1`` files behave so on Windows (the ``windows`` tests do that on a real runner).

The simulated IIS serves each site's HTTP from its physical path (default documents, ``app_offline.htm`` → 503,
a stopped site or app pool → 503, as IIS does), so HAProxy can front the stand-in targets.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import mimetypes
import random
import re
import shutil
import socket
import tarfile
import threading
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from steps.kinds.powershell_scripts import compose
from steps.transports.winrm import load_script

if TYPE_CHECKING:
    from tests.standins.wsman_standin import Process, Standin

SCRIPTS = (Path(__file__).resolve().parents[2] / "steps" / "transports" / "powershell",
           Path(__file__).resolve().parents[2] / "steps" / "kinds" / "powershell")
BOOTSTRAP = re.compile(r"^& \(\[ScriptBlock\]::Create\(\[Text\.Encoding\]::UTF8\.GetString\(\[Convert\]::"
                       r"FromBase64String\('([A-Za-z0-9+/=]*)'\)\)\)\) -Payload '([A-Za-z0-9+/=]*)'$")
DEFAULT_DOCUMENTS = ("Default.htm", "Default.asp", "index.htm", "index.html", "iisstart.htm", "default.aspx")


class PsExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class PsError(Exception):
    """A terminating error inside a script: the runner prints ``ERROR: <message>`` and exits 1."""


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def known_scripts(extra: dict[str, str]) -> dict[str, str]:
    """sha256 of each script's text → the name of its Python stand-in."""
    known = {_sha(compose(path.name, folder)): path.name  # as sent: with their includes spliced in
             for folder in SCRIPTS for path in folder.glob("*.ps1") if path.name != "runner.ps1"}
    for path, name in extra.items():
        known[_sha(Path(path).read_text(encoding="utf-8"))] = name
    return known


def clixml_error(text: str) -> str:
    """An error as PowerShell writes it to a redirected stderr (the format pywinrm's tests capture)."""
    lines = text.replace("\r\n", "\n").split("\n")
    body = "".join(f'<S S="Error">{escape(line)}_x000D__x000A_</S>' for line in lines)
    return ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
            '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
            '<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first '
            'use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj>'
            f"{body}</Objs>")


# ------------------------------------------------------------------------------------------- processes

def run_process(process: Process) -> int:
    """What the "server" runs for one Command: PowerShell reading stdin, or the few cmd.exe lines the
    naive-upload benchmark needs. Returns the exit code."""
    command = process.command.strip().lower()
    arguments = process.arguments.split()
    if command in ("powershell", "powershell.exe"):
        if arguments != ["-NoProfile", "-NonInteractive", "-Command", "-"]:
            process.err(clixml_error("ferry WS-Management stand-in: only `powershell -NoProfile -NonInteractive "
                                     "-Command -` is emulated, not: powershell " + process.arguments))
            return 1
        return PowerShell(process).main()
    return _cmd(process, (process.command + " " + process.arguments).strip())


def _cmd(process: Process, line: str) -> int:
    server = process.server
    match = re.match(r"^(?:cmd(?:\.exe)? /c )?echo (.*?) ?>> ?(.+)$", line, re.IGNORECASE)
    if match:
        path = server.fs(match.group(2).strip().strip('"'))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as out:
            out.write(match.group(1).encode("ascii") + b" \r\n")
        return 0
    match = re.match(r"^certutil(?:\.exe)? -f -decode (\S+) (\S+)$", line, re.IGNORECASE)
    if match:
        source, target = server.fs(match.group(1).strip('"')), server.fs(match.group(2).strip('"'))
        data = base64.b64decode(b"".join(source.read_bytes().split()))
        target.write_bytes(data)
        process.out(f"Input Length = {source.stat().st_size}")
        process.out(f"Output Length = {len(data)}")
        process.out("CertUtil: -decode command completed successfully.")
        return 0
    process.err(f"'{line.split(' ', 1)[0]}' is not recognized as an internal or external command,\r\n"
                "operable program or batch file.\r\n")
    return 1


class PowerShell:
    """``powershell -Command -``: execute stdin line by line; only ferry's own lines are understood."""

    def __init__(self, process: Process) -> None:
        self.process = process
        self.server: Standin = process.server
        self.upload: dict[str, Any] | None = None

    def main(self) -> int:
        ok = True
        try:
            while (raw := self.process.stdin.readline()) is not None:
                if self.process.terminated.is_set():
                    return 1
                line = raw.decode("ascii", "replace")  # the OEM code page: ferry's lines are pure ASCII
                if not line.strip():
                    continue
                ok = self.line(line)
        except PsExit as exit_:
            return exit_.code
        finally:
            if self.upload is not None:
                with contextlib.suppress(OSError):
                    self.upload["stream"].close()
        return 0 if ok else 1

    def line(self, line: str) -> bool:
        if line.startswith("Add-FerryChunk '") and line.endswith("'") and self.upload is not None:
            self._chunk(line[len("Add-FerryChunk '"):-1])
            return True
        if line == "Complete-FerryUpload" and self.upload is not None:
            self._complete()
            return True
        match = re.match(r"^Stop-FerryUpload '([^']*)' (\d+)$", line)
        if match and self.upload is not None:
            self._stop(match.group(1), int(match.group(2)))
        match = BOOTSTRAP.match(line)
        if match:
            self._bootstrap(match.group(1), match.group(2))
            return True
        word = line.split(" ", 1)[0][:60]
        self.process.err(clixml_error(
            f"{word} : The term '{word}' is not recognized as the name of a cmdlet, function, script file, or "
            "operable program. (ferry WS-Management stand-in: it runs only the lines ferry itself writes)"))
        return False

    def _bootstrap(self, runner: str, payload: str) -> None:
        if base64.b64decode(runner).decode("utf-8") != load_script("runner.ps1"):
            self.process.err("ERROR: ferry WS-Management stand-in: the runner is not ferry's runner.ps1\r\n")
            raise PsExit(1)
        request = json.loads(base64.b64decode(payload).decode("utf-8"))
        script = request.get("script") or ""
        name = self.server.known_scripts.get(_sha(script))
        if name is None:
            self.process.err(f"ERROR: ferry WS-Management stand-in refuses to run this script: it is not one of "
                             f"ferry's shipped .ps1 files (sha256 {_sha(script)[:16]}…), and the stand-in is not "
                             "PowerShell\r\n")
            raise PsExit(1)
        handler = HANDLERS[name]
        try:
            code = handler(self, dict(request.get("parameters") or {}), request)
        except PsError as exc:
            self.process.err(f"ERROR: {exc}\r\n")
            raise PsExit(1) from None
        if code is not None:  # the script called `exit`
            raise PsExit(code)
        if not request.get("keep_open"):
            raise PsExit(0)

    # -- upload lines ---------------------------------------------------------------------------------------

    def _chunk(self, text: str) -> None:
        upload = self.upload
        assert upload is not None
        try:
            data = base64.b64decode(text, validate=True)
            upload["stream"].write(data)
            upload["hash"].update(data)
            upload["bytes"] += len(data)
        except Exception as exc:
            self._stop(f"writing {upload['temp_win']} failed: {exc}", 3)

    def _complete(self) -> None:
        upload = self.upload
        assert upload is not None
        upload["stream"].close()
        actual = upload["hash"].hexdigest()
        if actual != upload["expected"]:
            self._stop(f"{upload['path_win']} arrived with sha256 {actual}, expected {upload['expected']}", 4)
        upload["temp"].replace(upload["path"])
        self.process.out(f"##ferry-uploaded {upload['bytes']} {actual}")
        self.upload = None
        if not upload["continue"]:
            raise PsExit(0)

    def _stop(self, message: str, code: int) -> None:
        upload = self.upload
        assert upload is not None
        with contextlib.suppress(OSError):
            upload["stream"].close()
        upload["temp"].unlink(missing_ok=True)
        self.upload = None
        self.process.err(f"ERROR: {message}\r\n")
        raise PsExit(code)

    # -- helpers for handlers -------------------------------------------------------------------------------

    def path(self, value: str) -> tuple[str, Path]:
        """A script's path parameter (relative → the user's home) as (Windows path, sandbox path)."""
        if not re.match(r"^[A-Za-z]:[\\/]", value):
            value = self.server.home(self.process.shell.user) + "\\" + value.replace("/", "\\")
        try:
            return value, self.server.fs(value)
        except ValueError as exc:
            raise PsError(str(exc)) from None


def _need(parameters: dict[str, Any], *names: str) -> None:
    for name in names:
        if name not in parameters:
            raise PsError(f"Cannot process command because of one or more missing mandatory parameters: {name}.")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------- script stand-ins

def receive_file(ps: PowerShell, params: dict[str, Any], request: dict[str, Any]) -> int | None:
    _need(params, "Path", "Sha256")
    path_win, path = ps.path(str(params["Path"]))
    expected = str(params["Sha256"]).lower()
    keep_going = bool(params.get("Continue"))  # -Continue: the process stays open for the next line
    if path.is_file() and _file_sha256(path) == expected:
        ps.process.out("##ferry-present")
        return None if keep_going else 0
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.ferry-{uuid.uuid4().hex[:12]}")
    ps.upload = {"path": path, "path_win": path_win, "temp": temp, "temp_win": str(temp), "expected": expected,
                 "stream": open(temp, "xb"), "hash": hashlib.sha256(), "bytes": 0,  # noqa: SIM115 (lives on)
                 "continue": keep_going}
    ps.process.out("##ferry-ready")
    return None


def read_file(ps: PowerShell, params: dict[str, Any], request: dict[str, Any]) -> int:
    _need(params, "Path")
    _, path = ps.path(str(params["Path"]))
    if path.is_file():
        ps.process.out("##ferry-file " + base64.b64encode(path.read_bytes()).decode())
    else:
        ps.process.out("##ferry-nofile")
    return 0


def write_file(ps: PowerShell, params: dict[str, Any], request: dict[str, Any]) -> int:
    _need(params, "Path", "Content")
    _, path = ps.path(str(params["Path"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.ferry-{uuid.uuid4().hex[:12]}")
    temp.write_bytes(base64.b64decode(str(params["Content"])))
    temp.replace(path)
    ps.process.out("##ferry-written")
    return 0


def pull_package(ps: PowerShell, params: dict[str, Any], request: dict[str, Any]) -> int:
    _need(params, "Url", "Path", "Sha256")
    _, path = ps.path(str(params["Path"]))
    expected = str(params["Sha256"]).lower()
    if path.is_file() and _file_sha256(path) == expected:
        ps.process.out("##ferry-present")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.ferry-{uuid.uuid4().hex[:12]}")
    url = str(params["Url"])
    try:
        with urllib.request.urlopen(url, timeout=int(params.get("TimeoutSeconds", 600))) as reply, \
                open(temp, "wb") as out:
            shutil.copyfileobj(reply, out, 1 << 20)
        actual = _file_sha256(temp)
        if actual != expected:
            raise PsError(f"downloaded {url} has sha256 {actual}, expected {expected}: refusing it")
        temp.replace(path)
    except OSError as exc:
        raise PsError(f"Invoke-WebRequest {url}: {exc}") from None
    finally:
        temp.unlink(missing_ok=True)
    ps.process.out(f"##ferry-downloaded {path.stat().st_size} {expected}")
    return 0


def echo_parameters(ps: PowerShell, params: dict[str, Any], request: dict[str, Any]) -> int:
    """tests/standins/ps/echo-parameters.ps1: reply with what arrived, base64 of UTF-8 JSON."""
    _need(params, "Values")
    env = request.get("env") or {}
    reply = {"values": params["Values"], "env": {n: env.get(n) for n in params.get("EnvNames") or []},
             "data": request.get("data")}
    ps.process.out("##ferry-echo " + base64.b64encode(json.dumps(reply).encode("utf-8")).decode())
    return 0


def set_octopus_variable(ps: PowerShell, request: dict[str, Any], name: str, value: str, sensitive: bool) -> None:
    """runner.ps1's Set-OctopusVariable: the same ``##ferry[setVariable …]`` line, token from the environment."""
    token = (request.get("env") or {}).get("FERRY_SERVICE_TOKEN")
    if not name.strip():
        raise PsError("Set-OctopusVariable: an output variable needs a name")
    if not token:
        raise PsError("Set-OctopusVariable: output variables can be set only by a step's script")

    def b64(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    ps.process.out(f"##ferry[setVariable name='{b64(name)}' value='{b64(value)}' sensitive='{sensitive}' "
                   f"token='{token}']")


def set_output(ps: PowerShell, params: dict[str, Any], request: dict[str, Any]) -> int:
    """tests/standins/ps/set-output.ps1: two output variables around ordinary output lines."""
    _need(params, "Name", "Value")
    name, value = str(params["Name"]), str(params["Value"])
    ps.process.out(f"setting {name}")
    set_octopus_variable(ps, request, name, value, bool(params.get("Sensitive")))
    set_octopus_variable(ps, request, name + ".Again", value, False)
    ps.process.out(f"the value is {value}")
    return 0


def target_health(ps: PowerShell, params: dict[str, Any], request: dict[str, Any]) -> int:
    """target-health.ps1: the first existing folder at or above Root, its drive's free bytes (the sandbox's
    disk), this machine's clock, and a PowerShell version the STAND-IN reports (not a real PowerShell's)."""
    _need(params, "Root")
    folder = str(params["Root"]).rstrip("\\")
    while "\\" in folder and not ps.server.fs(folder).is_dir():
        folder = folder.rsplit("\\", 1)[0]
    if not ps.server.fs(folder).is_dir():
        folder = folder[:2] + "\\"
    ps.server.fs(folder).mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(ps.server.fs(folder)).free
    ps.process.out("##ferry-health " + json.dumps({"powershell": STANDIN_PS_VERSION, "now": time.time(),
                                                    "free": free, "path": folder}, separators=(",", ":")))
    return 0


STANDIN_PS_VERSION = "5.1.17763.1432"
"""What the stand-in answers for $PSVersionTable.PSVersion (Windows Server 2019's Windows PowerShell)."""


def certificate_import(ps: PowerShell, params: dict[str, Any], request: dict[str, Any]) -> int:
    """certificate-import.ps1: open each PFX with its password (``cryptography`` here, .NET's X509Certificate2
    there), refuse one whose thumbprint is not the one sent, add it to the simulated Cert:\\LocalMachine\\My
    (``certificates`` + ``certificate_store`` in iis.json) unless there, and record the account given read on its
    private key (``key_acl``). The ACL itself, the key container and IIS using the key exist only on Windows."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import pkcs12

    _need(params, "Certificates")
    account = str(params.get("Account") or "")
    iis: Iis = ps.server.iis
    for item in params["Certificates"] if isinstance(params["Certificates"], list) else [params["Certificates"]]:
        thumbprint = str(item["Thumbprint"]).upper()
        try:
            key, cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(str(item["Pfx"])),
                                                            str(item["Password"]).encode())
        except ValueError:
            raise PsError("Exception calling \".ctor\" with \"3\" argument(s): \"The specified network password is "
                          "not correct.\"") from None
        if cert is None or cert.fingerprint(hashes.SHA1()).hex().upper() != thumbprint:
            raise PsError(f"the certificate sent as {thumbprint} has thumbprint "
                          f"{cert.fingerprint(hashes.SHA1()).hex().upper() if cert else '(none)'}")
        with iis.lock:
            state = iis.load()
            store = state.setdefault("certificate_store", {})
            present = thumbprint in {c.upper() for c in state.setdefault("certificates", [])} and key is not None
            if not present:
                state["certificates"].append(thumbprint)
                store[thumbprint] = {"subject": cert.subject.rfc4514_string(), "has_private_key": key is not None,
                                     "key_storage": "MachineKeySet, PersistKeySet", "key_acl": []}
                state.setdefault("log", []).append({"at": time.time(), "op": "X509Store.Add", "what": thumbprint})
            if account:
                entry = store.setdefault(thumbprint, {"key_acl": []})
                if account not in entry.setdefault("key_acl", []):
                    entry["key_acl"].append(account)
                state.setdefault("log", []).append({"at": time.time(), "op": "Set-Acl", "what": account})
            iis.save(state)
        ps.process.out(f"##ferry-certificate {'present' if present else 'imported'} {thumbprint}")
        if account:
            ps.process.out(f"##ferry-certificate granted {thumbprint} {account}")
    return 0


def iis_deploy(ps: PowerShell, params: dict[str, Any], request: dict[str, Any]) -> int:
    _need(params, "Project", "Environment", "Package", "Folder", "Journal", "SiteName")
    return IisDeploy(ps, params).run()


HANDLERS: dict[str, Callable[[PowerShell, dict[str, Any], dict[str, Any]], int | None]] = {
    "receive-file.ps1": receive_file,
    "read-file.ps1": read_file,
    "write-file.ps1": write_file,
    "pull-package.ps1": pull_package,
    "iis-deploy.ps1": iis_deploy,
    "certificate-import.ps1": certificate_import,
    "target-health.ps1": target_health,
    "echo-parameters": echo_parameters,
    "set-output": set_output,
}


# ------------------------------------------------------------------------------------------- simulated IIS

class Iis:
    """Sites, app pools and bindings in ``<state>/iis.json`` (tests read and seed it), and the sites' HTTP."""

    def __init__(self, server: Standin) -> None:
        self.server = server
        self.file = server.state_dir / "iis.json"
        self.lock = threading.RLock()
        self.listeners: dict[tuple[str, int], ThreadingHTTPServer] = {}
        if not self.file.exists():
            self.save({"sites": {}, "appPools": {}, "certificates": [], "faults": {}, "log": [],
                       "time_scale": 1.0})

    def load(self) -> dict[str, Any]:
        with self.lock:
            return json.loads(self.file.read_text())  # type: ignore[no-any-return]

    def save(self, state: dict[str, Any]) -> None:
        with self.lock:
            temp = self.file.with_name(self.file.name + ".tmp")
            temp.write_text(json.dumps(state, indent=1))
            temp.replace(self.file)

    # -- HTTP of the sites ----------------------------------------------------------------------------------

    def start_sites(self) -> None:
        """Listen on every http binding of every site (a binding's ``*`` is this server's address)."""
        state = self.load()
        wanted: set[tuple[str, int]] = set()
        for site in state["sites"].values():
            for binding in site.get("bindings", []):
                if binding["protocol"] != "http":
                    continue  # https bindings are configured, not served: the stand-in has no certificate store
                ip, port, _host = binding["bindingInformation"].split(":", 2)
                wanted.add((self.server.config.address if ip in ("*", "") else ip, int(port)))
        with self.lock:
            for key in list(self.listeners):
                if key not in wanted:
                    listener = self.listeners.pop(key)
                    listener.shutdown()
                    listener.server_close()
            for key in wanted - set(self.listeners):
                handler = type("SiteHandler", (_SiteHandler,), {"iis": self})
                listener = ThreadingHTTPServer(key, handler)
                listener.daemon_threads = True
                threading.Thread(target=listener.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
                self.listeners[key] = listener

    def stop_sites(self) -> None:
        with self.lock:
            for listener in self.listeners.values():
                listener.shutdown()
                listener.server_close()
            self.listeners.clear()

    def respond(self, port: int, host: str, path: str) -> tuple[int, bytes, str]:
        state = self.load()
        host = host.split(":")[0].lower()
        site = None
        for candidate in state["sites"].values():
            for binding in candidate.get("bindings", []):
                _ip, bport, bhost = binding["bindingInformation"].split(":", 2)
                if binding["protocol"] == "http" and int(bport) == port and (not bhost or bhost.lower() == host):
                    site = candidate
        if site is None:
            return 404, b"<h1>Bad Request (Invalid Hostname)</h1>", "text/html"
        unavailable = b"<h1>Service Unavailable</h1><p>HTTP Error 503. The service is unavailable.</p>"
        if site.get("state") != "Started":
            return 503, unavailable, "text/html"
        physical, pool = site["physicalPath"], site.get("applicationPool")
        relative = path.split("?", 1)[0]
        for vpath, app in sorted(site.get("applications", {}).items(), key=lambda kv: -len(kv[0])):
            if relative.lower().startswith(vpath.lower() + "/") or relative.lower() == vpath.lower():
                physical, pool, relative = app["physicalPath"], app.get("applicationPool"), relative[len(vpath):]
                break
        if pool and state["appPools"].get(pool, {}).get("state") != "Started":
            return 503, unavailable, "text/html"
        root = self.server.fs(physical)
        offline = root / "app_offline.htm"
        if offline.is_file():
            return 503, offline.read_bytes(), "text/html"
        target = root.joinpath(*[p for p in relative.split("/") if p and p != ".."])
        if target.is_dir():
            target = next((target / d for d in DEFAULT_DOCUMENTS if (target / d).is_file()), target / "-")
        if not target.is_file() or target.name.lower() in ("web.config", ".ferry-install.json"):
            return 404, b"<h1>404 - File or directory not found.</h1>", "text/html"
        return 200, target.read_bytes(), mimetypes.guess_type(target.name)[0] or "application/octet-stream"


class _SiteHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0 (ferry stand-in)"
    iis: Iis

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._serve(True)

    def do_HEAD(self) -> None:
        self._serve(False)

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self, body: bool) -> None:
        try:
            status, data, kind = self.iis.respond(self.server.server_address[1], self.headers.get("Host", ""),
                                                  self.path)
        except Exception as exc:  # a half-written state file mid-switch: answer as a busy server would
            status, data, kind = 500, f"stand-in error: {exc}".encode(), "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)


# ------------------------------------------------------------------------------------------- iis-deploy.ps1

class IisDeploy:
    """iis-deploy.ps1, step for step (see that file for the why of each step)."""

    def __init__(self, ps: PowerShell, params: dict[str, Any]) -> None:
        self.ps, self.p = ps, params
        self.iis: Iis = ps.server.iis
        self.out = ps.process.out
        self.max_retries = int(params.get("MaxRetries", 5))
        self.delay_ms = int(params.get("RetryDelayMilliseconds", 1000))
        self.package = params["Package"]
        self.deploy_as = params.get("DeployAs", "website")
        if self.deploy_as not in ("website", "application", "virtual-directory"):
            raise PsError(f"Cannot validate argument on parameter 'DeployAs'. The argument \"{self.deploy_as}\" "
                          "does not belong to the set \"website,application,virtual-directory\".")

    # the same retry rule as Invoke-Iis, with injectable faults from the state file
    def invoke(self, what: str, operation: str, action: Callable[[dict[str, Any]], Any]) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                with self.iis.lock:
                    state = self.iis.load()
                    fault = state.get("faults", {}).get(operation)
                    if fault and fault.get("count", 0) > 0:
                        fault["count"] -= 1
                        self.iis.save(state)
                        raise PsError(fault["message"])
                    result = action(state)
                    state.setdefault("log", []).append({"at": time.time(), "op": operation, "what": what})
                    self.iis.save(state)
                    return result
            except PsError as exc:
                if attempt >= self.max_retries:
                    raise PsError(f"{what} failed after {attempt} attempt(s): {exc}") from None
                self.out(f"{what} failed (attempt {attempt} of {self.max_retries}): {exc}; retrying")
                scale = float(self.iis.load().get("time_scale", 1.0))
                time.sleep(random.uniform(self.delay_ms, 4 * self.delay_ms) / 1000 * scale)

    def fs(self, path: str) -> Path:
        return self.ps.server.fs(path)

    def run(self) -> int:
        installed = self.install_folder()
        new_folder = installed["Path"]
        self.out(("reusing " if installed["Reused"] else "extracted to ") + new_folder)
        self.set_app_pool()
        pool = self.p["AppPool"]["Name"] if self.p.get("AppPool") else None
        site_name = self.p["SiteName"]
        vpath = self.p.get("VirtualPath") or ""
        created = False
        state = self.iis.load()
        if self.deploy_as == "website":
            if site_name not in state["sites"]:
                def new_site(s: dict[str, Any]) -> None:
                    first = (self.p.get("Bindings") or [{}])[0]
                    site_id = 1 + max([x["id"] for x in s["sites"].values()] or [0])
                    s["sites"][site_name] = {
                        "id": site_id, "physicalPath": new_folder, "applicationPool": pool, "state": "Started",
                        "bindings": [{"protocol": "http",
                                      "bindingInformation": f"*:{first.get('Port', 80)}:{first.get('Host') or ''}",
                                      "sslFlags": 0}], "applications": {}, "virtualDirectories": {}}
                self.invoke(f"New-Website {site_name}", "New-Website", new_site)
                created = True
                self.out(f"created web site {site_name}")
            self.set_bindings(site_name)
            self.invoke(f"set the app pool of {site_name}", "Set-ItemProperty",
                        lambda s: s["sites"][site_name].__setitem__("applicationPool", pool))
        else:
            if site_name not in state["sites"]:
                raise PsError(f"web site {site_name} does not exist: a {self.deploy_as} needs its parent site")
            kind = "applications" if self.deploy_as == "application" else "virtualDirectories"
            if vpath not in state["sites"][site_name][kind]:
                entry = {"physicalPath": new_folder} | ({"applicationPool": pool} if kind == "applications" else {})
                operation = "New-WebApplication" if kind == "applications" else "New-WebVirtualDirectory"
                self.invoke(f"{operation} {vpath}", operation,
                            lambda s: s["sites"][site_name][kind].__setitem__(vpath, entry))
                created = True
            elif kind == "applications":
                self.invoke(f"set the app pool of {vpath}", "Set-ItemProperty",
                            lambda s: s["sites"][site_name]["applications"][vpath].__setitem__("applicationPool", pool))

        def node(s: dict[str, Any]) -> dict[str, Any]:
            site = s["sites"][site_name]
            if self.deploy_as == "website":
                return site  # type: ignore[no-any-return]
            kind = "applications" if self.deploy_as == "application" else "virtualDirectories"
            return site[kind][vpath]  # type: ignore[no-any-return]

        iis_path = f"IIS:\\Sites\\{site_name}" + (vpath.replace("/", "\\") if self.deploy_as != "website" else "")
        old_folder = node(self.iis.load())["physicalPath"]
        offline: Path | None = None
        if not created and old_folder != new_folder:
            if self.p.get("AppOffline") and self.fs(old_folder).exists():
                offline = self.fs(old_folder) / "app_offline.htm"
                offline.write_text("<html><body>Down for a moment: a new release is being installed.</body></html>")
            if pool:
                self.invoke(f"Stop-WebAppPool {pool}", "Stop-WebAppPool",
                            lambda s: s["appPools"][pool].__setitem__("state", "Stopped"))
            try:
                self.invoke(f"switch {iis_path} to {new_folder}", "switch",
                            lambda s: node(s).__setitem__("physicalPath", new_folder))
                if pool:
                    self.invoke(f"Start-WebAppPool {pool}", "Start-WebAppPool",
                                lambda s: s["appPools"][pool].__setitem__("state", "Started"))
            except PsError as exc:
                with self.iis.lock:
                    state = self.iis.load()
                    node(state)["physicalPath"] = old_folder
                    self.iis.save(state)
                if pool:
                    try:
                        self.invoke(f"Start-WebAppPool {pool}", "Start-WebAppPool",
                                    lambda s: s["appPools"][pool].__setitem__("state", "Started"))
                    except PsError as again:
                        self.out(f"could not restart {pool}: {again}")
                if offline:
                    offline.unlink(missing_ok=True)
                raise PsError(f"{exc} ({iis_path} left on {old_folder})") from None
            self.out(f"switched {iis_path} from {old_folder} to {new_folder}")
        elif pool:
            self.invoke(f"Start-WebAppPool {pool}", "Start-WebAppPool",
                        lambda s: s["appPools"][pool].__setitem__("state", "Started"))
        if self.deploy_as == "website":
            self.invoke(f"Start-Website {site_name}", "Start-Website",
                        lambda s: s["sites"][site_name].__setitem__("state", "Started"))
        if offline:
            offline.unlink(missing_ok=True)
        self.iis.start_sites()
        removed = self.retention(new_folder, old_folder)
        result = {"folder": new_folder, "previous": old_folder, "reused": installed["Reused"], "created": created,
                  "removed": removed}
        self.out("##ferry-result " + json.dumps(result, separators=(",", ":")))
        return 0

    def installed_matches(self, folder: str) -> bool:
        marker = self.fs(folder) / ".ferry-install.json"
        if not marker.is_file():
            return False
        data = json.loads(marker.read_text())
        return bool(data.get("sha256") == self.package["Sha256"]
                    and data.get("config") == self.p.get("ConfigDigest", ""))

    def install_folder(self) -> dict[str, Any]:
        base = str(self.p["Folder"])
        candidate, n = base, 1
        while self.fs(candidate).exists():
            if self.installed_matches(candidate):
                return {"Path": candidate, "Reused": True}
            n += 1
            candidate = f"{base}_{n}"
        file_win = str(self.package.get("File") or "")
        file = self.fs(file_win)
        if not file.is_file():
            raise PsError(f"Cannot find path '{file_win}' because it does not exist.")
        actual = _file_sha256(file)
        if actual != self.package["Sha256"]:
            raise PsError(f"package {file_win} has sha256 {actual}, expected {self.package['Sha256']}")
        temp = self.fs(candidate + ".ferry-tmp")
        if temp.exists():
            shutil.rmtree(temp)
        temp.mkdir(parents=True)
        if re.search(r"\.(zip|nupkg)$", file_win):
            with zipfile.ZipFile(file) as archive:
                archive.extractall(temp)
        else:
            with tarfile.open(file) as archive:
                archive.extractall(temp, filter="data")
        for override in self.p.get("Overrides") or []:
            relative = str(override["Path"])
            if re.match(r"^([A-Za-z]:|[\\/])", relative) or re.search(r"(^|[\\/])\.\.([\\/]|$)", relative):
                raise PsError(f"refusing to write outside the package: {relative}")
            target = temp.joinpath(*re.split(r"[\\/]+", relative))
            target.write_bytes(base64.b64decode(str(override["Content"])))
        marker = {"package": self.package["Id"], "version": self.package["Version"],
                  "sha256": self.package["Sha256"], "config": self.p.get("ConfigDigest", "")}
        (temp / ".ferry-install.json").write_text(json.dumps(marker))
        temp.rename(self.fs(candidate))
        return {"Path": candidate, "Reused": False}

    def set_app_pool(self) -> None:
        pool = self.p.get("AppPool")
        if not pool:
            return
        name = pool["Name"]
        if name not in self.iis.load()["appPools"]:
            self.invoke(f"New-WebAppPool {name}", "New-WebAppPool", lambda s: s["appPools"].__setitem__(name, {
                "managedRuntimeVersion": "v4.0", "managedPipelineMode": "Integrated",
                "identityType": "ApplicationPoolIdentity", "userName": "", "password": "", "startMode": "OnDemand",
                "state": "Started"}))
            self.out(f"created app pool {name}")
        runtime = "" if pool.get("Runtime") == "no-managed-code" else str(pool.get("Runtime"))
        settings = {"managedRuntimeVersion": runtime, "managedPipelineMode": str(pool.get("Pipeline")),
                    "startMode": str(pool.get("StartMode")), "identityType": str(pool.get("Identity"))}
        if pool.get("Identity") == "SpecificUser":
            settings |= {"userName": str(pool.get("UserName")), "password": str(pool.get("Password"))}
        for key, value in settings.items():
            self.invoke(f"set {key} of {name}", "Set-ItemProperty",
                        lambda s, k=key, v=value: s["appPools"][name].__setitem__(k, v))

    def set_bindings(self, site_name: str) -> None:
        certificates = {c.upper() for c in self.iis.load().get("certificates", [])}
        for binding in self.p.get("Bindings") or []:
            if binding["Protocol"] == "https" and str(binding.get("Thumbprint", "")).upper() not in certificates:
                raise PsError(f"certificate {str(binding.get('Thumbprint')).upper()} with a private key is not in "
                              "Cert:\\LocalMachine\\My")
        desired = []
        for binding in self.p.get("Bindings") or []:
            ip = binding.get("Ip") or "*"
            desired.append({"protocol": binding["Protocol"],
                            "bindingInformation": f"{ip}:{binding['Port']}:{binding.get('Host') or ''}",
                            "sslFlags": 1 if binding.get("Sni") else 0})
        current = self.iis.load()["sites"][site_name]["bindings"]
        have = {(b["protocol"], b["bindingInformation"]) for b in current}
        want = [(b["protocol"], b["bindingInformation"]) for b in desired]
        if self.p.get("BindingMode", "replace") == "merge":
            for binding in desired:
                if (binding["protocol"], binding["bindingInformation"]) not in have:
                    self.invoke(f"add binding {binding['bindingInformation']}", "New-ItemProperty",
                                lambda s, b=binding: s["sites"][site_name]["bindings"].append(b))
        elif sorted(have) != sorted(want):
            self.invoke(f"replace the bindings of {site_name}", "Set-ItemProperty",
                        lambda s: s["sites"][site_name].__setitem__("bindings", desired))

    def retention(self, new_folder: str, old_folder: str) -> list[str]:
        journal_win = str(self.p["Journal"])
        journal = self.fs(journal_win)
        entries = json.loads(journal.read_text()).get("entries", []) if journal.is_file() else []
        key = "|".join([self.p["Project"], self.p["Environment"], self.package["Id"], self.p["SiteName"],
                        self.p.get("VirtualPath") or ""])
        entries = [e for e in entries if not (e["key"] == key and e["folder"] == new_folder)]
        entries.insert(0, {"key": key, "project": self.p["Project"], "environment": self.p["Environment"],
                           "package": self.package["Id"], "version": self.package["Version"],
                           "sha256": self.package["Sha256"], "folder": new_folder, "site": self.p["SiteName"],
                           "virtualPath": self.p.get("VirtualPath") or "",
                           "installedAt": datetime.now(UTC).isoformat()})
        removed = []
        keep = int(self.p.get("Keep", 3))
        for index, entry in enumerate([e for e in entries if e["key"] == key], start=1):
            if index <= keep or entry["folder"] in (new_folder, old_folder):
                continue
            shutil.rmtree(self.fs(entry["folder"]), ignore_errors=True)
            removed.append(entry["folder"])
            entries.remove(entry)
        journal.parent.mkdir(parents=True, exist_ok=True)
        journal.write_text(json.dumps({"entries": entries}, indent=1))
        return removed


def read_zip_names(data: bytes) -> list[str]:
    """Names in a zip (for tests that inspect a package)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.namelist()
