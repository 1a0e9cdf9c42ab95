"""Step kinds of a deployment process, one pydantic model per kind, validated per kind.

A process item is either a step (it has ``kind``) or a parent step whose ``steps`` run as a unit on one
target at a time (``rolling``). The union is discriminated on ``kind`` so an unknown kind is reported as
such, listing the kinds that exist.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from snapshots.model.common import Model, Name, NameList, Seconds
from snapshots.model.config_transforms import AUTOMATIC_DESCRIPTION, TRANSFORMS_DESCRIPTION, Transform

RunOn = Literal["target", "worker-for-each-target", "worker"]
_TEMPLATE = re.compile(r"#\{")


class StepBase(Model):
    """Fields every step kind has: where it runs, when it runs, and how it is retried."""

    name: Name = Field(
        description="The step's name, unique in the project (scopes, --skip, logs and Octopus.Action[Name] use it)")
    roles: NameList = Field(default_factory=list, description="Target roles the step runs for")
    run_on: RunOn = Field(
        "target", description="target (default), worker-for-each-target (on the worker, once per target) or worker")
    condition: str = Field(
        "success", description="success | failure | always | a variable expression such as #{if Run}true#{/if}")
    required: bool = Field(False, description="A required step cannot be skipped at deploy time")
    enabled: bool = Field(True, description="false leaves the step out of deployments (default true)")
    environments: NameList = Field(default_factory=list, description="Run only in these environments")
    retries: int = Field(
        0, ge=0, le=100, description="Retries of a failed step on a target before it fails (default 0)")
    retry_delay: Seconds = Field(5, description="Seconds between retries (default 5)")
    timeout: Seconds | None = Field(None, gt=0, description="Seconds before the step is failed")
    allow_no_targets: bool = Field(
        False, description="No target in the environment has the step's roles (or all were excluded): skip the "
                           "step instead of failing the deployment")

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: str) -> str:
        return _valid_condition(value)


def _valid_condition(value: str) -> str:
    if value in ("success", "failure", "always") or _TEMPLATE.search(value):
        return value
    raise ValueError("condition must be success, failure, always, or a #{...} variable expression")


class Substitution(Model):
    """Config-file variable substitution: plain ``#{...}`` in ``files``, structured keys in ``structured``."""

    files: list[Name] = Field(
        default_factory=list, description="Files whose #{...} are replaced, e.g. [config/site.conf]")
    structured: list[Name] = Field(
        default_factory=list, description="JSON/YAML/XML files whose keys variables set, e.g. [appsettings.json]")


class ScriptStep(StepBase):
    kind: Literal["script"] = Field(description="script: run a bash or PowerShell script on each target")
    script: str = Field(min_length=1, description="The script, sent as written; it reads values with ferry_var NAME")
    syntax: Literal["bash", "powershell"] = Field("bash", description="bash (default) or powershell")
    parameters: dict[str, str] = Field(
        default_factory=dict, description="Extra NAME: value pairs the script reads; values may use #{...}")


class CertificateFiles(Model):
    """Where the package step writes a certificate on a Linux target."""

    name: Name = Field(description="The certificate's name in the infrastructure's certificates:")
    path: Name = Field(description="Absolute folder on the target for <name>.crt and <name>.key (mode 0600)")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") and "#{" not in value:
            raise ValueError("path must be an absolute folder (/srv/app/tls)")
        return value


class PackageStep(StepBase):
    """Linux package deployment: releases/<version> folders and an atomic ``current`` symlink."""

    kind: Literal["package"] = Field(
        description="package: install a package on Linux as releases/<version> with an atomic current symlink")
    package: Name = Field(description="Package id to install (one of the project's packages), e.g. OctoFX.Web")
    root: Name = Field("/opt/ferry/apps", description="Folder of releases/ and current (default /opt/ferry/apps)")
    substitute: Substitution = Field(
        Substitution(), description="Config files to substitute variables into after extraction")
    transforms: list[Transform] = Field(default_factory=list, description=TRANSFORMS_DESCRIPTION)
    automatic_transforms: bool = Field(True, description=AUTOMATIC_DESCRIPTION)
    keep: int = Field(3, ge=1, le=100, description="Release folders kept (the one in use is never removed)")
    run_scripts: bool = Field(
        True, description="Run the package's PreDeploy/Deploy/PostDeploy.sh scripts (default true)")
    config_file_mode: str = Field("0640", pattern=r"^0?[0-7]{3}$",
                                  description="Permission bits (octal, quoted: \"0640\") of config files that "
                                              "substitution rewrote: they may hold secrets, so not world-readable")
    certificates: list[CertificateFiles] = Field(
        default_factory=list, description="Certificates (infrastructure certificates:) written as PEM files "
        "<path>/<name>.crt (chain) and <path>/<name>.key (private key), both mode 0600")

    @property
    def config_mode(self) -> int:
        return int(self.config_file_mode, 8)


