"""Sensitive values at rest: Fernet encryption under a master key, keyed fingerprints, and the executor's
signing key — every key derived from the one master key with its own purpose label (HKDF).

The value fingerprint (HMAC-SHA256 under a derived key) lets ferry tell whether a secret changed — so
``apply`` stores a new revision only when content changed — without keeping the plain text and without the
random IV of Fernet making every ciphertext look new. The *key* fingerprint (HMAC of a fixed label) names a
master key in the store without revealing it, so a command run with another key is refused before it writes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from snapshots.errors import MasterKeyError

KEY_CHECK_LABEL = b"ferry master key check v1"
RETIRED_SUFFIX = ".retired"


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"ferry " + purpose).derive(master)


def key_fingerprint(master_key: bytes) -> str:
    """The name of a master key in the store: HMAC-SHA256 of a fixed label under a key derived from it."""
    return hmac.new(_derive(master_key, b"key check"), KEY_CHECK_LABEL, hashlib.sha256).hexdigest()


def short(fingerprint: str) -> str:
    """The fingerprint as people see it (16 hex digits, like a short commit id)."""
    return fingerprint[:16]


class Vault:
    """Encrypts, decrypts, fingerprints and signs with keys derived from one master key.

    ``retired``: master keys rotated away. Values they encrypted stay readable and rows they signed stay
    verifiable; nothing new is ever encrypted or signed with them."""

    def __init__(self, master_key: bytes, retired: Iterable[bytes] = ()) -> None:
        if len(master_key) != 32:
            raise MasterKeyError("the master key must be 32 bytes (urlsafe base64, as `ferry` generates)")
        self._master = master_key
        self.key_id = key_fingerprint(master_key)
        self._fernet = Fernet(base64.urlsafe_b64encode(_derive(master_key, b"encryption")))
        old = [k for k in retired if len(k) == 32 and k != master_key]
        self._readers = MultiFernet([self._fernet, *(Fernet(base64.urlsafe_b64encode(_derive(k, b"encryption")))
                                                     for k in old)])
        self._mac_key = _derive(master_key, b"fingerprint")
        self._signing = {key_fingerprint(k): _derive(k, b"signing") for k in [master_key, *old]}

    def encrypt(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._readers.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:
            raise MasterKeyError("cannot decrypt a sensitive value: wrong FERRY_MASTER_KEY or corrupted data") from exc

    def can_decrypt(self, token: str) -> bool:
        """Whether this key (not a retired one) encrypted ``token``."""
        try:
            self._fernet.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            return False
        return True

    def fingerprint(self, plain: str) -> str:
        return hmac.new(self._mac_key, plain.encode("utf-8"), hashlib.sha256).hexdigest()

    def sign(self, message: bytes) -> str:
        """HMAC-SHA256 under the current key's signing key."""
        return hmac.new(self._signing[self.key_id], message, hashlib.sha256).hexdigest()

    def signing_keys(self) -> list[str]:
        """Fingerprints of the keys this vault can verify signatures of (current first)."""
        return list(self._signing)

    def check_signature(self, key_id: str, message: bytes, signature: str) -> bool | None:
        """True/False, or None when this vault does not hold the key ``key_id`` signed with."""
        key = self._signing.get(key_id)
        if key is None:
            return None
        return hmac.compare_digest(hmac.new(key, message, hashlib.sha256).hexdigest(), signature)

    def with_retired(self, retired: Iterable[bytes]) -> Vault:
        return Vault(self._master, retired)


@dataclass(frozen=True)
class MasterKey:
    """A master key and where it came from (for messages that name the right thing to fix)."""

    key: bytes
    source: str  # "FERRY_MASTER_KEY" or the key file's path

    @property
    def from_env(self) -> bool:
        return self.source == "FERRY_MASTER_KEY"


def parse_master_key(text: str, source: str = "FERRY_MASTER_KEY") -> bytes:
    what = source if source == "FERRY_MASTER_KEY" else f"the master key file {source}"
    try:
        key = base64.b64decode(text.strip().encode("ascii"), altchars=b"-_", validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise MasterKeyError(f"{what} is malformed: not urlsafe base64") from exc
    if len(key) != 32:
        raise MasterKeyError(f"{what} is malformed: it must decode to 32 bytes, not {len(key)}")
    return key


def read_master_key(key_file: Path) -> MasterKey | None:
    """FERRY_MASTER_KEY if set, else the key file; None when there is neither (never generates one)."""
    env = os.environ.get("FERRY_MASTER_KEY")
    if env:
        return MasterKey(parse_master_key(env), "FERRY_MASTER_KEY")
    try:
        raw = key_file.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MasterKeyError(f"cannot read the master key file {key_file}: {exc.strerror}") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise MasterKeyError(f"the master key file {key_file} is malformed: not urlsafe base64") from None
    return MasterKey(parse_master_key(text, str(key_file)), str(key_file))


def write_key_file(path: Path, key: bytes, *, exclusive: bool) -> None:
    """Write a key file 0600 (in a 0700 directory), atomically: it appears complete or not at all."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = base64.urlsafe_b64encode(key).decode("ascii") + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)  # fails with FileExistsError when another process created it first
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: create it in place, exclusively
                _write_exclusive(path, text)
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_exclusive(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def generate_master_key() -> bytes:
    return os.urandom(32)


def retired_key_files(key_file: Path) -> list[Path]:
    return sorted(key_file.parent.glob(f"{key_file.name}.*{RETIRED_SUFFIX}"))


def read_retired_keys(key_file: Path) -> list[bytes]:
    """Keys rotated away, kept beside the key file as ``master.key.<fingerprint>.retired`` until deleted."""
    keys = []
    for path in retired_key_files(key_file):
        try:
            keys.append(parse_master_key(path.read_text(encoding="ascii"), str(path)))
        except (OSError, UnicodeDecodeError):
            raise MasterKeyError(f"the retired key file {path} is malformed or unreadable") from None
    return keys
