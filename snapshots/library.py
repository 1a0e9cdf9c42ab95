"""Library variable sets and step templates: stored as revisions by ``ferry apply``, expanded into a project's
variables and process when a release is created (and checked the same way at apply time).

What a release freezes is the *expanded* form: plain steps (a template use becomes the template body under the
project step's name, with the project's overrides) and one variable list (the project's own, then each included
set's, then each template parameter as a variable scoped to its step). Each variable and step that did not come
from the project itself records where it came from (``library: Database r3``, ``template: Migrate DB r2``), so
``release show`` and ``release diff`` can say so. Sensitive library values are encrypted exactly like a
project's (a ``ciphertext`` + ``fingerprint``, never the value).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Connection, func, insert, select

from snapshots.canonical import canonical_json
from snapshots.errors import ConfigError
from snapshots.model.common import FromEnv, FromFile
from snapshots.model.documents import content_digest, sealed_variables
from snapshots.model.library import LibraryVariableSet, StepTemplate
from snapshots.model.project import Scope, Variable
from snapshots.model.references import Problem
from snapshots.model.steps import Step
from snapshots.model.template_steps import OVERRIDES
from snapshots.model.yamlfile import YamlDocument, read_yaml, validation_error
from snapshots.store import audit, now
from snapshots.store.crypto import Vault
from snapshots.store.tables import library_revisions

VARIABLE_SET = "variable_set"
STEP_TEMPLATE = "step_template"
_KEYS = {"library_variable_set": VARIABLE_SET, "step_template": STEP_TEMPLATE}
_WHAT = {VARIABLE_SET: "library variable set", STEP_TEMPLATE: "step template"}
_STEP = TypeAdapter(Step)


@dataclass
class LoadedLibrary:
    """One validated library document read by ``ferry apply``."""

    doc: YamlDocument
    model: LibraryVariableSet | StepTemplate
    values: dict[int, str] = field(default_factory=dict)
    """Resolved value of each variable (by index) whose YAML value was a from_env/from_file source."""

    @property
    def kind(self) -> str:
        return VARIABLE_SET if isinstance(self.model, LibraryVariableSet) else STEP_TEMPLATE

    @property
    def name(self) -> str:
        model = self.model
        return model.library_variable_set if isinstance(model, LibraryVariableSet) else model.step_template


@dataclass(frozen=True)
class LibraryRevision:
    kind: str
    name: str
    revision: int
    document: dict[str, Any]

    @property
    def label(self) -> str:
        """How provenance names it: ``library: Database r3`` / ``template: Migrate DB r2``."""
        return f"{'library' if self.kind == VARIABLE_SET else 'template'}: {self.name} r{self.revision}"


def split_files(paths: list[Path]) -> tuple[list[LoadedLibrary], list[Path]]:
    """The library documents among ``paths`` (validated), and the other paths (projects, infrastructure)."""
    found: list[LoadedLibrary] = []
    rest: list[Path] = []
    for path in paths:
        doc = read_yaml(path)
        kinds = [key for key in _KEYS if key in doc.data]
        if not kinds:
            rest.append(path)
            continue
        if len(kinds) > 1 or "project" in doc.data:
            raise ConfigError("a file is one document: a project, a library_variable_set or a step_template",
                              file=doc.file, line=1)
        try:
            model: LibraryVariableSet | StepTemplate = (
                LibraryVariableSet.model_validate(doc.data) if kinds[0] == "library_variable_set"
                else StepTemplate.model_validate(doc.data))
        except ValidationError as exc:
            raise validation_error(doc, exc) from None
        loaded = LoadedLibrary(doc, model)
        if isinstance(model, LibraryVariableSet):
            loaded.values = _resolve_sources(doc, model, path.parent)
        found.append(loaded)
    seen: dict[tuple[str, str], str] = {}
    for item in found:
        key = (item.kind, item.name.casefold())
        if key in seen:
            raise ConfigError(f"{_WHAT[item.kind]} {item.name!r} is also defined in {seen[key]}", file=item.doc.file)
        seen[key] = item.doc.file
    return found, rest


def _resolve_sources(doc: YamlDocument, model: LibraryVariableSet, base: Path) -> dict[int, str]:
    values: dict[int, str] = {}
    for index, var in enumerate(model.variables):
        source = var.value
        where = doc.locate(("variables", index, "value"))
        if isinstance(source, FromEnv):
            if source.from_env not in os.environ:
                raise ConfigError(f"environment variable {source.from_env} is not set (variable {var.name!r})",
                                  file=doc.file, line=where[0], path=where[1])
            values[index] = os.environ[source.from_env]
        elif isinstance(source, FromFile):
            file = base / Path(source.from_file).expanduser()
            try:
                values[index] = file.read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                raise ConfigError(f"cannot read {file}: {exc.strerror} (variable {var.name!r})",
                                  file=doc.file, line=where[0], path=where[1]) from exc
    return values


def library_document(loaded: LoadedLibrary, vault: Vault) -> dict[str, Any]:
    """The stored form: a set's sensitive values encrypted (ciphertext + keyed fingerprint), never plain."""
    document = loaded.model.model_dump(mode="json")
    if isinstance(loaded.model, LibraryVariableSet):
        document["variables"] = sealed_variables(loaded.model.variables, document["variables"], loaded.values, vault)
    return document


