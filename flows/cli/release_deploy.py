"""``ferry release create … --deploy-to ENV… [--wait]``: Octopus's most common CI idiom. The new release goes to
each named environment in lifecycle order, one deployment after the other; each but the last is waited for (the
next one's lifecycle check needs its result), the last one too with ``--wait``; the first failure stops the rest
(exit code 1; a refusal before the first one started: 3)."""

from __future__ import annotations

from typing import Any

_created: dict[str, str] = {}


def remember(version: str) -> None:
    """The version ``release create`` just created or found (the remote path learns it from the server)."""
    _created["version"] = version


def remembered() -> str:
    return _created["version"]


def deploy_after_create(project: str, version: str, environments: list[str], wait: bool,
                        already: list[Any] | None = None) -> None:
    """Deploy ``version`` to ``environments`` in lifecycle order (``already``: started by the lifecycle's
    auto-deploy, skipped)."""
    if not environments:
        return
    from flows.cli import deploy_cmds, remote
    from flows.cli.output import say
    from flows.cli.remote import remote_client

    client = remote_client()
    if client is not None:
        order = list(client.status(project).get("environments") or [])
    else:
        from flows.engine.dashboard import dashboard
        from snapshots.workspace import Workspace

        order = list(dashboard(Workspace(), project).get("environments") or [])
    ranked = _in_order(environments, order)
    skipped = [e for e in ranked if e in (already or [])]
    for env in skipped:
        say(f"{env}: the lifecycle's auto-deploy already started {version} there")
    todo = [e for e in ranked if e not in skipped]
    for index, environment in enumerate(todo):
        wait_here = wait or index < len(todo) - 1
        if client is not None:
            launched: dict[str, Any] = client.deploy(project, version, environment)
            remote.started(client, project, launched, wait_here)  # exits 1 when it failed
        else:
            from flows.engine.request import DeployRequest
            from snapshots.workspace import Workspace

            deploy_cmds._start(Workspace(), DeployRequest(project, version, environment), wait_here)


def _in_order(environments: list[str], order: list[str]) -> list[str]:
    """``environments`` (each once) sorted by their place in the lifecycle; unknown ones last, as given (the
    deployment then refuses them in its own words)."""
    unique = list(dict.fromkeys(environments))
    rank = {env.casefold(): i for i, env in enumerate(order)}
    return sorted(unique, key=lambda env: rank.get(env.casefold(), len(order)))


def check_deploy_to(environments: list[str]) -> None:
    """Refuse an environment the infrastructure does not have before anything is created."""
    if not environments:
        return
    from flows.cli.remote import remote_client
    from snapshots.errors import ConfigError

    client = remote_client()
    if client is not None:
        known = [e["name"] for e in client.list_environments()]
    else:
        from flows.engine.inventory import environments as listed
        from snapshots.workspace import Workspace

        with Workspace().store.read() as conn:
            known = [e["name"] for e in listed(conn)]
    for env in environments:
        if env not in known:
            raise ConfigError(f"--deploy-to {env}: unknown environment (known: {', '.join(known) or 'none'})")
