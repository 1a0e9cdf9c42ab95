"""``ferry apply``: validate YAML files together and store new project / infrastructure revisions.

All files are validated (each alone, then their cross-references) before anything is written, and the
writes happen in one transaction: a bad file stores nothing. A revision is added only when its content
changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, func, insert, select

from snapshots import certificates, feed_credentials, library, library_checks
from snapshots.canonical import canonical_json
from snapshots.errors import ConfigError, NotFoundError
from snapshots.model import Infrastructure, Project
from snapshots.model.documents import (
    LoadedInfrastructure,
    LoadedProject,
    content_digest,
    infrastructure_document,
    load_file,
    problem_error,
    project_document,
)
from snapshots.model.references import Problem, TemplateValue, project_problems, template_problems
from snapshots.store import audit, now
from snapshots.store.crypto import Vault
from snapshots.store.tables import infrastructure_revisions, project_revisions
from snapshots.variables.scopes import ambiguities, system_name_clashes


@dataclass(frozen=True)
class Applied:
    kind: str  # "project" | "infrastructure"
    name: str
    revision: int
    changed: bool
    source: str
    warnings: tuple[str, ...] = ()
    """What is valid but probably a mistake (a role no target has): the CLI prints it on stderr."""


@dataclass(frozen=True)
class ProjectRevision:
    id: int
    project: str
    revision: int
    document: dict[str, Any]
    created_at: str

    def model(self) -> Project:
        """The project model (sensitive values are not in it: only names, scopes and flags)."""
        data = dict(self.document)
        data["variables"] = [{**{k: v for k, v in var.items() if k not in ("ciphertext", "fingerprint")},
                              "value": var.get("value") if var.get("value") is not None else "********"}
                             for var in self.document["variables"]]
        return Project.model_validate(data)


def latest_infrastructure(conn: Connection) -> tuple[int, Infrastructure] | None:
    row = conn.execute(select(infrastructure_revisions).order_by(infrastructure_revisions.c.revision.desc())
                       .limit(1)).first()
    if row is None:
        return None
    return row.revision, Infrastructure.model_validate(json.loads(row.document))


def require_infrastructure(conn: Connection) -> Infrastructure:
    found = latest_infrastructure(conn)
    if found is None:
        raise NotFoundError("no infrastructure has been applied yet (ferry apply infrastructure.yaml)")
    return found[1]


def latest_project(conn: Connection, name: str) -> ProjectRevision | None:
    row = conn.execute(select(project_revisions).where(project_revisions.c.project == name)
                       .order_by(project_revisions.c.revision.desc()).limit(1)).first()
    return _revision(row) if row else None


def require_project(conn: Connection, name: str) -> ProjectRevision:
    found = latest_project(conn, name)
    if found is None:
        known = project_names(conn)
        raise NotFoundError(f"unknown project {name!r} (known: {', '.join(known) or 'none'})")
    return found


def project_revision(conn: Connection, revision_id: int) -> ProjectRevision:
    row = conn.execute(select(project_revisions).where(project_revisions.c.id == revision_id)).one()
    return _revision(row)


def project_names(conn: Connection) -> list[str]:
    return [r[0] for r in conn.execute(select(project_revisions.c.project).distinct()
                                       .order_by(project_revisions.c.project))]


def _revision(row: Row[Any]) -> ProjectRevision:
    return ProjectRevision(row.id, row.project, row.revision, json.loads(row.document), row.created_at)


def apply(conn: Connection, files: list[Path], vault: Vault, actor: str) -> list[Applied]:
    """Validate every file, then store what changed, in the caller's transaction."""
    if not files:
        raise ConfigError("no files given")
    libraries, files = library.split_files(files)
    loaded = [load_file(path) for path in files]
    infra_files = [item for item in loaded if isinstance(item, LoadedInfrastructure)]
    if len(infra_files) > 1:
        raise ConfigError(f"{infra_files[1].doc.file}: only one infrastructure file per apply "
                          f"(also {infra_files[0].doc.file})")
    projects = [item for item in loaded if isinstance(item, LoadedProject)]
    seen: dict[str, str] = {}
    for item in projects:
        if item.model.name in seen:
            raise ConfigError(f"project {item.model.name!r} is also defined in {seen[item.model.name]}",
                              file=item.doc.file)
        seen[item.model.name] = item.doc.file
    current = latest_infrastructure(conn)
    infra = infra_files[0].model if infra_files else (current[1] if current else None)
    if infra is None and projects:
        raise ConfigError(f"{projects[0].doc.file}: apply the infrastructure (environments, lifecycles) first, "
                          "or in the same command")
    for item in projects:
        for problem in project_problems(item.model, infra):
            raise problem_error(item.doc, problem)
        for problem in variable_problems(item.model.variables, infra, item.model.step_names()):
            raise problem_error(item.doc, problem)
        for problem in template_problems(item.model.model_dump(mode="json")["process"], _template_values(item)):
            raise problem_error(item.doc, problem)
        for problem in library_checks.problems(item, infra, library.Library.with_pending(conn, vault, libraries)):
            raise problem_error(item.doc, problem)
    if infra_files:
        _check_stored_projects(conn, infra_files[0], {p.model.name for p in projects})
    results = [Applied(lib.kind, lib.name, *library.store(conn, lib, vault, actor), lib.doc.file)
               for lib in libraries]
    if infra_files:
        stored = [require_project(conn, name).model() for name in project_names(conn) if name not in seen]
        infra_files[0].model = feed_credentials.seal(infra_files[0].model, infra_files[0].doc, vault)
        applied = _store_infrastructure(conn, infra_files[0], current, actor)
        for cert in infra_files[0].certificates:  # new content under a name: a new row (the key encrypted)
            if certificates.store(conn, vault, cert, actor):
                audit.record(conn, actor, "certificate.store", cert.info.name, thumbprint=cert.info.thumbprint)
        results.append(Applied(**{**applied.__dict__, "warnings": tuple(
            warning for project in stored for warning in unused_roles(project, infra_files[0].model))}))
    for item in projects:
        applied = _store_project(conn, item, vault, actor)
        results.append(Applied(**{**applied.__dict__, "warnings": tuple(unused_roles(item.model, infra))}))
    return results


