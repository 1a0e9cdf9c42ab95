"""Releases called directly on a real store: which version a release gets, which package versions it pins,
what a refusal says, variable snapshots moving forward, and tamper evidence."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from snapshots import releases
from snapshots.canonical import digest_text
from snapshots.errors import ConfigError, ConflictError, NotFoundError, SnapshotIntegrityError
from snapshots.projects import apply
from snapshots.store import Store
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed, sha256_file
from tests.sample import SECRET, Sample

VAULT = Vault(b"r" * 32)


@dataclasses.dataclass
class Shelf:
    """The sample applied to a store, with a feed to push packages to."""

    store: Store
    feed: Feed
    sample: Sample

    def push(self, *versions: str) -> None:
        with self.store.begin() as conn:
            for version in versions:
                self.feed.push(conn, self.sample.package(version), "tester")

    def create(self, **options):  # type: ignore[no-untyped-def]
        with self.store.begin() as conn:
            return releases.create(conn, self.feed, "OctoFX", "tester", vault=VAULT, **options)

    def apply(self) -> None:
        with self.store.begin() as conn:
            apply(conn, [self.sample.infrastructure, self.sample.project], VAULT, "tester")


@pytest.fixture
def shelf(database_url: str, sample: Sample, tmp_path: Path) -> Iterator[Shelf]:
    found = Shelf(Store(database_url), Feed(tmp_path / "feed"), sample)
    found.apply()
    yield found
    found.store.dispose()


def test_release_pins_the_latest_stable_package_and_takes_its_version(shelf: Shelf) -> None:
    shelf.push("1.0.0", "1.1.0", "1.2.0-beta.1")
    release, created = shelf.create()
    assert created
    assert release.version == "1.1.0"  # the sample's versioning: from_package OctoFX.Web
    [pin] = release.packages
    path = shelf.feed.path_of("OctoFX.Web", "OctoFX.Web.1.1.0.tar.gz")
    assert (pin["id"], pin["version"], pin["sha256"]) == ("OctoFX.Web", "1.1.0", sha256_file(path))
    assert release.digest == digest_text(release.text)
    assert release.variables.revision == 1
    assert [s["name"] for s in release.process] == ["Deploy web app"]


def test_a_package_pin_chooses_the_version(shelf: Shelf) -> None:
    shelf.push("1.0.0", "1.1.0", "1.2.0-beta.1")
    release, _ = shelf.create(package_pins={"OctoFX.Web": "1.2.0-beta.1"})
    assert release.version == "1.2.0-beta.1"
    assert release.packages[0]["version"] == "1.2.0-beta.1"


def test_pins_are_checked(shelf: Shelf) -> None:
    shelf.push("1.0.0")
    with pytest.raises(ConfigError) as caught:
        shelf.create(package_pins={"Other.Web": "1.0.0"})
    assert str(caught.value) == ("--package Other.Web: project OctoFX does not deploy that package "
                                 "(its packages: OctoFX.Web)")
    with pytest.raises(NotFoundError, match=r"package OctoFX.Web has no version 9.9.9 in the feed \(have: 1.0.0\)"):
        shelf.create(package_pins={"OctoFX.Web": "9.9.9"})
    assert releases.parse_package_pins(["OctoFX.Web:1.2.0", "A:B:2.0.0"]) == {"OctoFX.Web": "1.2.0", "A:B": "2.0.0"}
    with pytest.raises(ConfigError, match=r"--package 'OctoFX.Web': expected ID:VERSION"):
        releases.parse_package_pins(["OctoFX.Web"])
    with pytest.raises(ConfigError, match=r"invalid version for package OctoFX\.Web '1\.2'"):
        releases.parse_package_pins(["OctoFX.Web:1.2"])


def test_an_existing_version_is_refused_unless_ignored(shelf: Shelf) -> None:
    shelf.push("1.0.0")
    first, _ = shelf.create(version="1.0.0")
    with pytest.raises(ConflictError) as caught:
        shelf.create(version="1.0.0")
    assert str(caught.value) == ("release 1.0.0 of OctoFX already exists "
                                 "(use another --version, or --ignore-existing)")
    again, created = shelf.create(version="1.0.0", ignore_existing=True)
    assert not created and again.id == first.id
    with pytest.raises(ConflictError, match=r"release 1.0.0 of OctoFX already exists \(use --version\)"):
        shelf.create()  # the package's version is taken too


def test_no_release_is_stored_when_the_package_bytes_changed(shelf: Shelf) -> None:
    shelf.push("1.0.0")
    path = shelf.feed.path_of("OctoFX.Web", "OctoFX.Web.1.0.0.tar.gz")
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(SnapshotIntegrityError, match=r"OctoFX\.Web 1\.0\.0: sha256 mismatch"):
        shelf.create(version="1.0.0")
    with shelf.store.read() as conn:
        assert releases.versions(conn, "OctoFX") == []


def test_latest_is_the_highest_semver_not_the_newest_or_the_longest_string(shelf: Shelf) -> None:
    shelf.push("1.0.0")
    for version in ("1.10.0", "1.9.0", "1.10.0-rc.1"):
        shelf.create(version=version)
    with shelf.store.read() as conn:
        assert releases.require(conn, "OctoFX", "latest").version == "1.10.0"
        assert [r.version for r in releases.list_releases(conn, "OctoFX")] == ["1.10.0", "1.10.0-rc.1", "1.9.0"]
        with pytest.raises(NotFoundError, match=r"project OctoFX has no release 2\.0\.0"):
            releases.require(conn, "OctoFX", "2.0.0")
        with pytest.raises(NotFoundError, match=r"unknown project 'Nope' \(known: OctoFX\)"):
            releases.require(conn, "Nope", "latest")


def test_latest_of_a_project_without_releases_says_how_to_make_one(shelf: Shelf) -> None:
    with shelf.store.read() as conn, pytest.raises(NotFoundError) as caught:
        releases.require(conn, "OctoFX", "latest")
    assert str(caught.value) == "project OctoFX has no releases yet (ferry release create OctoFX)"


def test_update_variables_moves_forward_and_keeps_history(shelf: Shelf) -> None:
    shelf.push("1.0.0")
    shelf.create(version="1.0.0")
    with shelf.store.begin() as conn:
        same, changed = releases.update_variables(conn, "OctoFX", "1.0.0", "tester", vault=VAULT)
    assert not changed and same.variables.revision == 1
    shelf.sample.edit_project(lambda d: d["variables"].append({"name": "Feature.Flag", "value": "on"}))
    shelf.apply()
    with shelf.store.begin() as conn:
        updated, changed = releases.update_variables(conn, "OctoFX", "1.0.0", "tester", vault=VAULT)
    assert changed
    assert [s.revision for s in updated.variable_snapshots] == [1, 2]
    assert "Feature.Flag" in {v["name"] for v in updated.variables.variables}
    assert "Feature.Flag" not in {v["name"] for v in updated.variable_snapshots[0].variables}
    assert updated.text == same.text  # the process and packages did not move


def test_sensitive_values_are_masked_for_display_and_decrypted_only_on_request(shelf: Shelf) -> None:
    shelf.push("1.0.0")
    release, _ = shelf.create(version="1.0.0")
    stored = next(v for v in release.variables.variables if v["name"] == "Db.Password")
    assert SECRET not in release.variables.text and stored.get("ciphertext")
    shown = next(v for v in releases.masked_variables(release.variables.variables) if v["name"] == "Db.Password")
    assert shown["value"] == releases.MASK and "ciphertext" not in shown and "fingerprint" not in shown
    plain = next(v for v in releases.decrypt_variables(release.variables, VAULT) if v["name"] == "Db.Password")
    assert plain["value"] == SECRET


def test_check_digests_and_verify_catch_tampering(shelf: Shelf) -> None:
    shelf.push("1.0.0")
    release, _ = shelf.create(version="1.0.0")
    checked = releases.verify(release, shelf.feed, VAULT)
    assert checked[0] == f"release snapshot digest {release.digest}"
    assert checked[-1].startswith("package OctoFX.Web 1.0.0 sha256 ")
    edited = dataclasses.replace(release, text=release.text.replace("Smoke test", "Smoke tost"))
    with pytest.raises(SnapshotIntegrityError) as caught:
        releases.check_digests(edited)
    assert str(caught.value) == (f"release OctoFX 1.0.0 was tampered with: the release snapshot does not match "
                                 f"its digest {release.digest[:16]}…")
    shelf.feed.path_of("OctoFX.Web", "OctoFX.Web.1.0.0.tar.gz").unlink()
    with pytest.raises(SnapshotIntegrityError, match=r"package OctoFX\.Web 1\.0\.0: .* is missing"):
        releases.verify(release, shelf.feed, VAULT)

