"""Releases: read-only snapshots of a project's process, variables and pinned packages.

A release row holds the canonical JSON of the process + package pins + notes and its sha256; its
variables live in append-only *variable snapshot* revisions (``update-variables`` adds one; the newest
is what a deployment uses, older ones stay readable). Creation is one transaction. The release and each
revision are signed by the executor's key, chained (``snapshots.store.signing``): a deployment and
``release verify`` check digests *and* signatures.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from snapshots import library, release_feeds
from snapshots.canonical import canonical_json, digest_text
from snapshots.channels import (
    channel_of,
    check_version,
    find_channel,
    latest_in_channel,
    lifecycle_of,
    pick_version,
    rules_for,
)
from snapshots.errors import ChannelRuleError, ConfigError, ConflictError, NotFoundError, SnapshotIntegrityError
from snapshots.model.channels import Channel
from snapshots.model.references import TemplateValue, template_problems
from snapshots.projects import (
    ProjectRevision,
    latest_infrastructure,
    project_revision,
    require_project,
    variable_problems,
)
from snapshots.release_numbering import next_release_version
from snapshots.store import audit, inserted_id, now, signing
from snapshots.store.crypto import Vault
from snapshots.store.feed import Feed, Package
from snapshots.store.tables import releases, variable_snapshots
from snapshots.variables.scopes import step_names
from snapshots.versions import parse_version, sort_key

MASK = "********"
SNAPSHOT_FORMAT = 1


@dataclass(frozen=True)
class VariableSnapshot:
    id: int
    revision: int
    project_revision_id: int
    document: dict[str, Any]
    text: str
    digest: str
    created_at: str
    created_by: str
    release_id: int = 0
    signatures: dict[str, str] = field(default_factory=dict)
    """{key fingerprint: signature} of this revision."""

    @property
    def variables(self) -> list[dict[str, Any]]:
        return self.document["variables"]

    @property
    def signed(self) -> signing.SnapshotRow:
        return signing.SnapshotRow(self.id, self.release_id, self.revision, self.project_revision_id, self.text,
                                   self.digest)


@dataclass(frozen=True)
class Release:
    id: int
    project: str
    version: str
    project_revision_id: int
    snapshot: dict[str, Any]
    text: str
    digest: str
    created_at: str
    created_by: str
    variable_snapshots: list[VariableSnapshot] = field(default_factory=list)
    signatures: dict[str, str] = field(default_factory=dict)
    """{key fingerprint: signature} of the release row."""

    @property
    def signed(self) -> signing.ReleaseRow:
        return signing.ReleaseRow(self.id, self.project, self.version, self.project_revision_id, self.text,
                                  self.digest)

    @property
    def variables(self) -> VariableSnapshot:
        """The newest variable snapshot: what a deployment of this release uses."""
        return self.variable_snapshots[-1]

    @property
    def packages(self) -> list[dict[str, Any]]:
        return self.snapshot["packages"]

    @property
    def process(self) -> list[dict[str, Any]]:
        return self.snapshot["process"]


def masked_variables(variables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Variables for display: sensitive values replaced by a mask, ciphertext and fingerprint dropped."""
    shown = []
    for var in variables:
        entry = {k: v for k, v in var.items() if k not in ("ciphertext", "fingerprint")}
        if var.get("sensitive"):
            entry["value"] = MASK if var.get("ciphertext") else None
        shown.append(entry)
    return shown


def parse_package_pins(pins: list[str]) -> dict[str, str]:
    """``--package ID:VERSION`` options as a dict (a malformed one is a one-line error)."""
    result: dict[str, str] = {}
    for pin in pins:
        package_id, sep, version = pin.rpartition(":")
        if not sep or not package_id or not version:
            raise ConfigError(f"--package {pin!r}: expected ID:VERSION, e.g. OctoFX.Web:1.2.0")
        parse_version(version, what=f"version for package {package_id}")
        result[package_id] = version
    return result


def _pin_packages(conn: Connection, feed: Feed, revision: ProjectRevision,
                  pins: dict[str, str], channel: Channel, vault: Vault) -> list[Package]:
    wanted = revision.document["packages"]
    unknown = sorted(set(pins) - set(wanted))
    if unknown:
        raise ConfigError(f"--package {unknown[0]}: project {revision.project} does not deploy that package "
                          f"(its packages: {', '.join(wanted) or 'none'})")
    for package_id, version in pins.items():  # before the feed is asked: the rule is the clearer message
        check_version(channel, package_id, version)
    external = release_feeds.package_feeds(revision.document)
    chosen = [release_feeds.pin(conn, feed, vault, external[package_id], package_id, pins.get(package_id),
                                _external_pick(channel, package_id, external[package_id]))
              if package_id in external else
              feed.resolve(conn, package_id, pins.get(package_id) or _channel_pick(conn, feed, channel, package_id))
              for package_id in wanted]
    built_in = [p for p in chosen if not release_feeds.snapshot_fields(p)]
    if built_in:  # the bytes in the feed must still be the bytes that were pushed
        with ThreadPoolExecutor(max_workers=min(4, len(built_in))) as pool:
            list(pool.map(feed.verify, built_in))
    return chosen


