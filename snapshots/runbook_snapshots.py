"""Runbook snapshots: ``ferry runbook publish`` freezes one runbook of the project's current revision — its
process, the project's variables, the packages its steps use (pinned by sha256) — into an immutable snapshot,
numbered 1, 2, … per runbook. A run uses a published snapshot, never the live recipe (Octopus's semantics).

A snapshot is stored as a release row and its variable snapshot under the reserved project name
``<project> :: runbook <name>`` (a name the release commands never look up), with the version
``<name> snapshot <N>``: so it is canonical JSON, digested, signed and chained by the executor's key, refused
UPDATE/DELETE by the database, checked before every run and re-signed by ``ferry key rotate`` — exactly as a
release is, with no second implementation of any of that.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert

from snapshots import releases
from snapshots.canonical import canonical_json, digest_text
from snapshots.errors import ConfigError, NotFoundError
from snapshots.model.references import TemplateValue, template_problems
from snapshots.model.runbooks import Runbook
from snapshots.octostache import referenced_names
from snapshots.projects import ProjectRevision, latest_infrastructure, require_project, variable_problems
from snapshots.releases import Release
from snapshots.store import audit, inserted_id, now, signing
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed
from snapshots.store.tables import releases as releases_table
from snapshots.variables.scopes import is_system_name, step_names, variable_key

SEPARATOR = " :: runbook "
"""Between the project and the runbook in the reserved release project name of a runbook's snapshots."""


def snapshot_project(project: str, runbook: str) -> str:
    return f"{project}{SEPARATOR}{runbook}"


def snapshot_version(runbook: str, number: int) -> str:
    return f"{runbook} snapshot {number}"


def find_runbook(revision: ProjectRevision, name: str) -> Runbook:
    """The runbook ``name`` of a project revision (names compare without case, as step names do)."""
    runbooks = revision.model().runbooks
    found = next((r for r in runbooks if r.name.casefold() == name.strip().casefold()), None)
    if found is None:
        known = ", ".join(r.name for r in runbooks) or "none"
        raise NotFoundError(f"project {revision.project} has no runbook {name!r} (its runbooks: {known})")
    return found


def snapshots_of(conn: Connection, project: str, runbook: str) -> list[Release]:
    """Published snapshots of a runbook, oldest first."""
    owner = snapshot_project(project, runbook)
    found = [releases.find(conn, owner, v) for v in releases.versions(conn, owner)]
    return sorted((r for r in found if r is not None), key=lambda r: int(r.snapshot["snapshot"]))


def require_snapshot(conn: Connection, project: str, runbook: str, number: int | None = None) -> Release:
    """A published snapshot (the newest without ``number``); a one-line error when there is none."""
    name = find_runbook(require_project(conn, project), runbook).name
    published = snapshots_of(conn, project, name)
    if not published:
        raise NotFoundError(f"runbook {name!r} of {project} has no published snapshot "
                            f"(ferry runbook publish {project} {name!r})")
    if number is None:
        return published[-1]
    chosen = next((r for r in published if r.snapshot["snapshot"] == number), None)
    if chosen is None:
        raise NotFoundError(f"runbook {name!r} of {project} has no snapshot {number} "
                            f"(published: {', '.join(str(r.snapshot['snapshot']) for r in published)})")
    return chosen


