"""Printing for people (rich tables) and for programs (``--json``)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table


def _width() -> int | None:
    """Rich assumes 80 columns off a terminal; logs and CI read better wider."""
    return None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160


console = Console(highlight=False, soft_wrap=True, width=_width())


def fit_width() -> None:
    """Take the width from the environment as it is now, once per command line: rich reads COLUMNS only when the
    console is made, and a process that runs several command lines (the tests' in-process runner) must not
    keep the first one's width."""
    columns = os.environ.get("COLUMNS", "")
    width = int(columns) if columns.isdigit() else _width()
    if width is not None:
        console.width = width
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


SCHEMA = "ferry/v1"
"""The version of every ``--json`` document: a mapping's first key is ``"schema": "ferry/v1"``."""


json_sink: list[Callable[[dict[str, Any]], None]] = []
"""While a command builds one document from several parts (``--json`` of the commands that start deployments,
``flows.cli.json_result``), ``print_json`` hands its mapping to the innermost sink instead of printing it."""


def envelope(data: Any) -> dict[str, Any]:
    """The one rule for every ``--json`` document: a mapping whose first key is ``"schema": "ferry/v1"``; a list
    (every ``… list --json``) is the mapping's ``items``."""
    if isinstance(data, list | tuple):
        data = {"items": list(data)}
    return {"schema": SCHEMA, **{k: v for k, v in dict(data).items() if k != "schema"}}


def print_json(data: Any) -> None:
    doc = envelope(data)
    if json_sink:
        json_sink[-1](doc)
        return
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console.print(table)


def say(message: str) -> None:
    console.print(message, markup=False)