def _external_pick(channel: Channel, package_id: str, feed_name: str) -> Callable[[list[str]], str | None]:
    """The channel's choice among an external feed's versions (None: no rule applies, the newest stable)."""
    def pick(have: list[str]) -> str | None:
        if not rules_for(channel, package_id):
            return None
        picked = pick_version(channel, package_id, have)
        if picked is None:
            rules = "; ".join(r.describe() for r in rules_for(channel, package_id))
            raise ChannelRuleError(f"no version of package {package_id} in feed {feed_name!r} satisfies channel "
                                   f"{channel.name!r} ({rules}; have: {', '.join(sorted(have, key=sort_key))})")
        return picked

    return pick


def _channel_pick(conn: Connection, feed: Feed, channel: Channel, package_id: str) -> str | None:
    """The newest feed version of the package the channel's rules allow (None: no rule applies, the feed's
    own choice); refused in one line when the feed has versions but none satisfies the rules."""
    if not rules_for(channel, package_id):
        return None
    have = [p.version for p in feed.list(conn, package_id)]
    picked = pick_version(channel, package_id, have)
    if picked is None and have:
        rules = "; ".join(r.describe() for r in rules_for(channel, package_id))
        raise ChannelRuleError(f"no version of package {package_id} in the feed satisfies channel {channel.name!r} "
                               f"({rules}; have: {', '.join(sorted(have, key=sort_key))})")
    return picked


def create(conn: Connection, feed: Feed, project: str, actor: str, *, vault: Vault, version: str | None = None,
           package_pins: dict[str, str] | None = None, notes: str = "",
           ignore_existing: bool = False, channel: str | None = None) -> tuple[Release, bool]:
    """Freeze the project's current revision, signed with the vault's key, in ``channel`` (default: the project's
    default channel), whose rules the packages must satisfy. Returns (release, created)."""
    revision = require_project(conn, project)
    model = revision.model()
    lane = find_channel(model, channel)
    if version is not None:
        version = str(parse_version(version, what="release version"))
        existing = find(conn, project, version)
        if existing is not None:
            if ignore_existing:
                return existing, False
            raise ConflictError(f"release {version} of {project} already exists "
                                "(use another --version, or --ignore-existing)")
    revision, provenance = _with_library(conn, vault, revision)
    _check_variables(conn, revision)
    _check_templates(revision, vault)
    packages = _pin_packages(conn, feed, revision, package_pins or {}, lane, vault)
    if version is None:
        version = next_release_version(revision.document, packages, versions(conn, project))
        existing = find(conn, project, version)
        if existing is not None:
            if ignore_existing:
                return existing, False
            raise ConflictError(f"release {version} of {project} already exists (use --version)")
    _refuse_same_precedence(conn, project, version)
    created_at = now()
    doc = revision.document
    snapshot = {
        "format": SNAPSHOT_FORMAT,
        "project": project,
        "version": version,
        "notes": notes,
        "created_at": created_at,
        "created_by": actor,
        "project_revision": revision.revision,
        "lifecycle": lifecycle_of(model, lane),
        "channel": lane.name,
        "strict_variables": doc["strict_variables"],
        "process": doc["process"],
        "packages": [{"id": p.package_id, "version": p.version, "sha256": p.sha256, "size": p.size,
                      "filename": p.filename, **release_feeds.snapshot_fields(p)} for p in packages],
    }
    if doc.get("allow_no_targets"):  # only when set: releases that do not use it keep their former shape
        snapshot["allow_no_targets"] = True
    if provenance:  # which library variable set / step template revisions went in (only when any did)
        snapshot["library"] = provenance
    text = canonical_json(snapshot)
    try:
        release_id = inserted_id(conn.execute(insert(releases).values(
            project=project, version=version, project_revision_id=revision.id, snapshot=text,
            digest=digest_text(text), created_at=created_at, created_by=actor)))
    except IntegrityError as exc:  # a concurrent create won the race for this version
        raise ConflictError(f"release {version} of {project} already exists") from exc
    signature = signing.sign_release(conn, vault, signing.ReleaseRow(release_id, project, version, revision.id, text,
                                                                     digest_text(text)))
    _insert_variable_snapshot(conn, vault, release_id, project, version, 1, revision.id, revision.revision,
                              revision.document["variables"], actor, signature)
    audit.record(conn, actor, "release.create", f"project/{project}/release/{version}",
                 digest=digest_text(text), packages={p.package_id: p.version for p in packages}, channel=lane.name)
    release = find(conn, project, version)
    assert release is not None
    return release, True


