"""Checks of a project's channels that span fields or files (``ferry apply``): one default at most, unique
names, rules naming the project's packages, triggers naming a channel that exists, a channel's lifecycle
in the infrastructure. Each problem is (path, message); ``snapshots.model.references`` makes them Problems."""

from __future__ import annotations

from typing import TYPE_CHECKING

from snapshots.model.project import DeployLatestTrigger, PromoteTrigger, ReleaseOnPushTrigger

if TYPE_CHECKING:
    from snapshots.model.infrastructure import Infrastructure
    from snapshots.model.project import Project

Found = tuple[tuple[str | int, ...], str]


def channel_problems(project: Project, infra: Infrastructure | None) -> list[Found]:
    problems: list[Found] = []
    seen: dict[str, int] = {}
    default_at: int | None = None
    packages = set(project.packages)
    for i, channel in enumerate(project.channels):
        folded = channel.name.casefold()
        if folded in seen:
            problems.append((("channels", i, "name"),
                             f"duplicate channel name {channel.name!r} (also channels[{seen[folded]}])"))
        seen.setdefault(folded, i)
        if channel.default:
            if default_at is not None:
                problems.append((("channels", i, "default"),
                                 f"two default channels: {project.channels[default_at].name!r} and "
                                 f"{channel.name!r} (only one may be default: true)"))
            else:
                default_at = i
        for j, rule in enumerate(channel.rules):
            for k, package in enumerate(rule.packages):
                if package not in packages:
                    known = ", ".join(sorted(packages)) or "none"
                    problems.append((("channels", i, "rules", j, "packages", k),
                                     f"package {package!r} is not in the project's packages ({known})"))
        if infra is not None and channel.lifecycle is not None and infra.lifecycle(channel.lifecycle) is None:
            known = ", ".join(sorted(lc.name for lc in infra.lifecycles)) or "none"
            problems.append((("channels", i, "lifecycle"),
                             f"unknown lifecycle {channel.lifecycle!r} (known: {known})"))
    listed = [c.name for c in project.channels]
    if not any(c.default for c in project.channels) and "default" not in seen:
        listed.insert(0, "Default")  # the implicit default channel
    names = {n.casefold() for n in listed}
    for i, trigger in enumerate(project.triggers):
        wanted = trigger.channel if isinstance(trigger, DeployLatestTrigger | PromoteTrigger
                                                 | ReleaseOnPushTrigger) else None
        if wanted is not None and wanted.casefold() not in names:
            problems.append((("triggers", i, "channel"),
                             f"unknown channel {wanted!r} (channels: {', '.join(listed)})"))
    return problems
