"""The service managers the ``systemd-service`` step drives, behind one small interface.

A manager knows three things: where a service's unit file lives, how to write one (``unit``), and the exact
command lines (argv lists, run as data — never spliced into shell source) that install it, make the manager
re-read it, restart, ask whether it is active, show its recent log, and stop it.

* ``Systemd`` — what the step is for: ``/etc/systemd/system/<name>.service``, ``systemctl daemon-reload``,
  ``systemctl restart``, ``systemctl is-active``, ``journalctl -u <name> -n 50``. On the machines ferry is
  developed on, PID 1 is not systemd, so these command lines and unit files are tested as data (and with
  ``systemd-analyze verify``), not executed.
* ``Supervisor`` — Debian's ``supervisor`` (supervisord): a real service manager that runs in the lab's targets,
  so the step's sequence (install, reload, restart, wait, logs, revert) runs end to end against it over SSH.
  It is also usable for real on hosts that run supervisord.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from snapshots.errors import ConfigError

Argv = list[str]
UNIT_MODE = 0o640
"""Unit files may hold Environment= values: readable by their owner and group only."""


@dataclass(frozen=True)
class UnitSpec:
    """What a unit file says, as values (the manager writes them in its own syntax)."""

    name: str
    description: str
    exec_start: list[str]
    """Absolute executable under ``current`` and its arguments."""
    working_directory: str
    current: str
    """The ``current`` symlink of the release folders."""
    user: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)


def _one_line(value: str, what: str) -> str:
    """A unit file is line-based: a newline in a value would add a directive of its own."""
    if any(ch in value for ch in "\r\n\x00"):
        raise ConfigError(f"{what} may not contain a line break or NUL (it would add a line to the unit file)")
    return value


class ServiceManager(Protocol):
    """The operations the step needs; each command is an argv list the transport runs as data."""

    @property
    def kind(self) -> str: ...

    @property
    def restart_waits(self) -> bool:
        """Whether a successful restart already means "started and stayed up" (supervisor's startsecs)."""
        ...

    def unit_path(self, name: str) -> str: ...

    def template_values(self, spec: UnitSpec) -> dict[str, str]:
        """``Service.*`` values a unit template may use, already in this manager's syntax."""
        ...

    def unit(self, spec: UnitSpec) -> str:
        """ferry's own unit file for ``spec``."""
        ...

    def install(self, staged: str, name: str) -> list[Argv]: ...

    def reload(self, name: str) -> list[Argv]: ...

    def restart(self, name: str) -> list[Argv]: ...

    def is_active(self, name: str) -> Argv: ...

    def logs(self, name: str, lines: int = 50) -> Argv: ...

    def stop(self, name: str) -> list[Argv]: ...


def _install(sudo: list[str], staged: str, path: str) -> list[Argv]:
    return [[*sudo, "install", "-m", f"{UNIT_MODE:04o}", "-T", "--", staged, path], ["rm", "-f", "--", staged]]


# ------------------------------------------------------------------------------------------------- systemd

def systemd_quote(word: str) -> str:
    """One ExecStart/Environment word as systemd reads it: double-quoted, ``\\`` and ``"`` escaped, and the
    specifier ``%`` and variable ``$`` doubled so they stay literal (systemd.service(5), "Command lines")."""
    _one_line(word, "a service argument")
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


@dataclass(frozen=True)
class Systemd:
    unit_dir: str = "/etc/systemd/system"
    sudo: bool = False
    kind: str = "systemd"
    restart_waits: bool = False

    @property
    def _sudo(self) -> list[str]:
        return ["sudo", "-n"] if self.sudo else []

    def unit_name(self, name: str) -> str:
        return f"{name}.service"

    def unit_path(self, name: str) -> str:
        return f"{self.unit_dir.rstrip('/')}/{self.unit_name(name)}"

    def template_values(self, spec: UnitSpec) -> dict[str, str]:
        return {"Service.Name": spec.name, "Service.Description": _one_line(spec.description, "description"),
                "Service.ExecStart": " ".join(systemd_quote(w) for w in spec.exec_start),
                "Service.WorkingDirectory": _one_line(spec.working_directory, "working directory"),
                "Service.Current": spec.current, "Service.User": spec.user or ""}

    def unit(self, spec: UnitSpec) -> str:
        values = self.template_values(spec)
        lines = ["# Written by ferry (systemd-service step): changes here are replaced at the next deployment.",
                 "[Unit]", f"Description={values['Service.Description']}", "After=network.target", "",
                 "[Service]", "Type=simple", f"ExecStart={values['Service.ExecStart']}",
                 f"WorkingDirectory={values['Service.WorkingDirectory']}"]
        if spec.user:
            lines.append(f"User={_one_line(spec.user, 'user')}")
        lines += [f"Environment={systemd_quote(f'{k}={v}')}" for k, v in sorted(spec.environment.items())]
        lines += ["Restart=on-failure", "RestartSec=5", "", "[Install]", "WantedBy=multi-user.target", ""]
        return "\n".join(lines)

    def install(self, staged: str, name: str) -> list[Argv]:
        return _install(self._sudo, staged, self.unit_path(name))

    def reload(self, name: str) -> list[Argv]:
        return [[*self._sudo, "systemctl", "daemon-reload"],
                [*self._sudo, "systemctl", "enable", "--", self.unit_name(name)]]

    def restart(self, name: str) -> list[Argv]:
        return [[*self._sudo, "systemctl", "restart", "--", self.unit_name(name)]]

    def is_active(self, name: str) -> Argv:
        return ["systemctl", "is-active", "--quiet", "--", self.unit_name(name)]

    def logs(self, name: str, lines: int = 50) -> Argv:
        return [*self._sudo, "journalctl", "-u", self.unit_name(name), "-n", str(lines), "--no-pager"]

    def stop(self, name: str) -> list[Argv]:
        return [[*self._sudo, "systemctl", "stop", "--", self.unit_name(name)]]


# ------------------------------------------------------------------------------------------------- supervisor

def supervisor_value(value: str) -> str:
    """A value in a supervisord.conf: ``%`` doubled (the file is %-expanded, ``%(ENV_X)s``)."""
    return _one_line(value, "a supervisor setting").replace("%", "%%")


def _supervisor_env(environment: Mapping[str, str]) -> str:
    """``environment=`` as supervisor parses it: a non-POSIX shlex over ``KEY="value"`` pairs, where a quoted
    value cannot hold its own quote character (there is no escape) and quote characters at either end are
    stripped. A value supervisor cannot carry exactly is refused rather than changed."""
    pairs = []
    for key, value in sorted(environment.items()):
        value = supervisor_value(value)
        quote = '"' if '"' not in value else "'"
        if quote in value or (value[:1] in "'\"" and value) or (value[-1:] in "'\"" and value):
            raise ConfigError(f"environment {key}: supervisor cannot carry a value holding both ' and \" or "
                              "starting or ending with a quote; use the systemd manager or another value")
        pairs.append(f"{key}={quote}{value}{quote}")
    return ",".join(pairs)


@dataclass(frozen=True)
class Supervisor:
    config: str = "/etc/supervisor/supervisord.conf"
    unit_dir: str = "/etc/supervisor/conf.d"
    sudo: bool = False
    kind: str = "supervisor"
    restart_waits: bool = True
    start_seconds: int = 1
    """A program must stay up this long to count as started (supervisord's ``startsecs``)."""

    @property
    def _ctl(self) -> list[str]:
        return [*(["sudo", "-n"] if self.sudo else []), "supervisorctl", "-c", self.config]

    def unit_path(self, name: str) -> str:
        return f"{self.unit_dir.rstrip('/')}/{name}.conf"

    def template_values(self, spec: UnitSpec) -> dict[str, str]:
        return {"Service.Name": spec.name, "Service.Description": _one_line(spec.description, "description"),
                "Service.ExecStart": supervisor_value(shlex.join(spec.exec_start)),
                "Service.WorkingDirectory": supervisor_value(spec.working_directory),
                "Service.Current": spec.current, "Service.User": spec.user or ""}

    def unit(self, spec: UnitSpec) -> str:
        values = self.template_values(spec)
        lines = [f"; {values['Service.Description']} — written by ferry (systemd-service step, manager supervisor)",
                 f"[program:{spec.name}]", f"command={values['Service.ExecStart']}",
                 f"directory={values['Service.WorkingDirectory']}", "autostart=true", "autorestart=unexpected",
                 f"startsecs={self.start_seconds}", "startretries=0", "stopwaitsecs=10", "stopasgroup=true",
                 "killasgroup=true", "redirect_stderr=true"]
        if spec.user:
            lines.append(f"user={supervisor_value(spec.user)}")
        if spec.environment:
            lines.append(f"environment={_supervisor_env(spec.environment)}")
        return "\n".join(lines) + "\n"

    def install(self, staged: str, name: str) -> list[Argv]:
        return _install(["sudo", "-n"] if self.sudo else [], staged, self.unit_path(name))

    def reload(self, name: str) -> list[Argv]:
        return [[*self._ctl, "update", name]]  # update re-reads the config, adds or replaces the program

    def restart(self, name: str) -> list[Argv]:
        return [[*self._ctl, "restart", name]]

    def is_active(self, name: str) -> Argv:
        return [*self._ctl, "status", name]  # exit 0 only while RUNNING (supervisor 4)

    def logs(self, name: str, lines: int = 50) -> Argv:
        return [*self._ctl, "tail", f"-{lines * 160}", name]

    def stop(self, name: str) -> list[Argv]:
        return [[*self._ctl, "stop", name]]


def manager_for(kind: str, *, unit_dir: str | None = None, supervisor_config: str | None = None,
                sudo: bool = False) -> ServiceManager:
    if kind == "systemd":
        return Systemd(unit_dir=unit_dir or Systemd.unit_dir, sudo=sudo)
    if kind == "supervisor":
        return Supervisor(config=supervisor_config or Supervisor.config, unit_dir=unit_dir or Supervisor.unit_dir,
                          sudo=sudo)
    raise ConfigError(f"unknown service manager {kind!r} (known: systemd, supervisor)")


# the runner: an argv list travels as environment variables FERRY_ARGV_0..N, never as shell source
ARGV_SCRIPT = r"""
args=(); i=0
while :; do v="FERRY_ARGV_$i"; [ -n "${!v+x}" ] || break; args+=("${!v}"); i=$((i + 1)); done
exec "${args[@]}"
"""


def argv_env(argv: Argv) -> dict[str, str]:
    if not argv or any("\x00" in a for a in argv):
        raise ConfigError("a service manager command is empty or holds a NUL byte")
    return {f"FERRY_ARGV_{i}": a for i, a in enumerate(argv)}


_SAFE_DISPLAY = re.compile(r"^[A-Za-z0-9_./:@%+=,-]+$")


def display(argv: Argv) -> str:
    """A command line as a person would type it (for logs)."""
    return " ".join(a if _SAFE_DISPLAY.match(a) else shlex.quote(a) for a in argv)
