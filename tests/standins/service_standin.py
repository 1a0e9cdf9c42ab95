"""The STAND-IN's emulation of ``windows-service.ps1`` and of the Windows Service Control Manager it drives.

Python pretending, step for step, to be windows-service.ps1 (same parameters, same order: install the folder →
stop with a timeout → switch the binary path → start and wait for Running, or put the old path back and restart
it → journal and retention → ``##ferry-result``) on a *simulated* service table in ``<state>/services.json``:
create, configure (binary path, start mode, delayed start, account, dependencies, description, recovery actions),
stop, start, query. A service "fails to start" when its executable is missing or contains ``FAIL-TO-START``,
and "hangs on stop" when its entry says ``"stop_hangs": true`` — so revert and timeouts can be tested.

It proves ferry's side (parameters, sequencing, the revert, error texts, the journal) and that the script's
intended effect is coherent; it does not prove the .ps1 runs so on Windows (the ``windows`` tests do that).
Passwords are not kept: the table records their sha256 so tests can check the right value arrived.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.standins import iis_standin
from tests.standins.iis_standin import IisDeploy, PowerShell, PsError, _need

_LOCK = threading.RLock()
ACCOUNTS = {"LocalSystem": "LocalSystem", "NetworkService": "NT AUTHORITY\\NetworkService",
            "LocalService": "NT AUTHORITY\\LocalService"}


class ServiceTable:
    """``<state>/services.json``: the simulated Service Control Manager (tests read and seed it)."""

    def __init__(self, state_dir: Path) -> None:
        self.file = state_dir / "services.json"

    def load(self) -> dict[str, Any]:
        with _LOCK:
            if not self.file.exists():
                return {"services": {}, "log": []}
            return json.loads(self.file.read_text())

    def save(self, state: dict[str, Any]) -> None:
        with _LOCK:
            temp = self.file.with_name(self.file.name + ".tmp")
            temp.write_text(json.dumps(state, indent=1))
            temp.replace(self.file)

    def change(self, operation: str, name: str, action: Any) -> Any:
        with _LOCK:
            state = self.load()
            result = action(state)
            state.setdefault("log", []).append({"op": operation, "service": name})
            self.save(state)
            return result


class ServiceDeploy(IisDeploy):
    """windows-service.ps1, step for step (its folder install is deploy-common.ps1's, shared with iis-deploy)."""

    def __init__(self, ps: PowerShell, params: dict[str, Any]) -> None:
        super().__init__(ps, {**params, "DeployAs": "website"})
        self.p = params
        self.table = ServiceTable(ps.server.state_dir)
        self.name = str(params["ServiceName"])
        for field, allowed in (("StartMode", ("auto", "delayed", "manual", "disabled")),
                               ("Account", ("LocalSystem", "NetworkService", "LocalService", "custom"))):
            value = params.get(field, allowed[0])
            if value not in allowed:
                raise PsError(f"Cannot validate argument on parameter '{field}'. The argument \"{value}\" does not "
                              f"belong to the set \"{','.join(allowed)}\" specified by the ValidateSet attribute.")

    def service(self) -> dict[str, Any] | None:
        return self.table.load()["services"].get(self.name)

    def status(self) -> str:
        service = self.service()
        return str(service["status"]) if service else ""

    def exe_of(self, path_name: str) -> str:
        match = re.match(r'^"([^"]+)"', path_name)
        return match.group(1) if match else path_name.split(" ", 1)[0]

    def configure(self, binary_path: str) -> None:
        p = self.p
        recovery = p.get("Recovery")

        def apply(state: dict[str, Any]) -> None:
            service = state["services"][self.name]
            service.update({
                "pathName": binary_path,
                "startMode": {"manual": "Manual", "disabled": "Disabled"}.get(p.get("StartMode", "auto"), "Auto"),
                "delayedAutoStart": p.get("StartMode") == "delayed",
                "startName": ACCOUNTS.get(p.get("Account", "LocalSystem"), str(p.get("UserName") or "")),
                "dependencies": [str(d) for d in p.get("Dependencies") or []]})
            if p.get("Account") == "custom":
                service["passwordSha256"] = hashlib.sha256(str(p.get("Password") or "").encode()).hexdigest()
            if p.get("DisplayName"):
                service["displayName"] = str(p["DisplayName"])
            if p.get("Description"):
                service["description"] = str(p["Description"])
            if recovery is not None:
                actions = [f"restart/{int(recovery['RestartDelayMilliseconds'])}" if a == "restart" else "/0"
                           for a in recovery.get("Actions") or []]
                service["recovery"] = {"reset": int(recovery["ResetPeriodSeconds"]), "actions": "/".join(actions)}

        self.table.change("Change", self.name, apply)

    def start(self) -> None:
        service = self.service()
        assert service is not None
        display = service.get("displayName") or self.name
        services = self.table.load()["services"]
        for dependency in service.get("dependencies") or []:
            if dependency not in services:
                raise PsError(f"Service '{display} ({self.name})' cannot be started due to the following error: "
                              f"The dependency service or group failed to start.")
        exe = self.fs(self.exe_of(service["pathName"]))
        if not exe.is_file() or b"FAIL-TO-START" in exe.read_bytes():
            raise PsError(f"Service '{display} ({self.name})' cannot be started due to the following error: "
                          f"Cannot start service {self.name} on computer '.'.")
        self.table.change("Start-Service", self.name,
                          lambda s: s["services"][self.name].__setitem__("status", "Running"))

    def stop(self) -> None:
        service = self.service()
        assert service is not None
        if service.get("stop_hangs"):
            self.table.change("Stop-Service", self.name,
                              lambda s: s["services"][self.name].__setitem__("status", "StopPending"))
            seconds = int(self.p.get("StopTimeoutSeconds", 120))
            raise PsError(f"service {self.name} did not reach Stopped within {seconds} s (it is StopPending)")
        self.table.change("Stop-Service", self.name,
                          lambda s: s["services"][self.name].__setitem__("status", "Stopped"))

    def run(self) -> int:
        installed = self.install_folder()
        new_folder = installed["Path"]
        self.out(("reusing " if installed["Reused"] else "extracted to ") + new_folder)
        executable = str(self.p["Executable"])
        exe = new_folder.rstrip("\\") + "\\" + executable
        if not self.fs(exe).is_file():
            raise PsError(f"the package has no {executable} (looked for {exe})")
        arguments = str(self.p.get("Arguments") or "")
        binary_path = f'"{exe}"' + (f" {arguments}" if arguments else "")
        key = "|".join([self.p["Project"], self.p["Environment"], self.package["Id"], "service", self.name])
        journal = self.fs(str(self.p["Journal"]))
        entries = json.loads(journal.read_text()).get("entries", []) if journal.is_file() else []
        previous = next((e for e in entries if e["key"] == key), None)
        old_folder = str(previous["folder"]) if previous else ""
        start_wanted = self.p.get("StartMode", "auto") != "disabled"
        existing = self.service()
        created = existing is None
        old_path = ""
        if existing is None:
            self.table.change("New-Service", self.name, lambda s: s["services"].__setitem__(self.name, {
                "displayName": str(self.p.get("DisplayName") or self.name), "description": "",
                "pathName": binary_path, "startMode": "Manual", "status": "Stopped", "startName": "LocalSystem",
                "dependencies": []}))
            self.out(f"created service {self.name}")
            self.configure(binary_path)
            if start_wanted:
                self.start()
        else:
            old_path = str(existing["pathName"])
            if existing["status"] != "Stopped":
                self.stop()
            try:
                self.configure(binary_path)
                if start_wanted:
                    self.start()
            except PsError as exc:
                self.table.change("Change", self.name,
                                  lambda s: s["services"][self.name].__setitem__("pathName", old_path))
                try:
                    self.start()
                except PsError as again:
                    self.out(f"could not restart {self.name} on its old binary path: {again}")
                raise PsError(f"{exc} ({self.name} left on {old_path})") from None
            self.out(f"switched {self.name} from {old_path} to {binary_path}")
        removed = self.update_journal(key, new_folder, old_folder)
        result = {"folder": new_folder, "previous": old_folder, "previousPath": old_path, "binaryPath": binary_path,
                  "reused": installed["Reused"], "created": created, "status": self.status(), "removed": removed}
        self.out("##ferry-result " + json.dumps(result, separators=(",", ":")))
        return 0

    def update_journal(self, key: str, new_folder: str, old_folder: str) -> list[str]:
        """deploy-common.ps1's Update-Journal."""
        journal = self.fs(str(self.p["Journal"]))
        entries = json.loads(journal.read_text()).get("entries", []) if journal.is_file() else []
        entries = [e for e in entries if not (e["key"] == key and e["folder"] == new_folder)]
        entries.insert(0, {"key": key, "project": self.p["Project"], "environment": self.p["Environment"],
                           "package": self.package["Id"], "version": self.package["Version"],
                           "sha256": self.package["Sha256"], "folder": new_folder,
                           "installedAt": datetime.now(UTC).isoformat(), "service": self.name})
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


def windows_service(ps: PowerShell, params: dict[str, Any], request: dict[str, Any]) -> int:
    _need(params, "Project", "Environment", "Package", "Folder", "Journal", "ServiceName", "Executable")
    return ServiceDeploy(ps, params).run()


iis_standin.HANDLERS["windows-service.ps1"] = windows_service