def unused_roles(project: Project, infra: Infrastructure | None) -> list[str]:
    """One warning per step whose roles no target of any environment has (a typo such as ``webb``): its
    deployments would fail with "no target has role(s) …" unless the step or project allows no targets."""
    if infra is None or project.allow_no_targets:
        return []
    known = {role for target in infra.targets for role in target.roles}
    warnings = []
    for item in project.process:
        if not item.roles or item.allow_no_targets or set(item.roles) & known:
            continue
        if getattr(item, "run_on", "target") == "worker" or getattr(item, "kind", None) == "manual":
            continue
        warnings.append(f"project {project.name}: step {item.name!r}: no target in any environment has role(s) "
                        f"{', '.join(item.roles)} (known roles: {', '.join(sorted(known)) or 'none'}); its "
                        "deployments will fail unless it sets allow_no_targets: true")
    return warnings


def _template_values(item: LoadedProject) -> list[TemplateValue]:
    """Each variable's value as text (a from_env / from_file source as read) for the template checks."""
    return [TemplateValue(("variables", i, "value"), var.name,
                          item.values.get(i, var.value if isinstance(var.value, str) else None), var.sensitive)
            for i, var in enumerate(item.model.variables)]


def _check_stored_projects(conn: Connection, new_infra: LoadedInfrastructure, replaced: set[str]) -> None:
    """A new infrastructure must not strand a stored project (e.g. by removing its lifecycle)."""
    for name in project_names(conn):
        if name in replaced:
            continue
        stored = require_project(conn, name).model()
        for problem in [*project_problems(stored, new_infra.model),
                        *variable_problems(stored.variables, new_infra.model, stored.step_names())]:
            raise ConfigError(f"project {name!r} (stored) would break: {problem.message}", file=new_infra.doc.file)


def variable_problems(variables: list[Any], infra: Infrastructure | None, steps: list[str]) -> list[Problem]:
    """Ambiguous scopes (two equally specific values for one context) and names ferry reserves.

    Each problem points at the later of the two variables, whose YAML line the error then names."""
    problems = [Problem(("variables", i, "name"), message) for i, message in system_name_clashes(variables)]
    problems += [Problem(("variables", b, "name"), message) for _, b, message in ambiguities(variables, infra, steps)]
    return sorted(problems, key=lambda p: p.path[1])


def _store_infrastructure(conn: Connection, item: LoadedInfrastructure,
                          current: tuple[int, Infrastructure] | None, actor: str) -> Applied:
    document = infrastructure_document(item)
    digest = content_digest(document)
    last = conn.execute(select(infrastructure_revisions.c.revision, infrastructure_revisions.c.content_digest)
                        .order_by(infrastructure_revisions.c.revision.desc()).limit(1)).first()
    if last is not None and last.content_digest == digest:
        return Applied("infrastructure", "infrastructure", last.revision, False, item.doc.file)
    revision = (last.revision if last else 0) + 1
    conn.execute(insert(infrastructure_revisions).values(
        revision=revision, content_digest=digest, document=canonical_json(document), source=item.doc.file,
        created_at=now(), created_by=actor))
    audit.record(conn, actor, "infrastructure.apply", "infrastructure", revision=revision, digest=digest)
    return Applied("infrastructure", "infrastructure", revision, True, item.doc.file)


def _store_project(conn: Connection, item: LoadedProject, vault: Vault, actor: str) -> Applied:
    name = item.model.name
    document = project_document(item, vault)
    digest = content_digest(document)
    last = conn.execute(select(project_revisions.c.revision, project_revisions.c.content_digest)
                        .where(project_revisions.c.project == name)
                        .order_by(project_revisions.c.revision.desc()).limit(1)).first()
    if last is not None and last.content_digest == digest:
        return Applied("project", name, last.revision, False, item.doc.file)
    revision = (conn.execute(select(func.max(project_revisions.c.revision))
                             .where(project_revisions.c.project == name)).scalar() or 0) + 1
    conn.execute(insert(project_revisions).values(
        project=name, revision=revision, content_digest=digest, document=canonical_json(document),
        source=item.doc.file, created_at=now(), created_by=actor))
    audit.record(conn, actor, "project.apply", f"project/{name}", revision=revision, digest=digest)
    return Applied("project", name, revision, True, item.doc.file)