def _with_library(conn: Connection, vault: Vault, revision: ProjectRevision) -> tuple[ProjectRevision, dict[str, Any]]:
    """The project revision with its step template uses expanded and its included sets' variables added (the
    newest revisions of each), and the provenance to record; unchanged when it uses no library."""
    if not library.uses_library(revision.document):
        return revision, {}
    expanded = library.expand(revision.document, library.Library(conn, vault))
    if expanded.problems:
        raise ConfigError(f"project {revision.project} (revision {revision.revision}): {expanded.problems[0].message}")
    document = {**revision.document, "process": expanded.process, "variables": expanded.variables}
    return replace(revision, document=document), expanded.provenance


def _current_variables(conn: Connection, vault: Vault, release: Release,
                       revision: ProjectRevision) -> list[dict[str, Any]]:
    """What ``update-variables`` snapshots: the project's current variables and its included sets' newest ones;
    the template parameters stay as the release froze them (they belong to its frozen steps)."""
    kept = [v for v in release.variables.variables if str(v.get("source", "")).startswith("template:")]
    if not library.uses_library(revision.document) and not kept:
        return list(revision.document["variables"])
    expanded = library.expand({**revision.document, "process": []}, library.Library(conn, vault))
    if expanded.problems:
        raise ConfigError(f"project {revision.project} (revision {revision.revision}): {expanded.problems[0].message}")
    return expanded.variables + kept


def _refuse_same_precedence(conn: Connection, project: str, version: str) -> None:
    """``1.0.0+b1`` beside ``1.0.0``: build metadata does not order versions (SemVer 2 §10), so "latest" and
    promotion could not tell the two releases apart."""
    wanted = sort_key(version)
    same = next((v for v in versions(conn, project) if v != version and sort_key(v).compare(wanted) == 0), None)
    if same is not None:
        raise ConflictError(f"release {version} of {project} has the same SemVer precedence as release {same} "
                            "(build metadata after + does not order versions): use another --version")


def _check_variables(conn: Connection, revision: ProjectRevision) -> None:
    """Refuse to freeze variables that are ambiguous against the current infrastructure (it may have changed
    since the project was applied)."""
    infra = latest_infrastructure(conn)
    problems = variable_problems(revision.document["variables"], infra[1] if infra else None,
                                 step_names(revision.document["process"]))
    if problems:
        raise ConfigError(f"project {revision.project} (revision {revision.revision}): {problems[0].message}")


def _check_templates(revision: ProjectRevision, vault: Vault) -> None:
    """Parse every template and look for variable cycles in what is about to be frozen (a project stored by an
    older ferry was never checked), so a release never fails per target at deploy time for its own text."""
    values = []
    for index, var in enumerate(revision.document["variables"]):
        text = var.get("value")
        if text is None and var.get("ciphertext"):
            text = vault.decrypt(var["ciphertext"])
        values.append(TemplateValue(("variables", index, "value"), var["name"], text, bool(var.get("sensitive"))))
    problems = template_problems(revision.document["process"], values)
    if problems:
        raise ConfigError(f"project {revision.project} (revision {revision.revision}): {problems[0].message}")


def _insert_variable_snapshot(conn: Connection, vault: Vault, release_id: int, project: str, version: str,
                              number: int, project_revision_id: int, project_revision_number: int,
                              variables: list[dict[str, Any]], actor: str, previous_signature: str) -> str:
    """Insert revision ``number`` signed and chained to ``previous_signature``; returns its signature."""
    document = {"project": project, "release": version, "revision": number,
                "project_revision": project_revision_number, "variables": variables}
    text = canonical_json(document)
    snapshot_id = inserted_id(conn.execute(insert(variable_snapshots).values(
        release_id=release_id, revision=number, project_revision_id=project_revision_id, document=text,
        digest=digest_text(text), created_at=now(), created_by=actor)))
    return signing.sign_snapshot(conn, vault, signing.SnapshotRow(snapshot_id, release_id, number, project_revision_id,
                                                                  text, digest_text(text)), previous_signature)


