"""The ``package`` step (Linux): install the release's package into a versioned folder and switch ``current``.

On the target, per environment and package::

    <root>/<environment>/<package>/
        .packages/<Id>.<version>.tar.gz    the uploaded package (kept while its release folder is kept)
        1.0.0/  1.1.0/  1.1.0_1/           release folders; a redeploy of a version gets a fresh `_N` folder
        current -> <root>/…/1.1.0_1        switched atomically (`ln -s` to a temp name, then `mv -T`)

In Octopus's order: upload the pinned package (skipped when the target already holds those sha256 bytes,
verified on arrival otherwise), extract it into a new folder, run ``PreDeploy.sh``, substitute variables in
the configured files, run ``Deploy.sh``, switch ``current``, run ``PostDeploy.sh``; on any failure run
``DeployFailed.sh`` and fail. Then keep the newest ``keep`` release folders (never the one in use).

The package bytes are never rebuilt: substitution reads the few matching files back from the target,
renders them on the worker (``snapshots.variables.configfiles``, the same engine everywhere) and writes back only
those that changed. Scripts get variables as data (``ferry_var NAME`` reads ``$FERRY_DATA``) and their
places in the environment: ``FERRY_RELEASE_DIR`` (their own folder, also their cwd), ``FERRY_APP_STATE``
(the package's folder, holding ``current``), ``FERRY_CURRENT`` and ``FERRY_PREVIOUS_RELEASE_DIR``.

Over SSH all of it is one session (``install_in_one_session``): one program on the target (``package_remote.py``)
runs the same fixed phase scripts in the same order and reports each phase back, so the step's log lines,
timings and failures are those of the phased form (``run_phased``), which stays for every other case.
"""

from __future__ import annotations

import base64
import posixpath
import re
import secrets
import tarfile
import time
import zipfile
from collections import deque
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from snapshots.errors import ConfigError, FerryError, StepFailed, TransportError
from steps.context import PackageRef, StepContext
from steps.kinds.certificate_files import deploy_certificate_files
from steps.kinds.config_prep import archive_names, prepare, transform_plan, wants_transforms
from steps.scratch import private_tempdir
from steps.transports.bash import BASH_PREAMBLE
from steps.transports.protocol import RunResult

SCRIPTS = ("PreDeploy.sh", "Deploy.sh", "PostDeploy.sh", "DeployFailed.sh")
_SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")

# Fixed script texts: every value reaches them through the environment, never spliced into the source.
_EXTRACT = r"""
set -euo pipefail
mkdir -p -- "$FERRY_APP_STATE/.packages"
base="$(cd -- "$FERRY_APP_STATE" && pwd)"
echo "@ferry base=$base"
touch -- "$FERRY_PACKAGE_FILE"
dir="$base/$FERRY_PACKAGE_VERSION"; n=0
while [ -e "$dir" ] || [ -L "$dir" ]; do n=$((n + 1)); dir="$base/${FERRY_PACKAGE_VERSION}_$n"; done
staging="$base/.staging-$(basename "$dir")-$$"
rm -rf -- "$staging"; mkdir -- "$staging"
case "$FERRY_PACKAGE_FILE" in
  *.tar.gz|*.tgz) tar -xzf "$FERRY_PACKAGE_FILE" -C "$staging" --no-same-owner ;;
  *.tar) tar -xf "$FERRY_PACKAGE_FILE" -C "$staging" --no-same-owner ;;
  *.zip|*.nupkg) python3 -m zipfile -e "$FERRY_PACKAGE_FILE" "$staging" ;;
  *) echo "cannot extract $FERRY_PACKAGE_FILE: not a .tar.gz, .tgz, .tar, .zip or .nupkg" >&2; exit 2 ;;
esac
mv -T -- "$staging" "$dir"
touch -- "$dir"
echo "@ferry release_dir=$dir"
if [ -L "$base/current" ]; then echo "@ferry previous=$(readlink -- "$base/current")"; fi
for f in PreDeploy.sh Deploy.sh PostDeploy.sh DeployFailed.sh; do
  if [ -f "$dir/$f" ]; then echo "@ferry script=$f"; fi
done
"""

