"""Feed credentials at rest: ``ferry apply`` reads each ``{from_env}``/``{from_file}`` reference of the
infrastructure's ``feeds:`` once and stores the value encrypted with the master key (ciphertext + keyed
fingerprint, as sensitive variables are); the executor decrypts it only when the feed is used. The content digest
leaves ciphertexts out, so applying the same YAML twice is still "no change"."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from snapshots.errors import ConfigError, FeedError, MasterKeyError
from snapshots.model.common import FromEnv, FromFile
from snapshots.model.feeds import StoredSecret
from snapshots.model.yamlfile import YamlDocument
from snapshots.store.crypto import Vault

FIELDS = ("password", "access_key_id", "secret_access_key")


def _read(ref: FromEnv | FromFile, base: Path) -> str | None:
    if isinstance(ref, FromEnv):
        return os.environ.get(ref.from_env)
    try:
        return (base / Path(ref.from_file).expanduser()).read_text(encoding="utf-8").rstrip("\n")
    except OSError:
        return None


def seal(model: Any, doc: YamlDocument, vault: Vault) -> Any:
    """The infrastructure model with every feed credential reference replaced by its encrypted value; a reference
    that cannot be read is refused in one line naming the file, line and field (nothing is stored)."""
    feeds = []
    base = Path(doc.file).parent
    for index, feed in enumerate(model.feeds):
        update: dict[str, StoredSecret] = {}
        for name in FIELDS:
            ref = getattr(feed, name, None)
            if not isinstance(ref, FromEnv | FromFile):
                continue
            value = _read(ref, base)
            if value is None:
                line, path = doc.locate(("feeds", index, name))
                what = (f"environment variable {ref.from_env} is not set" if isinstance(ref, FromEnv)
                        else f"cannot read {ref.from_file}")
                raise ConfigError(f"{what} (feed {feed.name!r})", file=doc.file, line=line, path=path)
            update[name] = StoredSecret(ciphertext=vault.encrypt(value), fingerprint=vault.fingerprint(value))
        feeds.append(feed.model_copy(update=update) if update else feed)
    return model.model_copy(update={"feeds": feeds}) if model.feeds else model


def without_ciphertexts(document: dict[str, Any]) -> dict[str, Any]:
    """The part of a stored infrastructure document its content digest covers."""
    if not document.get("feeds"):
        return document
    feeds = [{k: ({"fingerprint": v["fingerprint"]} if isinstance(v, dict) and "ciphertext" in v else v)
              for k, v in feed.items()} for feed in document["feeds"]]
    return {**document, "feeds": feeds}


def reveal(credential: Any, vault: Vault | None, what: str) -> str | None:
    """A credential's value on the executor: decrypted, or (an unsealed reference) read now."""
    if credential is None:
        return None
    if isinstance(credential, StoredSecret):
        if vault is None:
            raise FeedError(f"{what}: its credentials are encrypted and this process has no master key")
        try:
            return vault.decrypt(credential.ciphertext)
        except MasterKeyError:
            raise FeedError(f"{what}: cannot decrypt its stored credential (was the master key rotated?)") from None
    if isinstance(credential, FromEnv):
        if credential.from_env not in os.environ:
            raise FeedError(f"{what}: environment variable {credential.from_env} is not set")
        return os.environ[credential.from_env]
    if isinstance(credential, FromFile):
        value = _read(credential, Path.cwd())
        if value is None:
            raise FeedError(f"{what}: cannot read {credential.from_file}")
        return value
    raise FeedError(f"{what}: unsupported credential")
