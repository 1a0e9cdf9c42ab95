"""``apply`` called directly on a real store: revisions only when content changed, every file checked before
anything is written, and refusals that name the file and what is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from snapshots.errors import ConfigError, NotFoundError
from snapshots.model.infrastructure import Infrastructure
from snapshots.projects import (
    apply,
    latest_infrastructure,
    latest_project,
    project_names,
    require_infrastructure,
    require_project,
)
from snapshots.store import Store
from snapshots.store.crypto import Vault
from tests.sample import SECRET, Sample

VAULT = Vault(b"p" * 32)


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    found = Store(database_url)
    yield found
    found.dispose()


def applied(store: Store, *files: Path) -> list[tuple[str, str, int, bool]]:
    with store.begin() as conn:
        return [(a.kind, a.name, a.revision, a.changed) for a in apply(conn, list(files), VAULT, "tester")]


def test_a_revision_is_stored_only_when_content_changed(store: Store, sample: Sample) -> None:
    assert applied(store, sample.infrastructure, sample.project) == [
        ("infrastructure", "infrastructure", 1, True), ("project", "OctoFX", 1, True)]
    assert applied(store, sample.infrastructure, sample.project) == [
        ("infrastructure", "infrastructure", 1, False), ("project", "OctoFX", 1, False)]
    sample.edit_project(lambda d: d.update(description="Trading, now faster"))
    assert applied(store, sample.project) == [("project", "OctoFX", 2, True)]
    with store.read() as conn:
        assert require_project(conn, "OctoFX").document["description"] == "Trading, now faster"
        assert project_names(conn) == ["OctoFX"]


def test_a_changed_secret_is_a_new_revision_though_it_is_never_stored_in_clear(
        store: Store, sample: Sample, monkeypatch: pytest.MonkeyPatch) -> None:
    applied(store, sample.infrastructure, sample.project)
    assert applied(store, sample.project) == [("project", "OctoFX", 1, False)]  # same secret: no revision
    monkeypatch.setenv("OCTOFX_DB_PASSWORD", "rotated")
    assert applied(store, sample.project) == [("project", "OctoFX", 2, True)]
    with store.read() as conn:
        revision = require_project(conn, "OctoFX")
    assert SECRET not in str(revision.document) and "rotated" not in str(revision.document)
    model = revision.model()  # what the CLI shows: names and flags, never the value
    assert next(v for v in model.variables if v.name == "Db.Password").value == "********"


def test_a_project_needs_an_infrastructure_first(store: Store, sample: Sample) -> None:
    with pytest.raises(ConfigError) as caught:
        applied(store, sample.project)
    assert str(caught.value) == (f"{sample.project}: apply the infrastructure (environments, lifecycles) first, "
                                 "or in the same command")
    with store.read() as conn, pytest.raises(NotFoundError) as missing:
        require_infrastructure(conn)
    assert str(missing.value) == "no infrastructure has been applied yet (ferry apply infrastructure.yaml)"


def test_a_bad_file_stores_nothing_not_even_the_good_ones(store: Store, sample: Sample) -> None:
    sample.edit_project(lambda d: d.update(lifecycle="Nope"))
    with pytest.raises(ConfigError, match="Nope"):
        applied(store, sample.infrastructure, sample.project)
    with store.read() as conn:
        assert latest_infrastructure(conn) is None and latest_project(conn, "OctoFX") is None


def test_one_infrastructure_and_each_project_once_per_apply(store: Store, sample: Sample, tmp_path: Path) -> None:
    other = tmp_path / "infra-2.yaml"
    other.write_text(sample.infrastructure.read_text())
    with pytest.raises(ConfigError, match="only one infrastructure file per apply"):
        applied(store, sample.infrastructure, other)
    twin = tmp_path / "project-2.yaml"
    twin.write_text(sample.project.read_text())
    with pytest.raises(ConfigError, match=f"project 'OctoFX' is also defined in {sample.project}"):
        applied(store, sample.infrastructure, sample.project, twin)
    with pytest.raises(ConfigError, match="no files given"):
        applied(store)


def test_a_new_infrastructure_may_not_strand_a_stored_project(store: Store, sample: Sample) -> None:
    applied(store, sample.infrastructure, sample.project)
    infra = yaml.safe_load(sample.infrastructure.read_text())
    infra["load_balancers"][0]["name"] = "renamed-lb"
    sample.infrastructure.write_text(yaml.safe_dump(infra, sort_keys=False))
    with pytest.raises(ConfigError) as caught:
        applied(store, sample.infrastructure)
    assert "project 'OctoFX' (stored) would break: unknown load balancer 'web-lb'" in str(caught.value)
    with store.read() as conn:
        assert latest_infrastructure(conn)[0] == 1  # type: ignore[index]
    # applied together with a project that follows the rename, it is fine
    sample.project.write_text(sample.project.read_text().replace("balancer: web-lb", "balancer: renamed-lb"))
    assert [a[2:] for a in applied(store, sample.infrastructure, sample.project)] == [(2, True), (2, True)]


def test_without_a_declared_default_lifecycle_the_built_in_one_has_every_environment_in_order(
        store: Store, sample: Sample) -> None:
    infra = yaml.safe_load(sample.infrastructure.read_text())
    del infra["lifecycles"]
    sample.infrastructure.write_text(yaml.safe_dump(infra, sort_keys=False))
    sample.project.write_text(sample.project.read_text().replace("lifecycle: Default\n", ""))
    applied(store, sample.infrastructure, sample.project)
    model = Infrastructure.model_validate(infra)
    lifecycle = model.lifecycle("Default")
    assert lifecycle is not None
    assert [p.environments for p in lifecycle.phases] == [["Development"], ["Test"], ["Production"]]
    assert model.lifecycle("Other") is None


def test_ambiguous_variables_are_refused_at_the_later_one(store: Store, sample: Sample) -> None:
    sample.edit_project(lambda d: d["variables"].append({"name": "App.Port", "value": 9090}))
    with pytest.raises(ConfigError) as caught:
        applied(store, sample.infrastructure, sample.project)
    error = caught.value
    assert "App.Port" in str(error)
    assert error.file == str(sample.project) and error.line is not None
    lines = sample.project.read_text().splitlines()
    assert lines[error.line - 1].strip() == "- name: App.Port" and "9090" in lines[error.line]  # the later one


def test_unknown_project_lists_the_known_ones(store: Store, sample: Sample) -> None:
    applied(store, sample.infrastructure, sample.project)
    with store.read() as conn, pytest.raises(NotFoundError) as caught:
        require_project(conn, "OctoFx")
    assert str(caught.value) == "unknown project 'OctoFx' (known: OctoFX)"