class Binding(Model):
    protocol: Literal["http", "https"] = Field(
        "http", description="http (default) or https (needs thumbprint or certificate)")
    ip: str = Field("*", description="IP address to listen on; * (default) for all")
    port: int | str = Field(80, description="Port number 1-65535 or a #{variable} (default 80)")
    host: str = Field("", description="Host header, e.g. octofx.example (default: none, any host)")
    thumbprint: str | None = Field(
        None, description="https: SHA-1 thumbprint (40 hex digits) of a certificate in the machine store, or #{...}")
    certificate: Name | None = Field(
        None, description="An infrastructure certificate (certificates:) to import into Cert:\\LocalMachine\\My, "
        "grant the app pool read on its private key and bind by its thumbprint (instead of thumbprint)")
    sni: bool = Field(False, description="https: use Server Name Indication (needs host; default false)")

    @field_validator("port")
    @classmethod
    def _port(cls, value: int | str) -> int | str:
        if isinstance(value, str):
            if value.isdigit():
                value = int(value)
            elif not _TEMPLATE.search(value):
                raise ValueError("port must be a number 1-65535 or a #{...} variable")
        if isinstance(value, int) and not 1 <= value <= 65535:
            raise ValueError("port must be between 1 and 65535")
        return value

    @model_validator(mode="after")
    def _tls(self) -> Binding:
        if self.protocol == "https" and not (self.thumbprint or self.certificate):
            raise ValueError("an https binding needs a certificate thumbprint or certificate")
        if self.thumbprint and self.certificate:
            raise ValueError("give thumbprint or certificate, not both")
        if self.protocol == "http" and (self.thumbprint or self.certificate or self.sni):
            raise ValueError("an http binding takes no thumbprint, certificate or sni")
        if self.thumbprint and not (_TEMPLATE.search(self.thumbprint)
                                    or re.fullmatch(r"[0-9A-Fa-f]{40}", self.thumbprint)):
            raise ValueError("thumbprint must be 40 hex digits (SHA-1) or a #{...} variable")
        if self.sni and not self.host:
            raise ValueError("sni needs a host name")
        return self


class Site(Model):
    name: Name = Field(description="IIS site name, e.g. OctoFX")
    bindings: list[Binding] = Field(
        default_factory=list, description="The site's bindings (protocol, ip, port, host, certificate)")
    binding_mode: Literal["replace", "merge"] = Field(
        "replace", description="replace (default): exactly these bindings; merge: add to existing ones")


class AppPool(Model):
    name: Name = Field(description="Application pool name, e.g. OctoFX")
    runtime: Literal["v4.0", "v2.0", "no-managed-code"] = Field(
        "v4.0", description="CLR version: v4.0 (default), v2.0 or no-managed-code")
    pipeline: Literal["Integrated", "Classic"] = Field(
        "Integrated", description="Managed pipeline mode: Integrated (default) or Classic")
    identity: Literal["ApplicationPoolIdentity", "LocalSystem", "LocalService", "NetworkService",
                      "SpecificUser"] = Field(
        "ApplicationPoolIdentity", description="The pool's account (default ApplicationPoolIdentity; SpecificUser "
                                               "needs username and password)")
    username: str | None = Field(None, description="identity SpecificUser: the account, e.g. CORP\\svc-octofx")
    password: str | None = Field(None, description="A #{...} reference to a sensitive variable")
    start_mode: Literal["OnDemand", "AlwaysRunning"] = Field(
        "OnDemand", description="OnDemand (default) or AlwaysRunning")

    @model_validator(mode="after")
    def _user(self) -> AppPool:
        if self.identity == "SpecificUser":
            if not self.username or not self.password:
                raise ValueError("identity SpecificUser needs username and password")
            if not _TEMPLATE.search(self.password):
                raise ValueError("password must reference a sensitive variable (#{...}), not be written here")
        return self


