"""Environments, lifecycles, load balancers and targets: where releases go."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from snapshots.model.common import Model, Name, NameList, Seconds, SecretRef


class Environment(Model):
    name: Name
    description: str = ""
    guided_failure: bool = Field(False, description="Pause on a failed step and ask a person (retry/skip/abort)")


class Phase(Model):
    """One stage of a lifecycle. ``minimum`` None means every environment must be reached."""

    name: Name
    environments: NameList = Field(min_length=1)
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


class Lifecycle(Model):
    name: Name
    phases: list[Phase] = Field(min_length=1)

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

    name: Name
    kind: Literal["haproxy"] = "haproxy"
    backend: Name
    nodes: list[Annotated[str, Field(pattern=r"^(tcp|unix|ssh)://.+")]] = Field(min_length=1)
    timeout: Seconds = 5


class SshTransport(Model):
    kind: Literal["ssh"]
    host: Name
    port: int = Field(22, ge=1, le=65535)
    user: Name
    key_file: str | None = None
    host_key: str | None = Field(
        None, pattern=r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/=]+$",
        description="Pinned public host key ('type base64'); or record one with `ferry target trust`")
    password: SecretRef | None = None
    connect_timeout: Seconds = 10


class WinRmTransport(Model):
    kind: Literal["winrm"]
    host: Name
    port: int | None = Field(None, ge=1, le=65535)
    scheme: Literal["https", "http"] = "https"
    auth: Literal["ntlm", "kerberos", "credssp", "certificate", "basic"] = "ntlm"
    username: str | None = None
    password: SecretRef | None = None
    ca_file: str | None = None
    verify: bool = Field(True, description="Verify the server certificate; turning this off is logged")
    cert_file: str | None = None
    cert_key_file: str | None = None
    operation_timeout: Seconds = 20
    read_timeout: Seconds = 30

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

    kind: Literal["local"]
    root: Name


Transport = Annotated[SshTransport | WinRmTransport | LocalTransport, Field(discriminator="kind")]


class Target(Model):
    name: Name
    environment: Name
    roles: NameList = Field(default_factory=list)
    hostname: str | None = Field(None, description="Machine.Hostname (defaults to the transport's host)")
    balancer_server: str | None = Field(None, description="Server name in the load balancer (default: name)")
    transport: Transport

    @property
    def machine_hostname(self) -> str:
        if self.hostname:
            return self.hostname
        return getattr(self.transport, "host", "localhost")


class Infrastructure(Model):
    environments: list[Environment] = Field(default_factory=list)
    lifecycles: list[Lifecycle] = Field(default_factory=list)
    load_balancers: list[LoadBalancer] = Field(default_factory=list)
    targets: list[Target] = Field(default_factory=list)

    def environment(self, name: str) -> Environment | None:
        return next((e for e in self.environments if e.name == name), None)

    def lifecycle(self, name: str) -> Lifecycle | None:
        return next((lc for lc in self.lifecycles if lc.name == name), None)

    def targets_in(self, environment: str) -> list[Target]:
        return [t for t in self.targets if t.environment == environment]
