"""Bring a database to the newest schema with alembic, from ferry's own code (no alembic.ini needed).

Every command opens the store, so the check that the schema is current must be cheap: it reads
``alembic_version`` with one plain query and knows the head from the migration files' names (``NNNN_*.py``,
each declaring ``revision = 'NNNN'``; a test holds the two to agreeing). alembic itself (~0.2 s to import)
is loaded only when there is something to upgrade."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_NUMBERED = re.compile(r"^(\d{4})_\w+\.py$")


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str:
    """The newest migration's revision, from the file names (no alembic import)."""
    numbers = [m.group(1) for p in (MIGRATIONS / "versions").iterdir() if (m := _NUMBERED.match(p.name))]
    return max(numbers)


def alembic_head() -> str | None:
    """The head as alembic itself finds it (parsing every migration): for the test that keeps the two equal."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> None:
    """Run pending migrations; a database already at head costs one small query."""
    with engine.connect() as conn:
        current = current_revision(conn)
    if current == head_revision():
        return
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