class IisWebsiteStep(StepBase):
    """Deploy a package to IIS as a web site, web application or virtual directory."""

    kind: Literal["iis-website"] = Field(
        description="iis-website: deploy a package to IIS as a web site, application or virtual directory")
    package: Name = Field(description="Package id to deploy (one of the project's packages)")
    deploy_as: Literal["website", "application", "virtual-directory"] = Field(
        "website", description="website (default), application or virtual-directory")
    site: Site = Field(description="The IIS site (name, bindings); for an application, the site it lives in")
    virtual_path: str | None = Field(None, description="/path for an application or virtual directory")
    app_pool: AppPool | None = Field(
        None, description="The application pool to create or reconfigure (not for a virtual directory)")
    substitute: Substitution = Field(
        Substitution(), description="Config files to substitute variables into (e.g. web.config)")
    transforms: list[Transform] = Field(default_factory=list, description=TRANSFORMS_DESCRIPTION)
    automatic_transforms: bool = Field(True, description=AUTOMATIC_DESCRIPTION)
    app_offline: bool = Field(False, description="Drop app_offline.htm while switching folders (default false)")
    keep: int = Field(3, ge=1, le=100, description="Release folders kept (default 3; the one in use stays)")
    root: str = Field(
        r"C:\ferry\Applications", description="Folder of the versioned folders (default C:\\ferry\\Applications)")
    acquire: Literal["push", "target-pulls"] = Field(
        "push", description="push (default): ferry uploads the package; target-pulls: the target downloads it")
    feed_url: str | None = Field(
        None, description="acquire: target-pulls — base URL the target downloads <package file> from")

    @model_validator(mode="after")
    def _shape(self) -> IisWebsiteStep:
        if self.acquire == "target-pulls" and not self.feed_url:
            raise ValueError("acquire: target-pulls needs feed_url (where the target downloads the package)")
        if self.deploy_as != "website" and not (self.virtual_path or "").startswith("/"):
            raise ValueError(f"deploy_as {self.deploy_as} needs virtual_path starting with '/'")
        if self.deploy_as == "virtual-directory" and self.app_pool:
            raise ValueError("a virtual directory has no app pool")
        if self.deploy_as != "virtual-directory" and self.app_pool is None:
            raise ValueError(f"deploy_as {self.deploy_as} needs app_pool")
        return self


class LoadBalancerStep(StepBase):
    """Take a target out of (``remove``) or put it back into (``add``) a load balancer."""

    kind: Literal["load-balancer"] = Field(
        description="load-balancer: take a target out of, or put it back into, a load balancer")
    run_on: RunOn = Field(
        "worker-for-each-target", description="Default worker-for-each-target: ferry drives the balancer per target")
    balancer: Name = Field(description="Name of a load_balancers entry of the infrastructure, e.g. web-lb")
    action: Literal["add", "remove"] = Field(
        description="remove (drain, then maintenance) or add (ready, wait until UP)")
    server: str = Field("#{Machine.Name}", description="Server name in the balancer's backend")
    drain_timeout: Seconds = Field(60, description="remove: seconds to wait for sessions to reach 0 (default 60)")
    up_timeout: Seconds = Field(60, description="add: seconds to wait for the health check to say UP (default 60)")
    force: bool = Field(False, description="On drain timeout, cut the remaining sessions instead of failing")


class HttpExpectation(Model):
    status: int = Field(200, ge=100, le=599, description="Expected HTTP status (default 200)")
    contains: str | None = Field(
        None, description="Text the body must contain, e.g. #{Release.Number} (default: not checked)")


class HttpCheckStep(StepBase):
    """Request a URL on the target directly until status and body match."""

    kind: Literal["http-check"] = Field(description="http-check: request a URL until status and body match")
    run_on: RunOn = Field("worker-for-each-target", description="Where it runs (default worker-for-each-target)")
    url: Annotated[str, Field(pattern=r"^(https?://|#\{)")] = Field(
        description="http(s) URL or #{...}, e.g. http://#{Machine.Hostname}:8080/health")
    method: Literal["GET", "HEAD", "POST"] = Field("GET", description="GET (default), HEAD or POST")
    expect: HttpExpectation = Field(
        HttpExpectation(), description="What the answer must be: status (default 200) and optional body text")
    within: Seconds = Field(60, description="Keep trying for this long")
    interval: Seconds = Field(1, description="Seconds between attempts (default 1)")


