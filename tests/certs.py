"""Test certificates made with ``cryptography``: self-signed, valid or expired, as PFX or PEM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID


def make(common_name: str = "shop.example.test", *, days: int = 365, expired: bool = False
         ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = datetime.now(UTC) - timedelta(days=(days + 10) if expired else 1)
    end = datetime.now(UTC) - timedelta(days=1) if expired else datetime.now(UTC) + timedelta(days=days)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def pfx(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, password: str) -> bytes:
    return pkcs12.serialize_key_and_certificates(b"test", key, cert, None,
                                                 serialization.BestAvailableEncryption(password.encode()))


def pem(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, password: str | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption())
    return (cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))


def key_lines(key: ec.EllipticCurvePrivateKey) -> list[str]:
    """The base64 lines of the key's unencrypted PKCS#8 PEM: what must never be found in plain text."""
    text = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
    return [line for line in text.splitlines() if not line.startswith("-----")]


def thumbprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA1()).hex().upper()
