"""The executor's workspace, built lazily: settings, the store, the vault (master key) and the feed.

The CLI, the flows and ``ferry serve`` all open one; only the executor holds what it opens."""

from __future__ import annotations

from dataclasses import replace
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

    @property
    def vault(self) -> Vault:
        """The master key, checked against the store's fingerprint (a wrong or missing key is refused before
        anything is written; a key is generated only for an empty store). A long-lived workspace (``ferry
        serve``) re-checks it on each use, one small query, so a ``ferry key rotate`` meanwhile is followed
        rather than signing and encrypting under the retired key."""
        from snapshots.keys import is_current, open_vault

        cached: Vault | None = self.__dict__.get("_vault")
        if cached is not None and is_current(self.store, cached):
            return cached
        self.settings.ensure_home()
        self.__dict__["_vault"] = vault = open_vault(self.store, self.settings.key_file, self.actor)
        return vault

    @cached_property
    def feed(self) -> Feed:
        from snapshots.store.feed import Feed

        self.settings.ensure_home()
        return Feed(self.settings.feed_dir)

    @property
    def actor(self) -> str:
        return self.settings.actor

    def acting_as(self, actor: str | None) -> Workspace:
        """This workspace seen as another requester (``key:<name>``): the same store, vault and feed, opened
        once and shared, with ``actor`` — what every record it writes names — set to the requester."""
        if actor is None or actor == self.actor:
            return self
        self.store, self.feed  # noqa: B018 - opened here so the copy shares them instead of opening its own
        other = Workspace.__new__(Workspace)
        other.__dict__.update(self.__dict__)
        other.settings = replace(self.settings, actor=actor)
        return other
