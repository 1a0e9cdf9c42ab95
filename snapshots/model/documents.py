"""From YAML files to validated models, and from models to the stored (encrypted) documents.

A stored project document is the full model dump (defaults included, so a later ferry with other
defaults cannot change what an old revision means) with each sensitive value replaced by its
ciphertext and keyed fingerprint. Its *content digest* leaves the ciphertext out, so applying the same
YAML twice is recognised as "no change" although Fernet ciphertexts differ each time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from snapshots.canonical import digest
from snapshots.certificates import Certificate, CertificateError, parse, read_source
from snapshots.errors import ConfigError
from snapshots.feed_credentials import without_ciphertexts
from snapshots.model import Infrastructure, Project
from snapshots.model.common import FromEnv, FromFile
from snapshots.model.project import Variable
from snapshots.model.references import Problem, infrastructure_problems, project_problems
from snapshots.model.yamlfile import YamlDocument, read_yaml, validation_error
from snapshots.store.crypto import Vault


@dataclass
class LoadedProject:
    doc: YamlDocument
    model: Project
    values: dict[int, str]
    """Resolved value of each variable (by index) whose YAML value was a from_env/from_file source."""


@dataclass
class LoadedInfrastructure:
    doc: YamlDocument
    model: Infrastructure
    certificates: list[Certificate] = field(default_factory=list)
    """Each ``certificates:`` entry read and parsed (decrypted key in memory until apply encrypts it)."""


Loaded = LoadedProject | LoadedInfrastructure


def problem_error(doc: YamlDocument, problem: Problem) -> ConfigError:
    if len(problem.path) == 1 and not doc.resolves(problem.path):
        # a top-level default the file does not write (``lifecycle: Default``): no line of the file is at fault
        field = str(problem.path[0])
        return ConfigError(f"{problem.message} (the file sets no {field}: that is the default)", file=doc.file,
                           path=field)
    line, path = doc.locate(problem.path)
    return ConfigError(problem.message, file=doc.file, line=line, path=path or None)


def load_file(path: Path) -> Loaded:
    """Read, classify (``project:`` key → project, else infrastructure) and validate one file."""
    doc = read_yaml(path)
    try:
        if "project" in doc.data:
            project = Project.model_validate(doc.data)
        else:
            infra = Infrastructure.model_validate(doc.data)
    except ValidationError as exc:
        raise validation_error(doc, exc) from None
    if "project" in doc.data:
        for problem in project_problems(project, None):
            raise problem_error(doc, problem)
        return LoadedProject(doc, project, _resolve_sources(doc, project, path.parent))
    for problem in infrastructure_problems(infra):
        raise problem_error(doc, problem)
    return LoadedInfrastructure(doc, infra, _read_certificates(doc, infra, path.parent))


def _read_certificates(doc: YamlDocument, infra: Infrastructure, base: Path) -> list[Certificate]:
    """Read and parse every certificate now, so a missing file or a wrong password is refused before
    anything is stored."""
    found = []
    for index, spec in enumerate(infra.certificates):
        try:
            data, password = read_source(spec.source, spec.password, name=spec.name, base=base)
            found.append(parse(data, password, name=spec.name))
        except CertificateError as exc:
            line, where = doc.locate(("certificates", index))
            raise ConfigError(str(exc), file=doc.file, line=line, path=where) from None
    return found


def _resolve_sources(doc: YamlDocument, project: Project, base: Path) -> dict[int, str]:
    values: dict[int, str] = {}
    for index, var in enumerate(project.variables):
        source = var.value
        if isinstance(source, FromEnv):
            if source.from_env not in os.environ:
                line, path = doc.locate(("variables", index, "value"))
                raise ConfigError(f"environment variable {source.from_env} is not set (variable {var.name!r})",
                                  file=doc.file, line=line, path=path)
            values[index] = os.environ[source.from_env]
        elif isinstance(source, FromFile):
            file = (base / Path(source.from_file).expanduser())
            try:
                values[index] = file.read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                line, path = doc.locate(("variables", index, "value"))
                raise ConfigError(f"cannot read {file}: {exc.strerror} (variable {var.name!r})",
                                  file=doc.file, line=line, path=path) from exc
    return values


def sealed_variables(variables: Sequence[Variable], dumped: list[dict[str, Any]], values: dict[int, str],
                     vault: Vault) -> list[dict[str, Any]]:
    """Variables as stored (a project's or a library set's): each value resolved to text (``values``: what a
    from_env/from_file source gave, by index), a sensitive one as ciphertext + keyed fingerprint, never plain."""
    sealed = []
    for index, (var, entry_in) in enumerate(zip(variables, dumped, strict=True)):
        value = values.get(index, var.value if isinstance(var.value, str) else None)
        entry = {k: v for k, v in entry_in.items() if k != "value"}
        if value is None:
            entry["value"] = None
        elif var.sensitive:
            entry["ciphertext"] = vault.encrypt(value)
            entry["fingerprint"] = vault.fingerprint(value)
        else:
            entry["value"] = value
        sealed.append(entry)
    return sealed


def project_document(loaded: LoadedProject, vault: Vault) -> dict[str, Any]:
    """The stored form: every variable's value resolved to text, sensitive ones encrypted."""
    document = loaded.model.model_dump(mode="json")
    document["variables"] = sealed_variables(loaded.model.variables, document["variables"], loaded.values, vault)
    return document


def infrastructure_document(loaded: LoadedInfrastructure) -> dict[str, Any]:
    return loaded.model.model_dump(mode="json")


def content_digest(document: dict[str, Any]) -> str:
    """Digest of what the document *means*: ciphertexts left out (they differ on every encryption)."""
    variables = [{k: v for k, v in var.items() if k != "ciphertext"} for var in document.get("variables", [])]
    document = without_ciphertexts(document)  # feed credentials (infrastructure)
    return digest({**document, "variables": variables} if "variables" in document else document)
