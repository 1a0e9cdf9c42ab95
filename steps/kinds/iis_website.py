"""The ``iis-website`` step: deploy a package to IIS on a Windows target over WinRM, as Octopus's "Deploy to IIS".

What runs where, and why:

* On the worker: the package's bytes are checked against the sha256 the release pinned, extracted into a temp
  folder, and the step's ``substitute`` files get their ``#{...}`` and structured variables there (ferry's own
  ``snapshots.variables.configfiles``, the same code as on Linux). Only the changed files' bytes travel on, as data.
* To the target: the package file itself (``acquire: push`` streams it through WinRM; ``target-pulls`` has the
  target download it from ``feed_url``), both verified by sha256 on the target.
* On the target, one ``iis-deploy.ps1`` (package data, WebAdministration) extracts into a new versioned folder
  ``<root>\\<environment>\\<package>\\<version>``, writes the substituted files, configures the app pool, site,
  bindings, application or virtual directory, stops the pool and waits, switches the physical path in one
  move, starts and waits, reverts to the old folder if anything fails after the stop, keeps ``keep`` folders
  and records each installation in ``<root>\\DeploymentJournal.json`` (a redeploy of a kept release — a
  rollback — repoints IIS at its folder instead of extracting again).

``iis_parameters`` computes the script's parameters without touching a target, so tests pin them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snapshots.digests import sha256_file
from snapshots.errors import SnapshotIntegrityError, StepFailed
from snapshots.model.steps import IisWebsiteStep
from steps.context import PackageRef, StepContext
from steps.kinds.config_prep import archive_names, prepare, transform_plan, wants_transforms
from steps.kinds.iis_certificates import import_certificates, thumbprint_of
from steps.kinds.powershell_scripts import compose
from steps.scratch import private_tempdir

SCRIPT = "iis-deploy.ps1"
SCRIPTS = Path(__file__).resolve().parent / "powershell"
"""The PowerShell the step kinds ship (package data)."""
MAX_RETRIES = 5  # Calamari's MaxRetryFailures
RETRY_DELAY_MS = 1000  # Calamari sleeps a random 1-4 s between tries
STOP_TIMEOUT = 120
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def _segment(value: str) -> str:
    """A path segment Windows accepts (environment and package names may hold ``:`` or ``/``)."""
    return _UNSAFE.sub("_", value).strip(" .") or "_"


def _win_join(*parts: str) -> str:
    return "\\".join(p.strip("\\") if i else p.rstrip("\\") for i, p in enumerate(parts))


@dataclass
class IisPlan:
    parameters: dict[str, Any]
    package: PackageRef
    package_file: str
    """Where the package lands on the target."""


def _fail(ctx: StepContext, message: str) -> StepFailed:
    return StepFailed(message, step=ctx.step.name, target=ctx.target_name)


@dataclass(frozen=True)
class PackageLayout:
    """Where a Windows step kind puts a package on its target (iis-website and windows-service share it, and the
    deploy-common.ps1 both scripts include expects it)."""

    package: PackageRef
    folder: str
    """``<root>\\<environment>\\<package>\\<version>``: the versioned folder the release is extracted into."""
    package_file: str
    """``<root>\\.packages\\<file>``: where the package file lands."""
    journal: str

    def package_parameter(self) -> dict[str, str]:
        return {"Id": self.package.id, "Version": self.package.version, "Sha256": self.package.sha256,
                "File": self.package_file}


def package_layout(ctx: StepContext, package_id: str, root_template: str) -> PackageLayout:
    """The release's package and its folders under the step's (rendered) ``root``; refused when the package is
    not in the release or the root is not an absolute Windows path."""
    ref = ctx.packages.get(package_id)
    if ref is None:
        raise _fail(ctx, f"package {package_id!r} is not part of this release")
    root = ctx.render(root_template, f"{ctx.where} root") if root_template else ""
    if not re.match(r"^[A-Za-z]:\\", root):
        raise _fail(ctx, f"root must be an absolute Windows path like C:\\ferry\\Applications, not {root!r}")
    folder = _win_join(root, _segment(ctx.environment), _segment(ref.id), _segment(ref.version))
    return PackageLayout(ref, folder, _win_join(root, ".packages", _segment(ref.filename)),
                         _win_join(root, "DeploymentJournal.json"))


def iis_parameters(ctx: StepContext) -> IisPlan:
    """Everything ``iis-deploy.ps1`` receives except the substituted files (``Overrides``/``ConfigDigest``)."""
    step: IisWebsiteStep = ctx.step

    def render(value: str | None, field: str) -> str:
        return ctx.render(value, f"{ctx.where} {field}") if value else ""

    layout = package_layout(ctx, step.package, step.root)
    bindings = []
    for index, binding in enumerate(step.site.bindings):
        where = f"site.bindings[{index}]"
        port = render(str(binding.port), f"{where}.port")
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise _fail(ctx, f"{where}.port renders to {port!r}: expected a port number 1-65535")
        thumbprint = render(binding.thumbprint, f"{where}.thumbprint") or None
        if binding.certificate:  # an infrastructure certificate: bound by its thumbprint once imported
            thumbprint = thumbprint_of(ctx, binding.certificate)
        if thumbprint is not None and not re.fullmatch(r"[0-9A-Fa-f]{40}", thumbprint):
            raise _fail(ctx, f"{where}.thumbprint does not render to 40 hex digits (a SHA-1 thumbprint)")
        bindings.append({"Protocol": binding.protocol, "Ip": render(binding.ip, f"{where}.ip") or "*",
                         "Port": int(port), "Host": render(binding.host, f"{where}.host"),
                         "Thumbprint": thumbprint.upper() if thumbprint else None, "Sni": binding.sni})
    if step.deploy_as == "website" and not bindings:
        raise _fail(ctx, "a web site needs at least one binding")
    pool = None
    if step.app_pool is not None:
        pool = {"Name": render(step.app_pool.name, "app_pool.name"), "Runtime": step.app_pool.runtime,
                "Pipeline": step.app_pool.pipeline, "Identity": step.app_pool.identity,
                "UserName": render(step.app_pool.username, "app_pool.username") or None,
                "Password": render(step.app_pool.password, "app_pool.password") or None,
                "StartMode": step.app_pool.start_mode}
    parameters = {
        "Project": ctx.project, "Environment": ctx.environment,
        "Package": layout.package_parameter(), "Folder": layout.folder, "Journal": layout.journal,
        "Overrides": [], "ConfigDigest": "",
        "DeployAs": step.deploy_as, "SiteName": render(step.site.name, "site.name"),
        "VirtualPath": render(step.virtual_path, "virtual_path"),
        "Bindings": bindings, "BindingMode": step.site.binding_mode, "AppPool": pool,
        "AppOffline": step.app_offline, "Keep": step.keep, "MaxRetries": MAX_RETRIES,
        "RetryDelayMilliseconds": RETRY_DELAY_MS, "StopTimeoutSeconds": STOP_TIMEOUT,
    }
    return IisPlan(parameters, layout.package, layout.package_file)


def _extract(archive: Path, into: Path) -> None:
    name = archive.name.lower()
    if name.endswith((".zip", ".nupkg")):
        with zipfile.ZipFile(archive) as package:
            for member in package.namelist():
                if member.startswith(("/", "\\")) or ".." in re.split(r"[\\/]", member):
                    raise SnapshotIntegrityError(f"{archive.name}: entry {member!r} would land outside the folder")
            package.extractall(into)
    else:
        with tarfile.open(archive) as package:
            package.extractall(into, filter="data")


def substituted_files(ctx: StepContext, package: Path) -> list[dict[str, str]]:
    """The config files the step substitutes or transforms, as they must be on the target: [{Path, Content(base64)}]
    for each file whose bytes changed (Windows separators), computed on the worker from the verified package."""
    step: IisWebsiteStep = ctx.step
    pairs = transform_plan(ctx, archive_names(package)) if wants_transforms(ctx) else []
    if not (step.substitute.files or step.substitute.structured or pairs):
        return []
    with private_tempdir("iis") as temp:  # rendered config (secrets): swept should this process be killed
        root = Path(temp)
        _extract(package, root)
        before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        for line in prepare(ctx, root, pairs, variables=ctx.variables):
            ctx.log(line)
        changed = []
        for path, data in sorted(before.items()):
            now = path.read_bytes()
            if now != data:
                changed.append({"Path": path.relative_to(root).as_posix().replace("/", "\\"),
                                "Content": base64.b64encode(now).decode("ascii")})
        shutil.rmtree(root, ignore_errors=True)
    return changed


def config_digest(overrides: list[dict[str, str]]) -> str:
    """Identifies the substituted configuration: a kept folder is reused only for the same package and config."""
    return hashlib.sha256(json.dumps(overrides, sort_keys=True).encode()).hexdigest()


def run(ctx: StepContext) -> None:
    transport = ctx.transport
    if getattr(transport, "invoke", None) is None:
        raise _fail(ctx, "iis-website runs on Windows targets: give the target a winrm transport")
    import_certificates(ctx)  # into Cert:\LocalMachine\My, key readable by the app pool, before any binding
    plan = iis_parameters(ctx)
    one_invocation = ctx.step.acquire == "push" and getattr(transport, "upload_then_invoke", None) is not None
    overrides = checked_overrides(ctx, plan.package) if one_invocation else \
        send_package(ctx, plan.package, plan.package_file)
    plan.parameters["Overrides"] = overrides
    plan.parameters["ConfigDigest"] = config_digest(overrides) if overrides else ""
    if one_invocation:  # the package upload and iis-deploy.ps1 in one PowerShell invocation
        done = upload_and_invoke(ctx, plan.package, plan.package_file, SCRIPT, plan.parameters, "IIS deployment")
    else:
        done = invoke_script(ctx, SCRIPT, plan.parameters, "IIS deployment")
    how = "repointed to the kept folder" if done.get("reused") else "installed"
    ctx.log(f"{plan.parameters['SiteName']}{plan.parameters['VirtualPath']}: {how} {done['folder']}"
            + (f" (was {done['previous']})" if done.get("previous") and done["previous"] != done["folder"] else "")
            + (f"; removed {', '.join(done['removed'])}" if done.get("removed") else ""))


def send_package(ctx: StepContext, ref: PackageRef, package_file: str) -> list[dict[str, str]]:
    """Check the package against the release's pin, compute the substituted/transformed config files on the
    worker, and get the package onto the target (``acquire``: push or target-pulls). Returns the overrides.
    Shared by the Windows step kinds (iis-website, windows-service)."""
    transport = ctx.transport
    overrides = checked_overrides(ctx, ref)
    step = ctx.step
    if step.acquire == "push":
        sent = transport.upload(ref.path, package_file, ref.sha256)
        ctx.log(f"sent {ref.filename} ({ref.path.stat().st_size} bytes) to {package_file}" if sent
                else f"{ref.filename} is already on the target (same sha256)")
    else:
        url = ctx.render(step.feed_url or "", f"{ctx.where} feed_url").rstrip("/") + "/" + ref.filename
        # WinRM-only: callers let only a transport with invoke (WinRM) through
        pulled = transport.pull(url, package_file, ref.sha256)  # type: ignore[attr-defined]  # WinRM
        ctx.log(f"the target downloaded {url} (sha256 verified)" if pulled
                else f"{ref.filename} is already on the target (same sha256)")
    return overrides


def checked_overrides(ctx: StepContext, ref: PackageRef) -> list[dict[str, str]]:
    """The transport's notices logged, the package checked against the release's pin, and the substituted /
    transformed config files computed on the worker (see ``substituted_files``)."""
    for notice in getattr(ctx.transport, "notices", []):
        ctx.log(f"WARNING: {notice}")
    actual = sha256_file(ref.path)
    if actual != ref.sha256:
        raise SnapshotIntegrityError(f"{ref.path.name} has sha256 {actual}, but release {ctx.release} pinned "
                                     f"{ref.sha256}: refusing to deploy it")
    return substituted_files(ctx, ref.path)


def upload_and_invoke(ctx: StepContext, ref: PackageRef, package_file: str, name: str, parameters: dict[str, Any],
                      what: str) -> dict[str, Any]:
    """Push the package (unless the target holds its sha256) and run the step's script in ONE PowerShell
    invocation (``WinRmTransport.upload_then_invoke``); logged and checked as ``send_package`` + ``invoke_script``."""
    # WinRM-only: the caller checked the transport has it
    combined = ctx.transport.upload_then_invoke  # type: ignore[attr-defined]  # WinRM
    sent, result, lines = combined(ref.path, package_file, ref.sha256, compose(name, SCRIPTS),
                                   parameters=parameters, timeout=ctx.step.timeout or 1800,
                                   on_line=lambda line: None if line.startswith("##ferry-") else ctx.log(line))
    ctx.log(f"sent {ref.filename} ({ref.path.stat().st_size} bytes) to {package_file}" if sent
            else f"{ref.filename} is already on the target (same sha256)")
    return _script_result(ctx, name, what, result, lines)


def invoke_script(ctx: StepContext, name: str, parameters: dict[str, Any], what: str) -> dict[str, Any]:
    """Run one of the step kinds' scripts (includes spliced in) with ``parameters`` as data; its output goes to the
    log, its ``ERROR:`` line becomes the step's failure, and its ``##ferry-result`` JSON is returned."""
    # WinRM-only: callers let only a transport with invoke (WinRM) through
    invoke = ctx.transport.invoke  # type: ignore[attr-defined]  # WinRM

    def on_line(line: str) -> None:
        if not line.startswith("##ferry-"):
            ctx.log(line)

    result, lines = invoke(compose(name, SCRIPTS), parameters=parameters, timeout=ctx.step.timeout or 1800,
                           on_line=on_line)
    return _script_result(ctx, name, what, result, lines)


def _script_result(ctx: StepContext, name: str, what: str, result: Any, lines: list[str]) -> dict[str, Any]:
    """The script's ``ERROR:`` line as the step's failure, else its ``##ferry-result`` JSON."""
    if not result.ok:
        errors = [line[len("ERROR: "):] for line in result.output_tail if line.startswith("ERROR: ")]
        message = errors[0] if errors else f"{name} failed"
        raise StepFailed(f"{what} failed: {message}", step=ctx.step.name, target=ctx.target_name,
                         exit_code=result.exit_code, output_tail=result.output_tail)
    reply = next((line for line in lines if line.startswith("##ferry-result ")), None)
    if reply is None:
        raise _fail(ctx, f"{name} ended without reporting what it did")
    done: dict[str, Any] = json.loads(reply.split(" ", 1)[1])
    return done