def publish(conn: Connection, feed: Feed, project: str, runbook: str, actor: str, *, vault: Vault,
            notes: str = "") -> Release:
    """Freeze the runbook as its next snapshot, signed, in the caller's transaction."""
    revision = require_project(conn, project)
    book = find_runbook(revision, runbook)
    owner = snapshot_project(project, book.name)
    if len(owner) > 200:
        raise ConfigError(f"runbook {book.name!r}: project and runbook names together are too long to publish "
                          "(at most 186 characters)")
    process = [item.model_dump(mode="json") for item in book.process]
    variables = revision.document["variables"]
    _check(conn, revision, book, process, variables, vault)
    wanted = sorted({p for item in book.process for p in _packages(item)})
    pinned = [feed.resolve(conn, package_id, None) for package_id in wanted]
    for package in pinned:
        feed.verify(package)
    number = len(releases.versions(conn, owner)) + 1
    version = snapshot_version(book.name, number)
    created_at = now()
    snapshot: dict[str, Any] = {
        "format": releases.SNAPSHOT_FORMAT, "kind": "runbook", "project": project, "runbook": book.name,
        "snapshot": number, "description": book.description, "environments": list(book.environments),
        "roles": list(book.roles), "notes": notes, "created_at": created_at, "created_by": actor,
        "project_revision": revision.revision, "strict_variables": revision.document["strict_variables"],
        "process": process,
        "packages": [{"id": p.package_id, "version": p.version, "sha256": p.sha256, "size": p.size,
                      "filename": p.filename} for p in pinned],
    }
    if revision.document.get("allow_no_targets"):
        snapshot["allow_no_targets"] = True
    text = canonical_json(snapshot)
    release_id = inserted_id(conn.execute(insert(releases_table).values(
        project=owner, version=version, project_revision_id=revision.id, snapshot=text, digest=digest_text(text),
        created_at=created_at, created_by=actor)))
    signature = signing.sign_release(conn, vault, signing.ReleaseRow(release_id, owner, version, revision.id, text,
                                                                     digest_text(text)))
    releases.append_first_revision(conn, vault, release_id, owner, version, revision.id, revision.revision,
                                   variables, actor, signature)
    audit.record(conn, actor, "runbook.publish", f"project/{project}/runbook/{book.name}", snapshot=number,
                 digest=digest_text(text), project_revision=revision.revision)
    published = releases.find(conn, owner, version)
    assert published is not None
    return published


def _packages(item: Any) -> list[str]:
    children = getattr(item, "steps", None)
    if children is not None:
        return [p for child in children for p in _packages(child)]
    package = getattr(item, "package", None)
    return [package] if package else []


def _check(conn: Connection, revision: ProjectRevision, book: Runbook, process: list[dict[str, Any]],
           variables: list[dict[str, Any]], vault: Vault) -> None:
    """What a release checks before it freezes (ambiguous variables, templates that do not parse), plus — for a
    project with strict variables — every ``#{Name}`` in the runbook's step fields names a variable the run will
    have, so a typo is refused here rather than failing on a target in the middle of a maintenance."""
    where = f"runbook {book.name!r} of {revision.project}"
    infra = latest_infrastructure(conn)
    names = step_names(revision.document["process"]) + step_names(process)
    problems = variable_problems(variables, infra[1] if infra else None, names)
    values = []
    for index, var in enumerate(variables):
        text = var.get("value")
        if text is None and var.get("ciphertext"):
            text = vault.decrypt(var["ciphertext"])
        values.append(TemplateValue(("variables", index, "value"), var["name"], text, bool(var.get("sensitive"))))
    problems += template_problems(process, values)
    if problems:
        raise ConfigError(f"{where}: {problems[0].message}")
    if not revision.document["strict_variables"]:
        return
    known = {variable_key(var["name"]) for var in variables}
    for item in process:
        for step in [item, *(item.get("steps") or [])]:
            for text in _templated(step):
                for name in sorted(referenced_names(text)):
                    key = variable_key(name)
                    if key in known or is_system_name(name) or key.startswith("octopus.action["):
                        continue
                    raise ConfigError(f"{where}: step {step['name']!r} uses #{{{name}}}, which is not a variable of "
                                      f"the project (nor one ferry sets)")


def _templated(step: dict[str, Any]) -> list[str]:
    """The step's own text fields that are rendered (not its name, kind, children or script body)."""
    out: list[str] = []

    def walk(value: Any, top: bool) -> None:
        if isinstance(value, str):
            if "#{" in value:
                out.append(value)
        elif isinstance(value, dict):
            for key, item in value.items():
                if not (top and key in ("name", "kind", "steps", "script", "syntax", "condition")):
                    walk(item, False)
        elif isinstance(value, list):
            for item in value:
                walk(item, False)

    walk(step, True)
    return out