_LIST = r"""
set -euo pipefail
cd -- "$FERRY_RELEASE_DIR"
find . -type f -printf '@ferry file=%P\n'
"""

_RUN_SCRIPT = r"""
cd -- "$FERRY_RELEASE_DIR" || exit 1
export -f ferry_var get_octopusvariable ferry_set set_octopusvariable
exec bash "./$FERRY_SCRIPT"
"""

_SWITCH = r"""
set -euo pipefail
cd -- "$FERRY_APP_STATE"
tmp=".current.ferry-$$"
rm -f -- "$tmp"
ln -s -- "$FERRY_RELEASE_DIR" "$tmp"
mv -T -- "$tmp" current
echo "@ferry current=$(readlink -- current)"
"""

_RETAIN = r"""
set -euo pipefail
cd -- "$FERRY_APP_STATE"
in_use="$(readlink -f current || true)"
installed="$(readlink -f -- "$FERRY_RELEASE_DIR" || true)"
here="$(pwd -P)"
kept=0
while IFS=' ' read -r _ name; do
  [ -n "$name" ] || continue
  path="$here/$name"
  if [ "$kept" -lt "$FERRY_KEEP" ] || [ "$path" = "$in_use" ] || [ "$path" = "$installed" ]; then
    kept=$((kept + 1)); echo "@ferry kept=$name"
  else
    rm -rf -- "$name"; echo "@ferry removed=$name"
  fi
done < <(find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%T@ %f\n' | sort -rn)
# package files: as many as release folders are kept, newest (last used) first
find .packages -mindepth 1 -maxdepth 1 -type f -printf '%T@ %f\n' 2>/dev/null | sort -rn | tail -n +"$((kept + 1))" |
  while IFS=' ' read -r _ name; do rm -f -- ".packages/$name"; echo "@ferry removed=.packages/$name"; done
find . -mindepth 1 -maxdepth 1 -name '.staging-*' -mmin +60 -exec rm -rf -- {} + 2>/dev/null || true
"""


class _Run:
    """One package step on one target: the paths it chose and how to run things there."""

    def __init__(self, ctx: StepContext, ref: PackageRef, base: str) -> None:
        self.ctx, self.ref, self.base = ctx, ref, base
        self.release_dir = ""
        self.previous = ""
        self.scripts: list[str] = []
        self.substitution_report: list[str] = []

    def values(self) -> dict[str, str]:
        """Every variable with its value evaluated (see ``StepContext.evaluated_variables``)."""
        return self.ctx.evaluated_variables()

    def env(self, **extra: str) -> dict[str, str]:
        ctx, ref = self.ctx, self.ref
        env = {"FERRY_APP_STATE": self.base, "FERRY_CURRENT": f"{self.base}/current",
               "FERRY_RELEASE_DIR": self.release_dir, "FERRY_PREVIOUS_RELEASE_DIR": self.previous,
               "FERRY_PACKAGE_ID": ref.id, "FERRY_PACKAGE_VERSION": ref.version,
               "FERRY_PACKAGE_FILE": f"{self.base}/.packages/{ref.filename}",
               "FERRY_ENVIRONMENT": ctx.environment, "FERRY_RELEASE": ctx.release}
        env.update(extra)
        return env

    def data(self) -> dict[str, Any]:
        ref = self.ref
        variables = dict(self.values())
        variables[f"Package[{ref.id}].InstalledPath"] = self.release_dir
        variables["Octopus.Action.Package.InstallationDirectoryPath"] = self.release_dir
        return {"variables": variables}

    def shell(self, script: str, *, data: bool = False, quiet: bool = False,
              on_mark: Callable[[str, str], object] | None = None) -> Any:
        """Run a fixed script; ``@ferry key=value`` lines go to ``on_mark``, others to the step's log."""
        def line(text: str) -> None:
            if text.startswith("@ferry ") and "=" in text:
                key, _, value = text[7:].partition("=")
                if on_mark:
                    on_mark(key, value)
            elif not quiet:
                self.ctx.log(text)

        return self.ctx.transport.run(script, env=self.env(), data=self.data() if data else None,
                                      timeout=self.ctx.step.timeout, on_line=line)

    def mark(self, key: str, value: str) -> bool:
        """An ``@ferry key=value`` line about the paths the target chose; False for a key not about them."""
        if key == "base":
            self.base = value
        elif key == "release_dir":
            self.release_dir = value
        elif key == "previous":
            self.previous = value
        elif key == "script":
            self.scripts.append(value)
        else:
            return False
        return True

    def fail(self, what: str, result: Any) -> StepFailed:
        return StepFailed(what, step=self.ctx.step.name, target=self.ctx.target_name, exit_code=result.exit_code,
                          output_tail=[t for t in result.output_tail if not t.startswith("@ferry ")])


