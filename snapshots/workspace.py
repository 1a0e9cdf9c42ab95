"""The executor's workspace, built lazily: settings, the store, the vault (master key) and the feed.

The CLI, the flows and ``ferry serve`` all open one; only the executor holds what it opens."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from snapshots.settings import Settings

if TYPE_CHECKING:
    from snapshots.store import Store
    from snapshots.store.crypto import Vault
    from snapshots.store.feed import Feed


class Workspace:
    """Settings from the environment; the store, vault and feed opened on first use."""

    def __init__(self) -> None:
        self.settings = Settings.from_env()

    @cached_property
    def store(self) -> Store:
        from snapshots.store import Store  # imported on first use: SQLAlchemy costs ~0.5 s, and the CLI in
        # remote mode (FERRY_SERVER) never opens the store
        self.settings.ensure_home()
        return Store(self.settings.database_url)

    @cached_property
    def vault(self) -> Vault:
        """The master key, checked against the store's fingerprint (a wrong or missing key is refused before
        anything is written; a key is generated only for an empty store)."""
        from snapshots.keys import open_vault

        self.settings.ensure_home()
        return open_vault(self.store, self.settings.key_file, self.actor)

    @cached_property
    def feed(self) -> Feed:
        from snapshots.store.feed import Feed

        self.settings.ensure_home()
        return Feed(self.settings.feed_dir)

    @property
    def actor(self) -> str:
        return self.settings.actor
