"""Environments, lifecycles, load balancers and targets: where releases go."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from snapshots.model.common import FromEnv, Model, Name, NameList, Seconds, SecretRef
from snapshots.model.feeds import FEEDS_DESCRIPTION, Feeds
from snapshots.model.freezes import Freeze


class Environment(Model):
    name: Name = Field(description="The environment's name, e.g. Production")
    description: str = Field("", description="What the environment is (for readers)")
    guided_failure: bool = Field(False, description="Pause on a failed step and ask a person (retry/skip/abort)")


class Phase(Model):
    """One stage of a lifecycle. ``minimum`` None means every environment must be reached."""

    name: Name = Field(description="The phase's name, e.g. Test")
    environments: NameList = Field(min_length=1, description="Environments of this phase, e.g. [Test]")
    minimum: int | None = Field(None, ge=0, description="Environments that must succeed before the next phase")
    optional: bool = Field(False, description="Later phases may proceed without this one")
    auto_deploy: bool | NameList = Field(
        False, description="Deploy automatically when the phase is entered (true = all its environments)")

    @model_validator(mode="after")
    def _minimum_fits(self) -> Phase:
        if self.minimum is not None and self.minimum > len(self.environments):
            raise ValueError(f"minimum {self.minimum} exceeds the phase's {len(self.environments)} environments")
        if isinstance(self.auto_deploy, list):
            extra = sorted(set(self.auto_deploy) - set(self.environments))
            if extra:
                raise ValueError(f"auto_deploy names environments not in the phase: {', '.join(extra)}")
        return self

    @property
    def required_count(self) -> int:
        if self.optional:
            return 0
        return len(self.environments) if self.minimum is None else self.minimum


DEFAULT_LIFECYCLE = "Default"
"""The lifecycle a project gets when it names none; built in unless the infrastructure declares one so named."""


class Lifecycle(Model):
    name: Name = Field(description="The lifecycle's name, e.g. Default")
    phases: list[Phase] = Field(min_length=1, description="Phases in order; a release must pass each before the next")

    @model_validator(mode="after")
    def _environment_once(self) -> Lifecycle:
        seen: dict[str, str] = {}
        for phase in self.phases:
            for env in phase.environments:
                if env in seen:
                    raise ValueError(f"environment {env!r} appears in phases {seen[env]!r} and {phase.name!r}")
                seen[env] = phase.name
        return self


class LoadBalancer(Model):
    """A balancer ferry drives during rolling steps. ``nodes`` lists every HAProxy runtime API to talk to:
    ``tcp://host:port``, ``unix:///path`` or ``ssh://user@host/path/to/socket``."""

    name: Name = Field(description="The balancer's name, as load-balancer steps refer to it, e.g. web-lb")
    kind: Literal["haproxy"] = Field("haproxy", description="haproxy (the only kind so far; default)")
    backend: Name = Field(description="HAProxy backend holding the targets' servers, e.g. octofx")
    nodes: list[Annotated[str, Field(pattern=r"^(tcp|unix|ssh)://.+")]] = Field(
        min_length=1, description="Each HAProxy runtime API: tcp://host:port, unix:///path or ssh://user@host/socket")
    timeout: Seconds = Field(5, description="Seconds to wait for each runtime API answer (default 5)")


class SshTransport(Model):
    kind: Literal["ssh"] = Field(description="ssh: a Linux target over SSH (paramiko)")
    host: Name = Field(description="Host name or address, e.g. 127.0.0.2")
    port: int = Field(22, ge=1, le=65535, description="SSH port (default 22)")
    user: Name = Field(description="User to log in as, e.g. deploy")
    key_file: str | None = Field(None, description="Private key file, e.g. ~/.ssh/id_ed25519 (default: the SSH agent)")
    host_key: str | None = Field(
        None, pattern=r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+$",
        description="Pinned public host key ('type base64'); or record one with `ferry target trust`")
    password: SecretRef | None = Field(
        None, description="Password, as {from_env: VAR} or {from_file: path} (never written in the YAML)")
    connect_timeout: Seconds = Field(10, description="Seconds to wait for the connection (default 10)")