class ManualStep(StepBase):
    """Pause for a person to proceed or abort, with notes recorded on the deployment."""

    kind: Literal["manual"] = Field(description="manual: pause for a person to proceed or abort (notes recorded)")
    run_on: RunOn = Field("worker", description="Where it runs (default worker: once per deployment)")
    instructions: str = Field(min_length=1, description="What the person should check or do before proceeding")
    responsible: str | None = Field(None, description="Who should answer, e.g. a team name (shown with the pause)")


_SERVICE_NAME = re.compile(r"^[A-Za-z0-9_.@:+-]{1,200}$")


def _relative_file(value: str, what: str) -> str:
    """A path inside the package: no drive, no leading slash, no '..' (it is joined to the release folder)."""
    parts = re.split(r"[\\/]+", value)
    if re.match(r"^([A-Za-z]:|[\\/])", value) or ".." in parts or not value.strip():
        raise ValueError(f"{what} must be a path inside the package (relative, no '..'), not {value!r}")
    return value


def _sensitive_reference(value: str | None, what: str) -> str | None:
    if value is not None and not re.fullmatch(r"\s*#\{[^}]+\}\s*", value):
        raise ValueError(f"{what} must be a #{{...}} reference to a sensitive variable, not be written here")
    return value


RecoveryAction = Literal["restart", "none"]
_DEFAULT_RECOVERY: tuple[RecoveryAction, ...] = ("restart", "restart", "none")


class ServiceRecovery(Model):
    """What Windows does when the service process dies (``sc.exe failure``): Octopus's "recovery actions"."""

    actions: list[RecoveryAction] = Field(
        default_factory=lambda: list(_DEFAULT_RECOVERY), max_length=3,
        description="First, second and subsequent failures: restart the service, or do nothing")
    restart_delay_ms: int = Field(60_000, ge=0, le=86_400_000,
                                  description="Milliseconds Windows waits before a restart action")
    reset_period: int = Field(86_400, ge=0, le=2_592_000,
                              description="Seconds without failure after which the failure count goes back to 0")


class WindowsServiceStep(StepBase):
    """Install or update a Windows Service from a package, over WinRM: stop → new versioned folder → switch
    the binary path → start, reverting to the previous folder if the service does not reach Running."""

    kind: Literal["windows-service"] = Field(
        description="windows-service: install a package and run it as a Windows service")
    package: Name = Field(description="The package holding the service's executable")
    service_name: Name = Field(description="The service's (key) name, as sc.exe and Get-Service know it")
    display_name: str | None = Field(None, description="Name shown in services.msc (default: service_name)")
    description: str | None = Field(None, description="The service's description")
    executable: str = Field(description="The service executable, relative to the package (bin\\Worker.exe)")
    arguments: str = Field("", description="Command-line arguments appended to the executable's path")
    start_mode: Literal["auto", "delayed", "manual", "disabled"] = Field(
        "auto", description="auto | delayed (automatic, delayed start) | manual | disabled")
    account: Literal["LocalSystem", "NetworkService", "LocalService", "custom"] = Field(
        "LocalSystem", description="The account the service runs as; custom needs username and password")
    username: str | None = Field(None, description="account: custom — DOMAIN\\user or .\\user")
    password: str | None = Field(None, description="account: custom — a #{...} reference to a sensitive variable")
    dependencies: NameList = Field(default_factory=list, description="Services that must run before this one")
    recovery: ServiceRecovery = Field(default_factory=ServiceRecovery,
                                      description="Restart actions on failure and the failure-count reset period")
    stop_timeout: Seconds = Field(120, gt=0, description="Seconds to wait for the service to stop")
    start_timeout: Seconds = Field(120, gt=0, description="Seconds to wait for the service to reach Running")
    substitute: Substitution = Field(Substitution(), description="Config files whose #{...} are substituted")
    transforms: list[Transform] = Field(default_factory=list, description=TRANSFORMS_DESCRIPTION)
    automatic_transforms: bool = Field(True, description=AUTOMATIC_DESCRIPTION)
    keep: int = Field(3, ge=1, le=100, description="Versioned folders kept (the one in use is never removed)")
    root: str = Field(r"C:\ferry\Applications", description="Windows folder the versioned folders go under")
    acquire: Literal["push", "target-pulls"] = Field("push", description="push: streamed over WinRM; "
                                                     "target-pulls: the target downloads it from feed_url")
    feed_url: str | None = Field(
        None, description="acquire: target-pulls — base URL the target downloads <package file> from")

    @field_validator("service_name")
    @classmethod
    def _service_name(cls, value: str) -> str:
        if not _SERVICE_NAME.match(value) and not _TEMPLATE.search(value):
            raise ValueError("service_name may hold letters, digits and _ . @ : + - only")
        return value

    @field_validator("executable")
    @classmethod
    def _executable(cls, value: str) -> str:
        return _relative_file(value, "executable")

    @model_validator(mode="after")
    def _account(self) -> WindowsServiceStep:
        if self.account == "custom":
            if not self.username or not self.password:
                raise ValueError("account custom needs username and password")
            _sensitive_reference(self.password, "password")
        elif self.username or self.password:
            raise ValueError(f"account {self.account} takes no username or password")
        if self.acquire == "target-pulls" and not self.feed_url:
            raise ValueError("acquire: target-pulls needs feed_url (where the target downloads the package)")
        return self