def _part(value: str, what: str, ctx: StepContext) -> str:
    """A path component taken from a name: refuse anything that could step outside the folder."""
    if not _SAFE_PART.match(value):
        raise StepFailed(f"{what} {value!r} cannot name a folder (letters, digits, . _ + - only)",
                         step=ctx.step.name, target=ctx.target_name)
    return value


def run(ctx: StepContext) -> None:
    """Install in one session where the transport can (SSH: ``package_session``), else phase by phase."""
    if one_session_possible(ctx) and install_in_one_session(ctx):
        return
    run_phased(ctx)


def run_phased(ctx: StepContext) -> None:
    """The install as separate round trips: upload, extract, each script, switch, retention."""
    job = install_release(ctx)
    try:
        deploy_certificate_files(ctx)
        _script(job, "PreDeploy.sh")
        _substitute(job)
        _script(job, "Deploy.sh")
        switch_current(job)
        _script(job, "PostDeploy.sh")
    except (FerryError, OSError) as exc:
        _deploy_failed(job, exc)
        raise
    _retain(job)


def prepare_job(ctx: StepContext) -> _Run:
    """The package the step installs and its folder on the target, checked (nothing touched yet)."""
    step = ctx.step
    ref = ctx.packages.get(step.package)
    if ref is None:
        raise StepFailed(f"the release has no package {step.package!r} (it pins: "
                         f"{', '.join(sorted(ctx.packages)) or 'none'})", step=step.name, target=ctx.target_name)
    root = ctx.render(step.root, f"{ctx.where} root").strip().rstrip("/")
    if not root or "\n" in root or ".." in PurePosixPath(root).parts:
        raise StepFailed(f"root {root!r} is not a usable folder", step=step.name, target=ctx.target_name)
    base = posixpath.join(root, _part(ctx.environment, "environment", ctx), _part(ref.id, "package id", ctx))
    _part(ref.version, "package version", ctx)
    return _Run(ctx, ref, base)


def install_release(ctx: StepContext) -> _Run:
    """Upload the pinned package (unless the target holds its bytes) and extract it into a new release folder.
    Used by this step and by ``systemd-service``, which runs its service from the same layout."""
    job = prepare_job(ctx)
    ref, base = job.ref, job.base

    started = time.monotonic()
    remote_file = f"{base}/.packages/{ref.filename}"
    sent = ctx.transport.upload(ref.path, remote_file, ref.sha256)
    size = ref.path.stat().st_size if ref.path.exists() else 0
    took = time.monotonic() - started
    if sent:
        ctx.log(f"uploaded {ref.filename} ({size / 1e6:.1f} MB) in {took:.2f}s, sha256 verified on arrival")
    else:
        ctx.log(f"{ref.filename}: the target already holds these bytes (sha256 {ref.sha256[:12]}…); upload skipped")

    result = job.shell(_EXTRACT, on_mark=job.mark)
    if not result.ok or not job.release_dir:
        raise job.fail(f"cannot extract {ref.filename} into {base}", result)
    ctx.log(f"extracted into {job.release_dir}; Package[{ref.id}].InstalledPath = {job.release_dir}")
    return job