class WinRmTransport(Model):
    kind: Literal["winrm"] = Field(description="winrm: a Windows target over WinRM (pywinrm)")
    host: Name = Field(description="Host name or address, e.g. web01.corp.example")
    port: int | None = Field(None, ge=1, le=65535, description="WinRM port (default 5986 for https, 5985 for http)")
    scheme: Literal["https", "http"] = Field(
        "https", description="https (default) or http (with NTLM/Kerberos/CredSSP message encryption)")
    auth: Literal["ntlm", "kerberos", "credssp", "certificate", "basic"] = Field(
        "ntlm", description="ntlm (default), kerberos, credssp, certificate or basic (https only)")
    username: str | None = Field(None, description="Account for ntlm/credssp/basic, e.g. CORP\\deploy")
    password: SecretRef | None = Field(None, description="Password, as {from_env: VAR} or {from_file: path}")
    ca_file: str | None = Field(None, description="CA bundle that signed the target's certificate (https)")
    verify: bool = Field(True, description="Verify the server certificate; turning this off is logged")
    cert_file: str | None = Field(None, description="auth certificate: client certificate file (PEM)")
    cert_key_file: str | None = Field(None, description="auth certificate: the client certificate's key file (PEM)")
    operation_timeout: Seconds = Field(20, description="Seconds WinRM may take per operation (default 20)")
    read_timeout: Seconds = Field(
        30, description="Seconds to wait for an HTTP answer (default 30; above operation_timeout)")

    @model_validator(mode="after")
    def _auth_fits(self) -> WinRmTransport:
        if self.auth == "basic" and self.scheme != "https":
            raise ValueError("basic auth sends the password in the clear: it needs scheme https")
        if self.auth == "certificate" and not (self.cert_file and self.cert_key_file):
            raise ValueError("certificate auth needs cert_file and cert_key_file")
        if self.auth in ("ntlm", "credssp", "basic") and not (self.username and self.password):
            raise ValueError(f"{self.auth} auth needs username and password")
        return self


class LocalTransport(Model):
    """A target that is a directory on the worker, running bash scripts (Octopus's "run on the server")."""

    kind: Literal["local"] = Field(description="local: a directory on the worker, running bash scripts")
    root: Name = Field(description="The directory that stands for the target's file system")


Transport = Annotated[SshTransport | WinRmTransport | LocalTransport, Field(discriminator="kind")]


def _duration(value: object) -> object:
    """``90``, ``"90s"``, ``"10m"``, ``"2h"``, ``"1d"`` → seconds (a person writes intervals in minutes)."""
    if isinstance(value, str):
        text = value.strip().lower()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
        number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1)
        try:
            return float(number) * unit
        except ValueError:
            raise ValueError(f"{value!r} is not a duration: write seconds or a number with s, m, h or d "
                             "(e.g. 10m)") from None
    return value


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0, le=30 * 86_400)]
"""Seconds, or text such as ``10m``, ``30s``, ``2h``, ``1d``."""

DEFAULT_MACHINE_POLICY = "Default"
"""The machine policy of a target that names none; built in (fail on unavailable targets, check every 60 min)
unless the infrastructure declares one so named."""


class HealthCheck(Model):
    interval: Duration = Field(3600, gt=0, description="How often the served health check connects to the "
                               "policy's targets (seconds, or 10m / 1h)")


class MachinePolicy(Model):
    """Octopus's machine policy: how often targets are health-checked, and what a deployment does with one that
    is unavailable."""

    name: Name = Field(description="The policy's name, as targets' machine_policy refers to it")
    health_check: HealthCheck = Field(default_factory=HealthCheck, description="The served health check")
    unavailable_targets: Literal["fail", "skip"] = Field(
        "fail", description="A target that cannot be reached during a deployment fails it (fail), or is left "
        "out, reported and the deployment continues (skip: Octopus's 'skip deployment targets if they are or "
        "become unavailable')")
    exclude_unhealthy_for: Duration = Field(
        1800, description="With skip: a target whose last health check failed less than this long ago "
        "(seconds, or 30m) is left out of deployments up front")


