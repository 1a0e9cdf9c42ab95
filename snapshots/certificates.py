"""Certificates (issue 15 item 4): read from PFX or PEM at ``ferry apply``, kept encrypted in the store, handed
decrypted (in memory only) to the steps that deploy them.

Why a table of its own and not the infrastructure document: the document is the YAML's meaning (a path and a
password *reference*), while the certificate is bytes read at apply time — like a sensitive variable's value.
Its chain and private key are stored as PEM inside one Fernet ciphertext under the master key; the thumbprint
(SHA-1 of the DER certificate, as Windows shows it), subject and validity stay readable for ``ferry cert list``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    insert,
    select,
)

from snapshots.errors import CertificateError
from snapshots.model.common import FromEnv, FromFile
from snapshots.store import now
from snapshots.store.crypto import Vault
from snapshots.store.tables import metadata

__all__ = ["Certificate", "CertificateError", "CertificateInfo", "for_deployment", "listing", "load", "parse",
           "read_source", "referenced", "store"]

WARN_WITHIN = timedelta(days=30)
"""A deployment warns about a certificate that expires this soon, and refuses one that has expired."""

certificates = Table(
    "certificates", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("thumbprint", String(40), nullable=False),
    Column("subject", Text, nullable=False),
    Column("issuer", Text, nullable=False),
    Column("not_before", String(32), nullable=False),
    Column("not_after", String(32), nullable=False),
    Column("has_key", Boolean, nullable=False),
    Column("ciphertext", Text, nullable=False),
    Column("created_at", String(32), nullable=False),
    Column("created_by", String(200), nullable=False),
    Index("ix_certificates_name", "name"),
)


@dataclass(frozen=True)
class CertificateInfo:
    """What may be shown about a certificate: no key material."""

    name: str
    thumbprint: str
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    has_key: bool

    def days_left(self, at: datetime | None = None) -> int:
        return (self.not_after - (at or datetime.now(UTC))).days

    def expired(self, at: datetime | None = None) -> bool:
        return self.not_after <= (at or datetime.now(UTC))

    def as_dict(self, at: datetime | None = None) -> dict[str, Any]:
        return {"name": self.name, "subject": self.subject, "issuer": self.issuer, "thumbprint": self.thumbprint,
                "not_before": _iso(self.not_before), "not_after": _iso(self.not_after),
                "days_left": self.days_left(at), "has_private_key": self.has_key}


@dataclass(frozen=True)
class Certificate:
    """A certificate with its private key, decrypted: lives in the executor's memory during a deployment."""

    info: CertificateInfo
    chain_pem: str
    """The certificate first, then any intermediates, PEM."""
    key_pem: str
    """The private key, unencrypted PKCS#8 PEM ("" when the certificate came without one)."""

    def pfx(self) -> tuple[bytes, str]:
        """A PKCS#12 blob under a fresh random password, for Windows' X509Certificate2 import: the password
        exists only for this transfer (it is masked like the key)."""
        password = secrets.token_urlsafe(24)
        chain = x509.load_pem_x509_certificates(self.chain_pem.encode())
        key = serialization.load_pem_private_key(self.key_pem.encode(), None) if self.key_pem else None
        blob = pkcs12.serialize_key_and_certificates(
            self.info.name.encode(), key, chain[0], chain[1:] or None,  # type: ignore[arg-type]  # rsa/ec only
            serialization.BestAvailableEncryption(password.encode()))
        return blob, password

    def secrets(self) -> list[str]:
        """Values a log must never show: the key PEM and each of its lines (a script may print one)."""
        if not self.key_pem:
            return []
        lines = [line for line in self.key_pem.splitlines() if len(line) >= 16 and not line.startswith("-----")]
        return [self.key_pem, self.key_pem.strip(), *lines]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the DER encoding, upper-case hex: what Windows and IIS call the thumbprint."""
    return cert.fingerprint(hashes.SHA1()).hex().upper()


def parse(data: bytes, password: str | None, *, name: str) -> Certificate:
    """PEM (certificate(s) and an optionally encrypted private key) or PFX/PKCS#12 bytes → a Certificate.
    Every failure is one line naming the certificate."""
    pw = password.encode() if password else None
    if b"-----BEGIN" in data:
        try:
            chain = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise CertificateError(f"certificate {name!r}: the PEM holds no readable certificate") from None
        key: Any = None
        if b"PRIVATE KEY-----" in data:
            try:
                key = serialization.load_pem_private_key(data, pw)
            except TypeError as exc:  # encrypted but no password, or a password for a plain key
                raise CertificateError(f"certificate {name!r}: {_key_password_message(exc, password)}") from None
            except ValueError:
                raise CertificateError(f"certificate {name!r}: the private key cannot be decrypted "
                                       "(wrong password?) or is damaged") from None
    else:
        try:
            key, leaf, extra = pkcs12.load_key_and_certificates(data, pw)
        except ValueError:
            raise CertificateError(f"certificate {name!r}: the PFX cannot be opened: wrong password, "
                                   "or not a PFX/PEM file") from None
        if leaf is None:
            raise CertificateError(f"certificate {name!r}: the PFX holds no certificate")
        chain = [leaf, *extra]
    leaf = chain[0]
    if key is not None:
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise CertificateError(f"certificate {name!r}: only RSA and EC private keys are supported")
        if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
                != leaf.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo):
            raise CertificateError(f"certificate {name!r}: the private key does not belong to the certificate")
    info = CertificateInfo(name=name, thumbprint=thumbprint(leaf), subject=leaf.subject.rfc4514_string(),
                           issuer=leaf.issuer.rfc4514_string(), not_before=leaf.not_valid_before_utc,
                           not_after=leaf.not_valid_after_utc, has_key=key is not None)
    chain_pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode() if key is not None else ""
    return Certificate(info, chain_pem, key_pem)


def _key_password_message(exc: TypeError, password: str | None) -> str:
    if password:
        return "a password is given but the private key is not encrypted"
    return "the private key is encrypted: give its password (password: {from_env: VAR})"


def read_source(source: str | FromEnv, password: FromEnv | FromFile | None, *, name: str, base: Path
                ) -> tuple[bytes, str | None]:
    """The certificate's bytes and password as ``ferry apply`` sees them. An environment variable holds PEM
    text or a base64 PFX."""
    if isinstance(source, FromEnv):
        if source.from_env not in os.environ:
            raise CertificateError(f"certificate {name!r}: environment variable {source.from_env} is not set")
        text = os.environ[source.from_env]
        if "-----BEGIN" in text:
            data = text.encode()
        else:
            try:
                data = base64.b64decode(text.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise CertificateError(f"certificate {name!r}: {source.from_env} holds neither PEM text nor a "
                                       "base64 PFX") from None
    else:
        path = base / Path(source).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CertificateError(f"certificate {name!r}: cannot read {path}: {exc.strerror}") from None
    secret: str | None = None
    if isinstance(password, FromEnv):
        if password.from_env not in os.environ:
            raise CertificateError(f"certificate {name!r}: environment variable {password.from_env} "
                                   "(its password) is not set")
        secret = os.environ[password.from_env]
    elif isinstance(password, FromFile):
        path = base / Path(password.from_file).expanduser()
        try:
            secret = path.read_text(encoding="utf-8").rstrip("\n")
        except OSError as exc:
            raise CertificateError(f"certificate {name!r}: cannot read its password file {path}: "
                                   f"{exc.strerror}") from None
    return data, secret


# ------------------------------------------------------------------------------------------------ the store

def store(conn: Connection, vault: Vault, cert: Certificate, actor: str) -> bool:
    """Keep ``cert`` under its name unless the newest row of that name already holds the same certificate and
    key. Returns True when a row was added."""
    latest = _latest_row(conn, cert.info.name)
    if latest is not None and latest.thumbprint == cert.info.thumbprint:
        held = _decrypt(vault, latest.ciphertext)
        if held.get("key") == cert.key_pem and held.get("chain") == cert.chain_pem:
            return False
    info = cert.info
    conn.execute(insert(certificates).values(
        name=info.name, thumbprint=info.thumbprint, subject=info.subject, issuer=info.issuer,
        not_before=_iso(info.not_before), not_after=_iso(info.not_after), has_key=info.has_key,
        ciphertext=vault.encrypt(json.dumps({"chain": cert.chain_pem, "key": cert.key_pem})),
        created_at=now(), created_by=actor))
    return True


def _decrypt(vault: Vault, ciphertext: str) -> dict[str, str]:
    data = json.loads(vault.decrypt(ciphertext))
    return data if isinstance(data, dict) else {}


def _latest_row(conn: Connection, name: str) -> Any:
    return conn.execute(select(certificates).where(certificates.c.name == name)
                        .order_by(certificates.c.id.desc()).limit(1)).first()


def _info(row: Any) -> CertificateInfo:
    return CertificateInfo(name=row.name, thumbprint=row.thumbprint, subject=row.subject, issuer=row.issuer,
                           not_before=_parse_iso(row.not_before), not_after=_parse_iso(row.not_after),
                           has_key=bool(row.has_key))


def listing(conn: Connection, names: list[str]) -> list[CertificateInfo]:
    """The stored form of each named certificate (those of the applied infrastructure), no key material."""
    found = []
    for name in names:
        row = _latest_row(conn, name)
        if row is not None:
            found.append(_info(row))
    return found


def load(conn: Connection, vault: Vault, name: str) -> Certificate:
    row = _latest_row(conn, name)
    if row is None:
        raise CertificateError(f"certificate {name!r} is not in the store (ferry apply the infrastructure "
                               "that declares it)")
    data = _decrypt(vault, row.ciphertext)
    return Certificate(_info(row), data.get("chain", ""), data.get("key", ""))


def for_deployment(conn: Connection, vault: Vault, names: set[str], *, at: datetime | None = None
                   ) -> tuple[dict[str, Certificate], list[str]]:
    """The certificates a deployment's steps name, decrypted, and warnings for those expiring within 30 days.
    An expired one is refused before any target is touched."""
    moment = at or datetime.now(UTC)
    found: dict[str, Certificate] = {}
    warnings: list[str] = []
    for name in sorted(names):
        cert = load(conn, vault, name)
        info = cert.info
        if info.expired(moment):
            raise CertificateError(f"certificate {name!r} ({info.subject}, thumbprint {info.thumbprint}) expired "
                                   f"on {_iso(info.not_after)}: renew it and ferry apply the infrastructure")
        if info.not_after - moment <= WARN_WITHIN:
            warnings.append(f"certificate {name!r} ({info.subject}) expires on {_iso(info.not_after)}, in "
                            f"{info.days_left(moment)} day(s)")
        found[name] = cert
    return found, warnings


def referenced(process: list[Any]) -> set[str]:
    """Names of the certificates a release's steps deploy: package ``certificates[].name`` and iis-website
    ``site.bindings[].certificate`` (works on models and on the snapshot's plain dicts)."""
    names: set[str] = set()

    def get(obj: Any, key: str) -> Any:
        return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

    def visit(step: Any) -> None:
        for entry in get(step, "certificates") or []:
            if get(entry, "name"):
                names.add(get(entry, "name"))
        site = get(step, "site")
        for binding in (get(site, "bindings") or []) if site is not None else []:
            if get(binding, "certificate"):
                names.add(get(binding, "certificate"))
        for child in get(step, "steps") or []:
            visit(child)

    for item in process:
        visit(item)
    return names