def switch_current(job: _Run, *, to: str | None = None) -> None:
    """Point ``current`` at the new release folder (or at ``to``, a revert) in one rename."""
    folder = to or job.release_dir
    switched = job.ctx.transport.run(_SWITCH, env=job.env(FERRY_RELEASE_DIR=folder), timeout=job.ctx.step.timeout)
    if not switched.ok:
        raise job.fail(f"cannot switch {job.base}/current to {folder}", switched)
    was = job.release_dir if to else job.previous
    job.ctx.log(f"current -> {folder}" + (f" (was {was})" if was else ""))


def substitute(job: _Run) -> None:
    """Substitute the step's config files in the new release folder (see ``_substitute``)."""
    _substitute(job)


def retain(job: _Run) -> None:
    """Keep the newest ``keep`` release folders (see ``_retain``)."""
    _retain(job)


def _script(job: _Run, name: str) -> None:
    if not job.ctx.step.run_scripts or name not in job.scripts:
        return
    job.ctx.log(f"running {name}")
    started = time.monotonic()
    env = job.env(FERRY_SCRIPT=name)
    result = job.ctx.transport.run(_RUN_SCRIPT, env=env, data=job.data(), timeout=job.ctx.step.timeout,
                                   on_line=job.ctx.log)
    if not result.ok:
        raise job.fail(f"{name} failed", result)
    job.ctx.log(f"{name} finished in {time.monotonic() - started:.2f}s")


