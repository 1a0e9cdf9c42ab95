"""Where ferry keeps its state, read from the environment once per command."""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """FERRY_HOME, the store URL, and who is acting (for the audit log)."""

    home: Path
    database_url: str
    actor: str
    feed: Path | None = None
    """``FERRY_FEED_DIR``: machines that push packages (CI) and machines that deploy them (``ferry serve``,
    workers) must see the same feed directory, e.g. mounted from shared storage."""

    @property
    def feed_dir(self) -> Path:
        return self.feed or self.home / "feed"

    @property
    def key_file(self) -> Path:
        return self.home / "master.key"

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("FERRY_HOME") or Path.home() / ".ferry").expanduser()
        url = os.environ.get("FERRY_DATABASE_URL") or f"sqlite:///{home / 'ferry.db'}"
        actor = os.environ.get("FERRY_USER") or _login_name()
        feed = Path(os.environ["FERRY_FEED_DIR"]).expanduser() if os.environ.get("FERRY_FEED_DIR") else None
        return cls(home=home, database_url=url, actor=actor, feed=feed)


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