def append_first_revision(conn: Connection, vault: Vault, release_id: int, project: str, version: str,
                          project_revision_id: int, project_revision_number: int, variables: list[dict[str, Any]],
                          actor: str, release_signature: str) -> str:
    """Revision 1 of a release row just inserted and signed elsewhere (a runbook snapshot), chained to the row's
    ``release_signature``; returns its signature."""
    return _insert_variable_snapshot(conn, vault, release_id, project, version, 1, project_revision_id,
                                     project_revision_number, variables, actor, release_signature)


def append_revision(conn: Connection, vault: Vault, release: Release, project_revision_id: int,
                    project_revision_number: int, variables: list[dict[str, Any]], actor: str,
                    previous_signature: str) -> None:
    """Append the next revision chained to ``previous_signature`` (a key rotation, which re-signed the chain
    under the new key in this transaction)."""
    _insert_variable_snapshot(conn, vault, release.id, release.project, release.version,
                              release.variables.revision + 1, project_revision_id, project_revision_number,
                              variables, actor, previous_signature)


def add_variable_snapshot(conn: Connection, vault: Vault, release: Release, project_revision_id: int,
                          project_revision_number: int, variables: list[dict[str, Any]], actor: str) -> int:
    """Append the next revision to a release whose chain verifies under the vault's current key."""
    key_id = check_integrity(release, vault)
    if key_id != vault.key_id:
        raise SnapshotIntegrityError(f"release {release.project} {release.version} is not signed by the current "
                                     "key (run `ferry key rotate` to finish re-signing)")
    number = release.variables.revision + 1
    _insert_variable_snapshot(conn, vault, release.id, release.project, release.version, number,
                              project_revision_id, project_revision_number, variables, actor,
                              release.variables.signatures[vault.key_id])
    return number


def update_variables(conn: Connection, project: str, version: str, actor: str, *,
                     vault: Vault) -> tuple[Release, bool]:
    """Re-snapshot the project's current variables into the release as a new revision (forward only).

    Returns (release, changed): no new revision when the variables are already the current ones."""
    release = require(conn, project, version)
    revision = require_project(conn, project)
    current = release.variables
    variables = _current_variables(conn, vault, release, revision)
    if _variables_meaning(current.variables) == _variables_meaning(variables):
        return release, False
    number = add_variable_snapshot(conn, vault, release, revision.id, revision.revision, variables, actor)
    audit.record(conn, actor, "release.update-variables", f"project/{project}/release/{release.version}",
                 revision=number, project_revision=revision.revision)
    return require(conn, project, version), True


def _variables_meaning(variables: list[dict[str, Any]]) -> str:
    return canonical_json([{k: v for k, v in var.items() if k != "ciphertext"} for var in variables])


def versions(conn: Connection, project: str) -> list[str]:
    return [r[0] for r in conn.execute(select(releases.c.version).where(releases.c.project == project))]


def newest_first(conn: Connection, project: str) -> list[str]:
    """The project's release versions, highest first by SemVer (no snapshot read)."""
    return sorted(versions(conn, project), key=sort_key, reverse=True)


def find(conn: Connection, project: str, version: str) -> Release | None:
    row = conn.execute(select(releases).where(releases.c.project == project,
                                              releases.c.version == version)).first()
    if row is None:
        return None
    snaps = list(conn.execute(select(variable_snapshots).where(variable_snapshots.c.release_id == row.id)
                              .order_by(variable_snapshots.c.revision)))
    what = f"release {project} {version}"
    release_sigs = signing.load(conn, signing.RELEASES, [row.id])
    snap_sigs = signing.load(conn, signing.VARIABLE_SNAPSHOTS, [s.id for s in snaps])
    return Release(row.id, row.project, row.version, row.project_revision_id, _parse(row.snapshot, what),
                   row.snapshot, row.digest, row.created_at, row.created_by,
                   [VariableSnapshot(s.id, s.revision, s.project_revision_id,
                                     _parse(s.document, f"{what} variable snapshot r{s.revision}"), s.document,
                                     s.digest, s.created_at, s.created_by, s.release_id, snap_sigs.get(s.id, {}))
                    for s in snaps], release_sigs.get(row.id, {}))


