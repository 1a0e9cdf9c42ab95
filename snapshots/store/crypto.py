"""Sensitive values at rest: Fernet encryption under a master key, plus a keyed fingerprint.

The fingerprint (HMAC-SHA256 under a key derived from the master key) lets ferry tell whether a secret
changed — so ``apply`` stores a new revision only when content changed — without keeping the plain text
and without the random IV of Fernet making every ciphertext look new.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from snapshots.errors import MasterKeyError


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"ferry " + purpose).derive(master)


class Vault:
    """Encrypts, decrypts and fingerprints sensitive values with keys derived from one master key."""

    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise MasterKeyError("the master key must be 32 bytes (urlsafe base64, as `ferry` generates)")
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(master_key, b"encryption")))
        self._mac_key = _derive(master_key, b"fingerprint")

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:
            raise MasterKeyError("cannot decrypt a sensitive value: wrong FERRY_MASTER_KEY or corrupted data") from exc

    def fingerprint(self, plain: str) -> str:
        return hmac.new(self._mac_key, plain.encode("utf-8"), hashlib.sha256).hexdigest()


def parse_master_key(text: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise MasterKeyError("FERRY_MASTER_KEY is not urlsafe base64") from exc
    if len(key) != 32:
        raise MasterKeyError("FERRY_MASTER_KEY must decode to 32 bytes")
    return key


def load_master_key(key_file: Path) -> bytes:
    """FERRY_MASTER_KEY if set, else the 0600 key file, created on first use."""
    env = os.environ.get("FERRY_MASTER_KEY")
    if env:
        return parse_master_key(env)
    try:
        return parse_master_key(key_file.read_text())
    except FileNotFoundError:
        pass
    key_file.parent.mkdir(parents=True, exist_ok=True)
    text = base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return parse_master_key(key_file.read_text())
    with os.fdopen(fd, "w") as fh:
        fh.write(text + "\n")
    return parse_master_key(text)