def store(conn: Connection, loaded: LoadedLibrary, vault: Vault, actor: str) -> tuple[int, bool]:
    """Store a new revision when the content changed; returns (revision, changed)."""
    document = library_document(loaded, vault)
    digest = content_digest(document)
    where = (library_revisions.c.kind == loaded.kind, library_revisions.c.name == loaded.name)
    last = conn.execute(select(library_revisions.c.revision, library_revisions.c.content_digest).where(*where)
                        .order_by(library_revisions.c.revision.desc()).limit(1)).first()
    if last is not None and last.content_digest == digest:
        return last.revision, False
    revision = (conn.execute(select(func.max(library_revisions.c.revision)).where(*where)).scalar() or 0) + 1
    conn.execute(insert(library_revisions).values(
        kind=loaded.kind, name=loaded.name, revision=revision, content_digest=digest,
        document=canonical_json(document), source=loaded.doc.file, created_at=now(), created_by=actor))
    audit.record(conn, actor, f"{loaded.kind}.apply", f"{loaded.kind}/{loaded.name}", revision=revision,
                 digest=digest)
    return revision, True


def latest(conn: Connection, kind: str, name: str) -> LibraryRevision | None:
    """The newest revision of a set or template (names match case-insensitively, as Octopus's do)."""
    rows = conn.execute(select(library_revisions.c.name).where(library_revisions.c.kind == kind).distinct()).all()
    stored = next((r.name for r in rows if r.name.casefold() == name.casefold()), None)
    if stored is None:
        return None
    row = conn.execute(select(library_revisions).where(library_revisions.c.kind == kind,
                                                       library_revisions.c.name == stored)
                       .order_by(library_revisions.c.revision.desc()).limit(1)).one()
    return LibraryRevision(kind, row.name, row.revision, json.loads(row.document))


def names(conn: Connection, kind: str) -> list[str]:
    return sorted(r[0] for r in conn.execute(select(library_revisions.c.name)
                                             .where(library_revisions.c.kind == kind).distinct()))


@dataclass
class Library:
    """The sets and templates a project refers to: the newest stored revisions, or the documents of the same
    ``ferry apply`` (which win: they are about to become the newest)."""

    conn: Connection
    vault: Vault
    pending: dict[tuple[str, str], LibraryRevision] = field(default_factory=dict)

    @classmethod
    def with_pending(cls, conn: Connection, vault: Vault, loaded: list[LoadedLibrary]) -> Library:
        pending = {}
        for item in loaded:
            last = latest(conn, item.kind, item.name)
            pending[(item.kind, item.name.casefold())] = LibraryRevision(
                item.kind, item.name, (last.revision + 1) if last else 1, library_document(item, vault))
        return cls(conn, vault, pending)

    def get(self, kind: str, name: str) -> LibraryRevision | None:
        return self.pending.get((kind, name.casefold())) or latest(self.conn, kind, name)

    def known(self, kind: str) -> str:
        every = set(names(self.conn, kind)) | {r.name for (k, _), r in self.pending.items() if k == kind}
        return ", ".join(sorted(every)) or "none"


@dataclass
class Expanded:
    process: list[dict[str, Any]]
    variables: list[dict[str, Any]]
    provenance: dict[str, Any]
    problems: list[Problem]


def uses_library(document: dict[str, Any]) -> bool:
    return bool(document.get("include")) or any("template" in item for item in document.get("process") or [])


def _scope_key(scope: dict[str, Any]) -> str:
    return canonical_json({k: sorted(str(v).casefold() for v in values) for k, values in (scope or {}).items()
                           if values})


def expand(document: dict[str, Any], library: Library) -> Expanded:
    """A stored project document's process with template uses expanded, and its variables with the included
    sets' and the template parameters' added (each marked with its ``source``). Problems carry YAML paths."""
    problems: list[Problem] = []
    variables = list(document.get("variables") or [])
    seen = {(v["name"].casefold(), _scope_key(v.get("scope") or {})) for v in variables}
    sets: list[dict[str, Any]] = []
    for k, name in enumerate(document.get("include") or []):
        found = library.get(VARIABLE_SET, name)
        if found is None:
            problems.append(Problem(("include", k), f"unknown library variable set {name!r} "
                                                    f"(known: {library.known(VARIABLE_SET)})"))
            continue
        sets.append({"name": found.name, "revision": found.revision})
        for var in found.document["variables"]:
            key = (var["name"].casefold(), _scope_key(var.get("scope") or {}))
            if key in seen:  # the project's own (or an earlier set's) variable of the same name and scope wins
                continue
            seen.add(key)
            variables.append({**var, "source": found.label})
    process: list[dict[str, Any]] = []
    templates: list[dict[str, Any]] = []
    for i, item in enumerate(document.get("process") or []):
        if "template" not in item or "kind" in item:
            process.append(item)
            continue
        found = library.get(STEP_TEMPLATE, item["template"])
        if found is None:
            problems.append(Problem(("process", i, "template"), f"unknown step template {item['template']!r} "
                                                                f"(known: {library.known(STEP_TEMPLATE)})"))
            continue
        step, params, step_problems = _expand_step(i, item, found, library.vault)
        problems += step_problems
        process.append(step)
        variables += params
        templates.append({"step": item["name"], "template": found.name, "revision": found.revision})
    provenance: dict[str, Any] = {}
    if sets:
        provenance["variable_sets"] = sets
    if templates:
        provenance["step_templates"] = templates
    return Expanded(process, variables, provenance, problems)