def _parse(text: str, what: str) -> dict[str, Any]:
    """Stored snapshots are canonical JSON; anything else was written behind ferry's back."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotIntegrityError(f"{what} was tampered with: its stored snapshot is not valid JSON "
                                     f"({exc.msg} at character {exc.pos})") from None


def require(conn: Connection, project: str, version: str, *, channel: str | None = None) -> Release:
    """A release by version, or ``latest``: the highest version in ``channel`` (default: the project's default
    channel — a pre-release in another channel is never the default channel's latest). With ``channel`` and a
    version, the release must be in that channel."""
    model = require_project(conn, project).model()
    lane = find_channel(model, channel)
    if version == "latest":
        newest = latest_in_channel(conn, model, lane)
        if newest is None:
            if not versions(conn, project):
                raise NotFoundError(f"project {project} has no releases yet (ferry release create {project})")
            raise NotFoundError(f"project {project} has no release in channel {lane.name!r} yet "
                                f"(ferry release create {project} --channel {lane.name})")
        version = newest
    release = find(conn, project, version)
    if release is None:
        raise NotFoundError(f"project {project} has no release {version}")
    if channel is not None:
        actual = channel_of(release.snapshot, model)
        if actual.casefold() != lane.name.casefold():
            raise ConflictError(f"release {project} {version} is in channel {actual!r}, not {lane.name!r}")
    return release


def list_releases(conn: Connection, project: str) -> list[Release]:
    require_project(conn, project)
    found = [find(conn, project, v) for v in newest_first(conn, project)]
    return [r for r in found if r is not None]


def check_digests(release: Release) -> None:
    """Recompute the digests of the release row and every variable snapshot (tamper evidence against
    accidents; ``check_integrity`` also checks the signatures, which a database writer cannot recompute)."""
    problems = _digest_problems(release)
    if problems:
        raise SnapshotIntegrityError(f"release {release.project} {release.version} was tampered with: "
                                     + "; ".join(problems))


def check_integrity(release: Release, vault: Vault) -> str:
    """Digests, then the chain of signatures; returns the fingerprint of the key it verifies under.

    Raises SnapshotIntegrityError (one line) on any mismatch: what a deployment and ``release verify`` do."""
    problems = _digest_problems(release)
    numbers = [s.revision for s in release.variable_snapshots]
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"variable snapshot revisions {numbers} are not consecutive from 1")
    key_id = None
    if not problems:
        key_id, problems = signing.check_chain(vault, release.signed, release.signatures,
                                               [(s.signed, s.signatures) for s in release.variable_snapshots])
    if problems or key_id is None:
        raise SnapshotIntegrityError(f"release {release.project} {release.version} was tampered with: "
                                     + "; ".join(problems))
    return key_id


def _digest_problems(release: Release) -> list[str]:
    problems = []
    if digest_text(release.text) != release.digest:
        problems.append(f"the release snapshot does not match its digest {release.digest[:16]}…")
    elif canonical_json(release.snapshot) != release.text:
        problems.append("the release snapshot is not in canonical form")
    for snap in release.variable_snapshots:
        if digest_text(snap.text) != snap.digest:
            problems.append(f"variable snapshot revision {snap.revision} does not match its digest")
        elif canonical_json(snap.document) != snap.text:
            problems.append(f"variable snapshot revision {snap.revision} is not in canonical form")
    return problems


def verify(release: Release, feed: Feed, vault: Vault) -> list[str]:
    """Digests, signatures and package bytes; returns what was checked, raises SnapshotIntegrityError on a
    mismatch."""
    key_id = check_integrity(release, vault)
    checked = [f"release snapshot digest {release.digest}",
               *(f"variable snapshot r{s.revision} digest {s.digest}" for s in release.variable_snapshots),
               f"signatures of the release and {len(release.variable_snapshots)} variable snapshot revision(s), "
               f"chained, by key {key_id[:16]}"]
    pins = [Package(p["id"], p["version"], p["filename"], p["size"], p["sha256"], "") for p in release.packages
            if not p.get("feed")]
    if pins:
        with ThreadPoolExecutor(max_workers=min(4, len(pins))) as pool:
            list(pool.map(feed.verify, pins))
    checked += [f"package {p.package_id} {p.version} sha256 {p.sha256}" for p in pins]
    checked += [release_feeds.verify_cached(feed, p) for p in release.packages if p.get("feed")]
    return checked


def decrypt_variables(snapshot: VariableSnapshot, vault: Vault) -> list[dict[str, Any]]:
    """Variables with sensitive values decrypted, for use in memory at deploy time only."""
    out = []
    for var in snapshot.variables:
        entry = {k: v for k, v in var.items() if k not in ("ciphertext", "fingerprint")}
        if var.get("ciphertext"):
            entry["value"] = vault.decrypt(var["ciphertext"])
        out.append(entry)
    return out


def project_revision_of(conn: Connection, release: Release) -> ProjectRevision:
    return project_revision(conn, release.project_revision_id)
