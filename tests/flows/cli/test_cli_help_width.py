"""``--help`` at 80 columns names every option whole (rich's tables cut them: ``--exclude-targ…``), for every
command of the tree, rendered in-process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer._click import core as click  # typer bundles its own click: its commands are these classes
from typer.core import TyperOption

from flows.cli.app import build_command


def _commands(command: click.Command, ctx: click.Context) -> Iterator[tuple[click.Context, click.Command]]:
    """Every command under ``command`` with its context (so a usage line names the whole path)."""
    yield ctx, command
    for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
        yield from _commands(sub, sub.make_context(name, [], parent=ctx, resilient_parsing=True))


def test_help_at_80_columns_shows_every_option_name_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    root = build_command()
    checked = options = 0
    for ctx, command in _commands(root, root.make_context("ferry", [], resilient_parsing=True, terminal_width=80)):
        text = command.get_help(ctx)
        path = ctx.command_path
        assert "…" not in text, (path, text)
        for param in command.params:
            if isinstance(param, TyperOption) and not param.hidden:
                options += 1
                for name in [*param.opts, *param.secondary_opts]:
                    assert name in text.split() or f"{name}," in text, (path, name, text)
        assert max(len(line) for line in text.splitlines()) <= 80, (path, text)
        checked += 1
    assert checked > 30 and options > 100
