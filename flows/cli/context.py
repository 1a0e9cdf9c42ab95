"""What every command needs, built lazily: settings, the store, the vault and the feed."""

from __future__ import annotations

from functools import cached_property

from snapshots.crypto import Vault, load_master_key
from snapshots.feed import Feed
from snapshots.settings import Settings
from snapshots.store import Store


class Context:
    def __init__(self) -> None:
        self.settings = Settings.from_env()

    @cached_property
    def store(self) -> Store:
        return Store(self.settings.database_url)

    @cached_property
    def vault(self) -> Vault:
        return Vault(load_master_key(self.settings.key_file))

    @cached_property
    def feed(self) -> Feed:
        return Feed(self.settings.feed_dir)

    @property
    def actor(self) -> str:
        return self.settings.actor
