"""Importing this module registers every command on the app."""

from flows.cli import deploy_cmds, package_cmds, project_cmds, release_cmds

__all__ = ["deploy_cmds", "package_cmds", "project_cmds", "release_cmds"]
from flows.cli import lab_cmds, serve_cmds, target_cmds  # noqa: F401  (registers `ferry lab|serve|target`)