class SystemdServiceStep(StepBase):
    """Install or update a Linux service over SSH: the package in a release folder, a unit file from a template
    whose ExecStart points at ``current``, daemon-reload, restart, wait until active; revert on failure."""

    kind: Literal["systemd-service"] = Field(
        description="systemd-service: install a package and run it as a systemd (or supervisor) service")
    package: Name = Field(description="The package holding the service's executable")
    service_name: Name = Field(description="The unit's name without .service (systemd) or the program name "
                                           "(supervisor)")
    description: str | None = Field(None, description="The unit's Description= (default: the project and service)")
    executable: str = Field(description="The executable, relative to the package (bin/server)")
    arguments: list[str] = Field(default_factory=list, description="Arguments of ExecStart, one per item "
                                                                  "(each may hold #{...})")
    user: str | None = Field(None, description="User= the service runs as (systemd; default: root)")
    environment: dict[str, str] = Field(default_factory=dict, description="Environment= of the service")
    unit_template: str | None = Field(
        None, description="The whole unit file as an Octostache template (default: ferry's own); it may use "
                          "#{Service.Name}, #{Service.Description}, #{Service.ExecStart}, "
                          "#{Service.WorkingDirectory}, #{Service.Current}, #{Service.User} beside the "
                          "project's variables")
    manager: Literal["systemd", "supervisor"] = Field(
        "systemd", description="The service manager on the target: systemd, or supervisor (supervisord)")
    unit_dir: str | None = Field(None, description="Where unit files go (default /etc/systemd/system, or "
                                                   "/etc/supervisor/conf.d for supervisor)")
    supervisor_config: str = Field("/etc/supervisor/supervisord.conf",
                                   description="manager supervisor: the supervisord.conf supervisorctl reads")
    sudo: bool = Field(False, description="Run the service manager's commands with sudo -n (a non-root login)")
    start_timeout: Seconds = Field(30, gt=0, description="Seconds to wait for the service to become active")
    root: Name = Field("/opt/ferry/apps", description="Release folders go under <root>/<environment>/<package>")
    substitute: Substitution = Field(Substitution(), description="Config files whose #{...} are substituted")
    keep: int = Field(3, ge=1, le=100, description="Release folders kept (the one in use is never removed)")
    config_file_mode: str = Field("0640", pattern=r"^0?[0-7]{3}$",
                                  description="Permission bits of config files that substitution rewrote")

    @property
    def config_mode(self) -> int:
        return int(self.config_file_mode, 8)

    @property
    def transforms(self) -> list[Any]:
        """No XDT transforms here (the package step's config preparation reads these)."""
        return []

    @property
    def automatic_transforms(self) -> bool:
        return False

    @field_validator("service_name")
    @classmethod
    def _unit_name(cls, value: str) -> str:
        if not _SERVICE_NAME.match(value) or value.endswith(".service"):
            raise ValueError("service_name may hold letters, digits and _ . @ : + - only, without .service")
        return value

    @field_validator("executable")
    @classmethod
    def _executable(cls, value: str) -> str:
        return _relative_file(value, "executable")

    @field_validator("environment")
    @classmethod
    def _environment(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"environment name {name!r} is not a valid variable name")
        return value