class CertificateSpec(Model):
    """A certificate kept by ferry (issue 15): read at ``ferry apply``, stored encrypted, deployed by the package
    step (PEM files) and the iis-website step (Cert:\\LocalMachine\\My + HTTPS binding)."""

    name: Name = Field(description="The certificate's name, as steps refer to it")
    source: str | FromEnv = Field(description="A PFX (.pfx/.p12) or PEM file (certificate + private key), "
                                  "relative to the YAML file; or {from_env: VAR} holding PEM text or a base64 PFX")
    password: SecretRef | None = Field(None, description="The PFX's or encrypted key's password (sensitive): "
                                       "{from_env: VAR} or {from_file: path}, never written in the YAML")


class Target(Model):
    name: Name = Field(description="The target's name, unique, e.g. prod-01 (Machine.Name)")
    environment: Name = Field(description="The environment the target belongs to, e.g. Production")
    roles: NameList = Field(default_factory=list, description="Roles (tags) that steps select targets by, e.g. [web]")
    machine_policy: Name = Field(DEFAULT_MACHINE_POLICY, description="The machine policy (machine_policies) "
                                 "deciding health checks and what a deployment does when this target is unavailable")
    hostname: str | None = Field(None, description="Machine.Hostname (defaults to the transport's host)")
    balancer_server: str | None = Field(None, description="Server name in the load balancer (default: name)")
    transport: Transport = Field(description="How ferry reaches it: ssh, winrm or local (kind: …)")

    @property
    def machine_hostname(self) -> str:
        if self.hostname:
            return self.hostname
        return getattr(self.transport, "host", "localhost")


class Infrastructure(Model):
    environments: list[Environment] = Field(
        default_factory=list, description="Environments in order, e.g. Development, Test, Production")
    lifecycles: list[Lifecycle] = Field(
        default_factory=list, description="Lifecycles: the phases releases go through (Default is built in)")
    load_balancers: list[LoadBalancer] = Field(
        default_factory=list, description="Load balancers ferry drives during rolling steps")
    targets: list[Target] = Field(default_factory=list, description="The servers deployments run on")
    freezes: list[Freeze] = Field(
        default_factory=list, description="Deployment freezes: windows in which deployments to some environments "
                                          "(optionally of some projects) are refused unless --override-freeze")
    machine_policies: list[MachinePolicy] = Field(
        default_factory=list, description="Health-check interval and unavailable-target handling, by name")
    certificates: list[CertificateSpec] = Field(
        default_factory=list, description="Certificates (PFX or PEM) that steps deploy by name")
    feeds: Feeds = Field(default_factory=list, description=FEEDS_DESCRIPTION)

    def machine_policy(self, name: str) -> MachinePolicy | None:
        """The policy called ``name``; ``Default`` is built in unless declared."""
        found = next((p for p in self.machine_policies if p.name == name), None)
        if found is None and name == DEFAULT_MACHINE_POLICY:
            return MachinePolicy(name=DEFAULT_MACHINE_POLICY)
        return found

    def policy_of(self, target: Target) -> MachinePolicy:
        return self.machine_policy(target.machine_policy) or MachinePolicy(name=target.machine_policy)

    def environment(self, name: str) -> Environment | None:
        return next((e for e in self.environments if e.name == name), None)

    def lifecycle(self, name: str) -> Lifecycle | None:
        """The lifecycle called ``name``; ``Default`` when none is declared is built in (as in Octopus: every
        environment in declared order, one phase each)."""
        found = next((lc for lc in self.lifecycles if lc.name == name), None)
        if found is None and name == DEFAULT_LIFECYCLE and self.environments:
            return Lifecycle(name=DEFAULT_LIFECYCLE, phases=[Phase(name=e.name, environments=[e.name])
                                                             for e in self.environments])
        return found

    def targets_in(self, environment: str) -> list[Target]:
        return [t for t in self.targets if t.environment == environment]