def _expand_step(index: int, item: dict[str, Any], template: LibraryRevision, vault: Vault
                 ) -> tuple[dict[str, Any], list[dict[str, Any]], list[Problem]]:
    at = ("process", index)
    name = item["name"]
    model = StepTemplate.model_validate(template.document)
    declared = {p.name.casefold(): p for p in model.parameters}
    given = {key.casefold(): (key, value) for key, value in (item.get("parameters") or {}).items()}
    problems = []
    for folded, (key, _) in given.items():
        if folded not in declared:
            problems.append(Problem((*at, "parameters", key),
                                    f"step {name!r}: template {template.name!r} has no parameter {key!r} "
                                    f"(its parameters: {', '.join(p.name for p in model.parameters) or 'none'})"))
    params = []
    for parameter in model.parameters:
        value = given[parameter.name.casefold()][1] if parameter.name.casefold() in given else parameter.default
        if value is None:
            label = f" ({parameter.label})" if parameter.label else ""
            problems.append(Problem((*at, "parameters"), f"step {name!r}: template {template.name!r} needs parameter "
                                                         f"{parameter.name!r}{label}"))
            continue
        if parameter.sensitive and "#{" not in value:
            problems.append(Problem((*at, "parameters", given[parameter.name.casefold()][0]),
                                    f"step {name!r}: parameter {parameter.name!r} is sensitive: pass a #{{...}} "
                                    "reference to a sensitive variable, not the secret itself"))
            continue
        dumped = Variable(name=parameter.name, value=value, scope=Scope(step=[name]), sensitive=parameter.sensitive,
                          description=parameter.label).model_dump(mode="json")
        if parameter.sensitive:  # its value is a #{reference}, yet what it renders to is a secret: stored and
            # treated like any sensitive variable (encrypted, masked wherever it is shown)
            dumped = {**{k: v for k, v in dumped.items() if k != "value"}, "ciphertext": vault.encrypt(value),
                      "fingerprint": vault.fingerprint(value)}
        params.append({**dumped, "source": template.label})
    body = {**model.step.model_dump(mode="json"), "name": name}
    for key in OVERRIDES:
        if item.get(key) is not None:
            body[key] = item[key]
    try:
        step = _STEP.validate_python(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or "step"
        problems.append(Problem(at, f"step {name!r}: template {template.name!r} r{template.revision} does not make "
                                    f"a valid step here: {where}: {first['msg'].removeprefix('Value error, ')}"))
        return body, params, problems
    return step.model_dump(mode="json"), params, problems


def step_sources(snapshot: dict[str, Any]) -> dict[str, str]:
    """Step name → ``template: Migrate DB r2`` for the steps of a release that came from a template."""
    used = (snapshot.get("library") or {}).get("step_templates") or []
    return {u["step"]: f"template: {u['template']} r{u['revision']}" for u in used}


def rekey(conn: Connection, old: Vault, new: Vault, actor: str) -> int:
    """``ferry key rotate``: a new revision of each variable set whose newest revision holds a sensitive value,
    re-encrypted under the new key (older revisions stay as history, as a project's do). Returns how many."""
    count = 0
    for name in names(conn, VARIABLE_SET):
        found = latest(conn, VARIABLE_SET, name)
        if found is None or not any(v.get("ciphertext") for v in found.document.get("variables") or []):
            continue
        variables = []
        for var in found.document["variables"]:
            if var.get("ciphertext"):
                plain = old.decrypt(var["ciphertext"])
                var = {**var, "ciphertext": new.encrypt(plain), "fingerprint": new.fingerprint(plain)}
            variables.append(var)
        document = {**found.document, "variables": variables}
        conn.execute(insert(library_revisions).values(
            kind=VARIABLE_SET, name=found.name, revision=found.revision + 1, content_digest=content_digest(document),
            document=canonical_json(document), source="ferry key rotate", created_at=now(), created_by=actor))
        audit.record(conn, actor, "variable_set.rekey", f"variable_set/{found.name}", revision=found.revision + 1)
        count += 1
    return count