Step = Annotated[
    ScriptStep | PackageStep | IisWebsiteStep | LoadBalancerStep | HttpCheckStep | ManualStep
    | WindowsServiceStep | SystemdServiceStep,
    Field(discriminator="kind"),
]
STEP_KINDS = ("script", "package", "iis-website", "load-balancer", "http-check", "manual", "windows-service",
              "systemd-service")


def _window_part(value: Any) -> Any:
    if isinstance(value, str) and _TEMPLATE.search(value):
        return value  # resolved per environment at deploy time (like Octopus's bound window size)
    if isinstance(value, str) and not re.fullmatch(r"(100|[1-9][0-9]?)%", value.strip()):
        raise ValueError(f"window {value!r} must be a count or a percentage like '25%'")
    if isinstance(value, int) and value < 1:
        raise ValueError("window must be at least 1")
    return value


class Rolling(Model):
    """How a parent step moves across its targets."""

    window: int | str | list[int | str] = Field(
        1, description="Targets at once: a count, a percentage ('25%'), a ramp such as [1, '25%'], "
                       "or a #{variable} scoped per environment")
    min_healthy: int | str = Field(
        0, description="Never fewer targets in service than this (a count, or a #{variable} scoped per environment)")
    max_failures: int = Field(0, ge=0, description="Failed targets tolerated before no new target starts")
    auto_rollback: bool = Field(False, description="On failure redeploy the previous release to updated targets")

    @field_validator("min_healthy")
    @classmethod
    def _min_healthy(cls, value: int | str) -> int | str:
        if isinstance(value, str):
            if value.strip().isdigit():
                return int(value)
            if not _TEMPLATE.search(value):
                raise ValueError("min_healthy must be a count or a #{...} variable")
        elif value < 0:
            raise ValueError("min_healthy cannot be negative")
        return value

    @field_validator("window")
    @classmethod
    def _window(cls, value: Any) -> Any:
        if isinstance(value, list):
            if not value:
                raise ValueError("a window ramp needs at least one size")
            return [_window_part(v) for v in value]
        return _window_part(value)


class ParentStep(Model):
    """A step whose children run in order on one target, across targets a window at a time."""

    name: Name = Field(description="The parent step's name, unique in the project")
    roles: NameList = Field(min_length=1, description="Target roles whose targets the children run on, e.g. [web]")
    rolling: Rolling | None = Field(None, description="Absent: all targets at once")
    condition: str = Field("success", description="success (default) | failure | always | a #{...} expression")
    required: bool = Field(False, description="A required step cannot be skipped at deploy time (default false)")
    enabled: bool = Field(True, description="false leaves the step and its children out (default true)")
    environments: NameList = Field(default_factory=list, description="Run only in these environments (default: all)")
    allow_no_targets: bool = Field(
        False, description="No target in the environment has the step's roles (or all were excluded): skip the "
                           "step instead of failing the deployment")
    steps: list[Step] = Field(min_length=1, description="Child steps, run in order on one target at a time")

    @field_validator("condition")
    @classmethod
    def _condition(cls, value: str) -> str:
        return _valid_condition(value)

    @model_validator(mode="after")
    def _children(self) -> ParentStep:
        for child in self.steps:
            if child.roles:
                raise ValueError(f"child step {child.name!r} takes its roles from the parent; remove 'roles'")
            if child.run_on == "worker":
                raise ValueError(f"child step {child.name!r} cannot run_on worker (once); "
                                 "use worker-for-each-target")
        return self


def _process_item_tag(value: Any) -> str:
    if isinstance(value, dict):
        return "parent" if "steps" in value and "kind" not in value else "step"
    return "parent" if isinstance(value, ParentStep) else "step"


ProcessItem = Annotated[
    Annotated[Step, Tag("step")] | Annotated[ParentStep, Tag("parent")],
    Discriminator(_process_item_tag),
]
