"""The exit codes CI scripts can rely on, the same for every command that starts deployments (``deploy``,
``promote``, ``rollback``, ``release create --deploy-to``, ``runbook run``):

====  =====================================================================================
0     succeeded (or, without ``--wait``, started)
1     the deployment failed or was cancelled (also: any other command's error)
2     usage: an unknown option, a missing argument, a value of the wrong type
3     refused before start: nothing ran (lifecycle, an unknown release/environment/target, a freeze, a
      missing prompted variable, a tampered release, no access …)
124   ``--timeout`` passed before the deployment ended
====  =====================================================================================
"""

from __future__ import annotations

SUCCEEDED, FAILED, USAGE, REFUSED, TIMED_OUT = 0, 1, 2, 3, 124

_STARTERS = (("deploy",), ("promote",), ("rollback",), ("runbook", "run"))
_started = {"yes": False}


def started() -> None:
    """Called once a deployment has been recorded: an error after this is not a refusal."""
    _started["yes"] = True


def _words(argv: list[str]) -> list[str]:
    """The command words of ``argv`` (options and their values skipped well enough for the first two words)."""
    words: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--server":
            skip = True
        elif not arg.startswith("-"):
            words.append(arg)
    return words


def starts_deployments(argv: list[str]) -> bool:
    """Does this command line start deployments (so a refusal before it does is exit code 3)?"""
    words = _words(argv)
    if any(tuple(words[:len(s)]) == s for s in _STARTERS):
        return "--plan" not in argv
    return words[:2] == ["release", "create"] and any(a == "--deploy-to" or a.startswith("--deploy-to=")
                                                      for a in argv)


def for_error(default: int, argv: list[str]) -> int:
    """The exit code of a ferry error: 3 when a command that starts deployments was refused before any started."""
    if default == FAILED and not _started["yes"] and starts_deployments(argv):
        return REFUSED
    return default


def reset() -> None:
    """A new command line (the bad-input catalogue runs many in one process)."""
    _started["yes"] = False


def refused_or(default: int) -> int:
    """The exit code of a ferry error raised inside a command that starts deployments: 3 (refused) when none had
    started yet, else ``default``."""
    return REFUSED if default == FAILED and not _started["yes"] else default
