"""Channels at work: which channel a name means, whether package versions satisfy its rules, which feed
version a release in it gets, and which releases belong to it (so ``latest``, promotion and triggers stay
inside one channel).

A release records its channel in its signed snapshot (``"channel"``); a release frozen before channels
existed has none and belongs to the project's default channel.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import semver
from sqlalchemy import Connection, select

from snapshots.errors import ChannelRuleError, NotFoundError
from snapshots.model.channels import DEFAULT_CHANNEL, Channel, ChannelRule, implicit_default
from snapshots.model.project import Project
from snapshots.store import records
from snapshots.store.records import Deployment
from snapshots.store.tables import releases
from snapshots.version_ranges import parse_range
from snapshots.versions import latest, sort_key


def all_channels(project: Project) -> list[Channel]:
    """The project's channels, the default one first (the implicit 'Default' when none is marked default and
    none is so named)."""
    marked = next((c for c in project.channels if c.default), None)
    if marked is None:
        marked = next((c for c in project.channels if c.name.casefold() == DEFAULT_CHANNEL.casefold()), None)
    if marked is None:
        return [implicit_default(project.lifecycle), *project.channels]
    return [marked, *(c for c in project.channels if c is not marked)]


def default_channel(project: Project) -> Channel:
    return all_channels(project)[0]


def find_channel(project: Project, name: str | None) -> Channel:
    """The channel called ``name`` (any case); the default channel for None."""
    channels = all_channels(project)
    if name is None:
        return channels[0]
    found = next((c for c in channels if c.name.casefold() == name.strip().casefold()), None)
    if found is None:
        raise NotFoundError(f"project {project.name} has no channel {name!r} "
                            f"(its channels: {', '.join(c.name for c in channels)})")
    return found


def lifecycle_of(project: Project, channel: Channel) -> str:
    """The lifecycle a channel's releases progress through."""
    return channel.lifecycle or project.lifecycle


def _tag(version: str) -> str:
    return semver.Version.parse(version).prerelease or ""


def rules_for(channel: Channel, package_id: str) -> list[ChannelRule]:
    return [r for r in channel.rules if not r.packages or package_id in r.packages]


def broken_rule(channel: Channel, package_id: str, version: str) -> ChannelRule | None:
    """The first of the channel's rules for this package that ``version`` does not satisfy (None: allowed)."""
    for rule in rules_for(channel, package_id):
        if rule.version_range is not None and not parse_range(rule.version_range).contains(version):
            return rule
        if rule.tag is not None and re.search(rule.tag, _tag(version)) is None:
            return rule
    return None


def allows(channel: Channel, package_id: str, version: str) -> bool:
    return broken_rule(channel, package_id, version) is None


def check_version(channel: Channel, package_id: str, version: str) -> None:
    """Raise ChannelRuleError (one line naming the package, version and rule) unless the version is allowed."""
    rule = broken_rule(channel, package_id, version)
    if rule is not None:
        tag = _tag(version)
        why = f" (pre-release tag {tag!r})" if rule.tag is not None and rule.version_range is None else ""
        raise ChannelRuleError(f"package {package_id} {version} does not satisfy channel {channel.name!r}: "
                               f"rule {rule.describe()}{why}")


def pick_version(channel: Channel, package_id: str, versions: Iterable[str]) -> str | None:
    """The feed version a release in this channel gets when none is named: the newest the rules allow,
    stable before pre-release unless a rule for the package constrains the tag (then the newest it allows)."""
    allowed = [v for v in versions if allows(channel, package_id, v)]
    if any(r.tag is not None for r in rules_for(channel, package_id)):
        return latest(allowed)
    return latest(allowed, stable_only=True) or latest(allowed)


def channel_for_push(project: Project, package_id: str, version: str, wanted: str | None) -> Channel:
    """The channel a release created by a push of ``package_id`` ``version`` goes into: the named one (its rules
    must accept the version), else the first — default first — whose rules accept it."""
    if wanted is not None:
        channel = find_channel(project, wanted)
        check_version(channel, package_id, version)
        return channel
    for channel in all_channels(project):
        if allows(channel, package_id, version):
            return channel
    raise ChannelRuleError(f"package {package_id} {version} satisfies the rules of none of {project.name}'s channels "
                           f"({', '.join(c.name for c in all_channels(project))})")


def channel_of(snapshot: dict[str, object], project: Project | None) -> str:
    """The channel a release belongs to: the one its snapshot records, else the project's default."""
    recorded = snapshot.get("channel")
    if isinstance(recorded, str):
        return recorded
    return default_channel(project).name if project is not None else DEFAULT_CHANNEL


def release_channels(conn: Connection, project: Project) -> dict[str, str]:
    """{release version: channel} for every release of the project (read from the signed snapshots)."""
    rows = conn.execute(select(releases.c.version, releases.c.snapshot).where(releases.c.project == project.name))
    out = {}
    for version, text in rows:
        try:
            snapshot = json.loads(text)
        except json.JSONDecodeError:  # a tampered row: reported where the release is loaded, not here
            snapshot = {}
        out[version] = channel_of(snapshot, project)
    return out


def latest_in_channel(conn: Connection, project: Project, channel: Channel) -> str | None:
    """The highest release version (SemVer precedence) in the channel."""
    mine = [v for v, c in release_channels(conn, project).items() if c.casefold() == channel.name.casefold()]
    return max(mine, key=sort_key, default=None)


def last_successful_in(conn: Connection, project: Project, environment: str, channel: Channel) -> Deployment | None:
    """The newest successful deployment to ``environment`` of a release in ``channel``: what ``promote`` (and a
    promote trigger) takes, so a pre-release of another channel is never promoted in this one's name."""
    lanes = release_channels(conn, project)
    for deployment in records.list_deployments(conn, project.name, environment, limit=100_000):
        if deployment.state == records.SUCCESS and \
                lanes.get(deployment.version, "").casefold() == channel.name.casefold():
            return deployment
    return None
