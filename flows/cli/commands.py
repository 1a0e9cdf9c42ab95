"""Importing this module registers every command on the app."""

from flows.cli import package_cmds, project_cmds, release_cmds

__all__ = ["package_cmds", "project_cmds", "release_cmds"]