def _deploy_failed(job: _Run, cause: BaseException) -> None:
    """Run ``DeployFailed.sh`` (its own failure is logged, the original one is what the step reports)."""
    if not job.ctx.step.run_scripts or "DeployFailed.sh" not in job.scripts:
        return
    job.ctx.log(f"running DeployFailed.sh after: {cause}")
    try:
        result = job.ctx.transport.run(_RUN_SCRIPT, env=job.env(FERRY_SCRIPT="DeployFailed.sh",
                                                                FERRY_FAILURE=str(cause)[:2000]),
                                       data=job.data(), timeout=job.ctx.step.timeout, on_line=job.ctx.log)
        if not result.ok:
            job.ctx.log(f"DeployFailed.sh failed too (exit code {result.exit_code})")
    except FerryError as exc:
        job.ctx.log(f"DeployFailed.sh could not run: {exc}")


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A package-relative glob (``*``, ``?``, ``[...]``, ``**`` for any folders) as a regex over '/' paths,
    matching what ``Path.glob`` finds in an extracted folder."""
    if not pattern or pattern.startswith("/") or ".." in PurePosixPath(pattern).parts:
        raise ConfigError(f"file pattern {pattern!r} must be relative to the package and stay inside it")
    out = []
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if part == "**":
            out.append("(?:[^/]+/)*")  # a trailing ** names folders only (as Path.glob has it): no file matches
            continue
        segment = ""
        j = 0
        while j < len(part):
            c = part[j]
            if c == "*":
                segment += "[^/]*"
            elif c == "?":
                segment += "[^/]"
            elif c == "[":
                end = part.find("]", j + 2 if part[j + 1:j + 2] in ("!", "]") else j + 1)
                if end < 0:
                    segment += re.escape(c)
                else:
                    body = part[j + 1:end].replace("\\", "\\\\")
                    segment += "[^" + body[1:] + "]" if body.startswith("!") else "[" + body + "]"
                    j = end
            else:
                segment += re.escape(c)
            j += 1
        out.append(segment + ("" if last else "/"))
    return re.compile("".join(out) + r"\Z")


def _substitute(job: _Run) -> None:
    """Render the configured files and run the XDT transforms on the worker; write back only what changed."""
    ctx = job.ctx
    files_globs, structured = list(ctx.step.substitute.files), list(ctx.step.substitute.structured)
    if not (files_globs or structured or wants_transforms(ctx)):
        return
    if not (files_globs or structured) and not transform_plan(ctx, archive_names(job.ref.path)):
        return  # nothing to transform: decided from the worker's copy of the package, no round trip
    listed: list[str] = []
    result = job.shell(_LIST, quiet=True, on_mark=lambda k, v: listed.append(v) if k == "file" else None)
    if not result.ok:
        raise job.fail(f"cannot list {job.release_dir}", result)
    pairs = transform_plan(ctx, listed)
    if not files_globs and not structured and not pairs:
        return
    patterns = [glob_regex(p) for p in [*files_globs, *structured]]
    in_pairs = {name for pair in pairs for name in (pair.transform, pair.target)}
    wanted = sorted(f for f in listed if f in in_pairs or any(p.match(f) for p in patterns))
    with private_tempdir("substitute") as tmp:  # rendered config (secrets): swept should this process be killed
        mirror = Path(tmp)
        originals: dict[str, bytes] = {}
        for rel in wanted:
            data = ctx.transport.read_file(f"{job.release_dir}/{rel}")
            if data is None:
                continue
            originals[rel] = data
            local = mirror / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
        report = prepare(ctx, mirror, pairs, variables=job.values())
        for line in report:
            ctx.log(f"substitution: {line}")
        for rel, before in originals.items():
            after = (mirror / rel).read_bytes()
            if after != before:  # rewritten with values, maybe secrets: config_file_mode, not the package's 0644
                ctx.transport.write_file(f"{job.release_dir}/{rel}", after, mode=ctx.step.config_mode)


def _retain(job: _Run) -> None:
    """Keep the newest ``keep`` release folders (and their package files); a failure here only warns."""
    kept: list[str] = []
    removed: list[str] = []

    def mark(key: str, value: str) -> None:
        (kept if key == "kept" else removed).append(value)

    try:
        result = job.ctx.transport.run(_RETAIN, env=job.env(FERRY_KEEP=str(job.ctx.step.keep)), on_line=lambda t: (
            mark(*t[7:].split("=", 1)) if t.startswith("@ferry ") and "=" in t else job.ctx.log(t)),
            timeout=job.ctx.step.timeout)
    except FerryError as exc:
        job.ctx.log(f"warning: retention did not run: {exc}")
        return
    if not result.ok:
        job.ctx.log(f"warning: retention failed (exit code {result.exit_code}); old releases stay")
        return
    job.ctx.log(f"retention (keep {job.ctx.step.keep}): kept {', '.join(kept) or 'none'}"
                + (f"; removed {', '.join(removed)}" if removed else ""))


# -- one session per install (issue 17 item 4) -------------------------------------------------------------------

_SESSION_PROGRAM = Path(__file__).with_name("package_remote.py")
_MESSAGE = re.compile(r"^##ferry\[(phase|send) (.*) token='([0-9a-f]+)'\]$")
_FIELD = re.compile(r"(\w+)='([^']*)'")
_SCRIPT_PHASES = ("PreDeploy.sh", "Deploy.sh", "PostDeploy.sh")
_MISSING_PYTHON = 127


def one_session_possible(ctx: StepContext) -> bool:
    """Whether the whole install can run as one program on the target: a transport that runs one (SSH), no
    certificate files to write first, and no PreDeploy.sh that could change files substitution renders (the
    rendering is done on the worker from the package's own bytes, before the session starts)."""
    if getattr(ctx.transport, "run_program", None) is None or getattr(ctx.step, "certificates", None):
        return False
    ref = ctx.packages.get(ctx.step.package)
    if ref is None or not ref.path.is_file():
        return False
    step = ctx.step
    if step.run_scripts and (step.substitute.files or step.substitute.structured or wants_transforms(ctx)):
        return "PreDeploy.sh" not in archive_names(ref.path)
    return True


def _rendered_files(job: _Run) -> list[dict[str, Any]]:
    """The substituted / transformed config files as the target must get them (only those whose bytes change),
    rendered on the worker from the pinned package: ``{"path", "content" (base64), "mode"}``."""
    ctx, ref = job.ctx, job.ref
    files_globs, structured = list(ctx.step.substitute.files), list(ctx.step.substitute.structured)
    if not (files_globs or structured or wants_transforms(ctx)):
        return []
    names = archive_names(ref.path)
    pairs = transform_plan(ctx, names) if wants_transforms(ctx) else []
    if not (files_globs or structured or pairs):
        return []
    patterns = [glob_regex(p) for p in [*files_globs, *structured]]
    in_pairs = {name for pair in pairs for name in (pair.transform, pair.target)}
    wanted = {f for f in names if f in in_pairs or any(p.match(f) for p in patterns)}
    if not wanted:
        return []
    changed: list[dict[str, Any]] = []
    with private_tempdir("substitute") as tmp:  # rendered config (secrets): swept should this process be killed
        mirror = Path(tmp)
        originals = _read_members(ref.path, wanted)
        for rel, data in originals.items():
            local = mirror / rel
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(data)
        job.substitution_report = prepare(ctx, mirror, pairs, variables=job.values())
        for rel, before in sorted(originals.items()):
            after = (mirror / rel).read_bytes()
            if after != before:
                changed.append({"path": rel, "content": base64.b64encode(after).decode("ascii"),
                                "mode": ctx.step.config_mode})
    return changed


def _read_members(archive: Path, wanted: set[str]) -> dict[str, bytes]:
    """The bytes of the named files ('/' paths, as ``archive_names`` gives them) straight from the archive."""
    found: dict[str, bytes] = {}
    if archive.name.lower().endswith((".zip", ".nupkg")):
        with zipfile.ZipFile(archive) as package:
            for name in package.namelist():
                if name in wanted:
                    found[name] = package.read(name)
        return found
    with tarfile.open(archive) as package:
        for member in package.getmembers():
            name = member.name.removeprefix("./")
            if member.isfile() and name in wanted:
                handle = package.extractfile(member)
                if handle is not None:
                    found[name] = handle.read()
    return found


class _Session:
    """The worker's side of the one-session install: phase messages in, the step's log lines and state out."""

    def __init__(self, job: _Run, token: str) -> None:
        self.job, self.token = job, token
        self.phase = ""
        self.ended: dict[str, dict[str, str]] = {}
        self.tails: dict[str, deque[str]] = {}
        self.kept: list[str] = []
        self.removed: list[str] = []
        self.current = ""

    def __call__(self, line: str) -> None:
        match = _MESSAGE.match(line)
        if match is not None and secrets.compare_digest(match.group(3), self.token):
            if match.group(1) == "phase":
                self.message(dict(_FIELD.findall(match.group(2))))
            return
        self.tails.setdefault(self.phase, deque(maxlen=40)).append(line)
        if self.phase in ("extract", "switch", "retention") and line.startswith("@ferry ") and "=" in line:
            self.mark(*line[7:].split("=", 1))
        else:
            self.job.ctx.log(line)

    def mark(self, key: str, value: str) -> None:
        if self.job.mark(key, value):
            return
        if key == "current":
            self.current = value
        elif key == "kept":
            self.kept.append(value)
        elif key == "removed":
            self.removed.append(value)

    def message(self, fields: dict[str, str]) -> None:
        job, name, event = self.job, fields.get("name", ""), fields.get("event", "")
        ctx, ref = job.ctx, job.ref
        if event == "start":
            self.phase = name
            if name in _SCRIPT_PHASES:
                ctx.log(f"running {name}")
            elif name == "substitute":
                for line in job.substitution_report:
                    ctx.log(f"substitution: {line}")
            return
        self.ended[name] = {**fields}
        ok = event == "end" and fields.get("exit") == "0"
        seconds = float(fields.get("seconds") or 0)
        if not ok:
            if name == "retention":  # as in the phased install, a failure here only warns
                ctx.log(f"warning: retention failed (exit code {fields.get('exit')}); old releases stay")
            return
        if name == "upload":
            if fields.get("sent") == "1":
                size = ref.path.stat().st_size
                ctx.log(f"uploaded {ref.filename} ({size / 1e6:.1f} MB) in {seconds:.2f}s, sha256 verified on arrival")
            else:
                ctx.log(f"{ref.filename}: the target already holds these bytes (sha256 {ref.sha256[:12]}…); "
                        "upload skipped")
        elif name == "extract" and job.release_dir:
            ctx.log(f"extracted into {job.release_dir}; Package[{ref.id}].InstalledPath = {job.release_dir}")
        elif name in _SCRIPT_PHASES:
            ctx.log(f"{name} finished in {seconds:.2f}s")
        elif name == "switch":
            ctx.log(f"current -> {job.release_dir}" + (f" (was {job.previous})" if job.previous else ""))
        elif name == "retention":
            ctx.log(f"retention (keep {ctx.step.keep}): kept {', '.join(self.kept) or 'none'}"
                    + (f"; removed {', '.join(self.removed)}" if self.removed else ""))

    def failure(self, result: RunResult) -> tuple[str, FerryError] | None:
        """The phase that failed and the error the phased install would have raised there, or None."""
        job = self.job
        for name, fields in self.ended.items():
            if fields.get("event") == "end" and fields.get("exit") == "0":
                continue
            if name == "retention":
                continue
            tail = RunResult(int(fields.get("exit") or 1), list(self.tails.get(name, ())))
            if fields.get("event") == "timeout":
                return name, TransportError(
                    f"script timed out after {job.ctx.step.timeout:g}s; killed the remote process group "
                    f"{fields.get('pid', '?')}", target=job.ctx.transport.target, operation="run")
            if name == "upload":
                return name, TransportError(f"{job.base}/.packages/{job.ref.filename}: "
                                            f"{' '.join(tail.output_tail) or 'verification failed'}",
                                            target=job.ctx.transport.target, operation="upload")
            if name == "extract":
                return name, job.fail(f"cannot extract {job.ref.filename} into {job.base}", tail)
            if name == "substitute":
                return name, job.fail(f"cannot write the substituted files into {job.release_dir}", tail)
            if name == "switch":
                return name, job.fail(f"cannot switch {job.base}/current to {job.release_dir}", tail)
            return name, job.fail(f"{name} failed", tail)
        if result.ok:
            return None
        return "", job.fail("the install program failed on the target", result)


def install_in_one_session(ctx: StepContext) -> bool:
    """The whole install as one program in one SSH session (``package_remote.py``): False when the target
    has no python3 (nothing was done; the phased install runs instead)."""
    job = prepare_job(ctx)
    ref, step = job.ref, ctx.step
    files = _rendered_files(job)
    token = secrets.token_hex(16)
    size = ref.path.stat().st_size
    header = {
        "token": token, "env": job.env(), "data": {"variables": dict(job.values())},
        "installed_path_names": [f"Package[{ref.id}].InstalledPath",
                                 "Octopus.Action.Package.InstallationDirectoryPath"],
        "package": {"file": f"{job.base}/.packages/{ref.filename}", "filename": ref.filename,
                    "sha256": ref.sha256, "size": size},
        "preamble": BASH_PREAMBLE, "extract": _EXTRACT, "run_script": _RUN_SCRIPT, "switch": _SWITCH,
        "retain": _RETAIN, "keep": step.keep, "run_scripts": step.run_scripts, "timeout": step.timeout,
        "files": files,
    }
    session = _Session(job, token)
    # each phase has the step's timeout on the target; this bounds the whole session should the target hang
    overall = step.timeout * 8 + 60 if step.timeout else None
    result: RunResult = ctx.transport.run_program(  # type: ignore[attr-defined]  # SSH only (checked above)
        _SESSION_PROGRAM.read_text(), header, attachment=ref.path, send_on=f"##ferry[send size='{size}' "
        f"token='{token}']", timeout=overall, on_line=session)
    if result.exit_code == _MISSING_PYTHON and not session.ended:
        ctx.log("the target has no python3: installing phase by phase")
        return False
    failed = session.failure(result)
    if failed is not None:
        phase, error = failed
        if phase not in ("upload", "extract", ""):
            _deploy_failed(job, error)
        raise error
    return True
