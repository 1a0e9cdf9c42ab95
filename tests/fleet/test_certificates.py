"""Certificates (issue 15 item 4): read at apply (PFX or PEM, file or environment variable, password sensitive),
stored encrypted, listed with thumbprint and expiry, refused by a deployment when expired."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from snapshots import certificates
from snapshots.certificates import CertificateError, parse
from snapshots.workspace import Workspace
from tests import certs
from tests.fleet.cli import ferry, ferry_json

PASSWORD = "pfx-Pa55word/with+specials"


def _infra(root: Path, certificate_entries: list[dict]) -> Path:
    path = root / "infrastructure.yaml"
    path.write_text(yaml.safe_dump({
        "environments": [{"name": "Dev"}],
        "lifecycles": [{"name": "Default", "phases": [{"name": "Dev", "environments": ["Dev"]}]}],
        "targets": [{"name": "t1", "environment": "Dev", "roles": ["web"],
                     "transport": {"kind": "local", "root": str(root / "t1")}}],
        "certificates": certificate_entries}, sort_keys=False))
    return path


def test_pfx_and_pem_parse_with_the_windows_thumbprint() -> None:
    cert, key = certs.make("a.example.test")
    from_pfx = parse(certs.pfx(cert, key, PASSWORD), PASSWORD, name="a")
    from_pem = parse(certs.pem(cert, key, "pw"), "pw", name="a")
    assert from_pfx.info.thumbprint == from_pem.info.thumbprint == certs.thumbprint(cert)
    assert from_pfx.info.subject == "CN=a.example.test" and from_pfx.info.has_key
    assert from_pfx.key_pem == from_pem.key_pem and "PRIVATE KEY" in from_pfx.key_pem
    blob, password = from_pfx.pfx()  # what Windows receives: a PFX under a one-off password
    assert parse(blob, password, name="a").info.thumbprint == certs.thumbprint(cert)


@pytest.mark.parametrize(("data", "password", "message"), [
    ("pfx", "wrong", "the PFX cannot be opened: wrong password"),
    ("pem-encrypted", None, "the private key is encrypted: give its password"),
    ("pem-encrypted", "wrong", "cannot be decrypted"),
    ("other-key", None, "the private key does not belong to the certificate"),
    ("garbage", None, "the PFX cannot be opened"),
])
def test_unreadable_certificates_are_one_line(data: str, password: str | None, message: str) -> None:
    cert, key = certs.make()
    blob = {"pfx": certs.pfx(cert, key, PASSWORD), "pem-encrypted": certs.pem(cert, key, "right"),
            "other-key": certs.pem(cert, certs.make()[1]), "garbage": b"not a certificate"}[data]
    with pytest.raises(CertificateError, match=message) as caught:
        parse(blob, password, name="site")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("certificate 'site': ")


def test_apply_stores_the_key_encrypted_and_cert_list_shows_expiry(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    cert, key = certs.make("shop.example.test", days=20)
    (tmp_path / "site.pfx").write_bytes(certs.pfx(cert, key, PASSWORD))
    other, other_key = certs.make("api.example.test", days=400)
    env = {"SITE_PFX_PASSWORD": PASSWORD, "API_PEM": certs.pem(other, other_key).decode()}
    infra = _infra(tmp_path, [{"name": "site", "source": "site.pfx", "password": {"from_env": "SITE_PFX_PASSWORD"}},
                              {"name": "api", "source": {"from_env": "API_PEM"}}])
    assert ferry(home, "apply", str(infra), env=env).code == 0
    listed = {c["name"]: c for c in ferry_json(home, "cert", "list")}
    assert listed["site"]["thumbprint"] == certs.thumbprint(cert)
    assert listed["site"]["subject"] == "CN=shop.example.test" and listed["site"]["days_left"] in (19, 20)
    assert listed["api"]["thumbprint"] == certs.thumbprint(other) and listed["api"]["days_left"] >= 399
    table = ferry(home, "cert", "list").stdout
    assert "renew soon" in table and certs.thumbprint(cert) in table
    # nothing of a key or the password is in the store (or anywhere under FERRY_HOME) in plain text
    blobs = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    for secret in [*certs.key_lines(key), *certs.key_lines(other_key), PASSWORD,
                   base64.b64encode(PASSWORD.encode()).decode()]:
        assert secret.encode() not in blobs, secret
    # the same certificates again: no new rows; the key decrypts to what was read
    assert ferry(home, "apply", str(infra), env=env).code == 0
    ctx = _workspace(home, monkeypatch)
    with ctx.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(certificates.certificates)).scalar() == 2
        assert certificates.load(conn, ctx.vault, "site").key_pem.encode() == key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # a key rotation re-encrypts the certificates too: readable with the new key alone
    assert ferry(home, "key", "rotate").code == 0
    retired = list(home.glob("master.key.*.retired"))
    assert len(retired) == 1
    retired[0].unlink()
    ctx = _workspace(home, monkeypatch)
    with ctx.store.read() as conn:
        assert certificates.load(conn, ctx.vault, "api").info.thumbprint == certs.thumbprint(other)
        assert certificates.load(conn, ctx.vault, "site").key_pem.startswith("-----BEGIN PRIVATE KEY-----")


def test_a_deployment_refuses_an_expired_certificate_and_warns_within_30_days(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expired, key = certs.make(expired=True)
    soon, soon_key = certs.make(days=10)
    at = datetime.now(UTC)
    vault_home = tmp_path / "home"
    (tmp_path / "old.pem").write_bytes(certs.pem(expired, key))
    (tmp_path / "soon.pem").write_bytes(certs.pem(soon, soon_key))
    infra = _infra(tmp_path, [{"name": "old", "source": "old.pem"}, {"name": "soon", "source": "soon.pem"}])
    assert ferry(vault_home, "apply", str(infra)).code == 0  # an expired certificate may be kept (and listed)
    assert [c["days_left"] < 0 for c in ferry_json(vault_home, "cert", "list")] == [True, False]
    ctx = _workspace(vault_home, monkeypatch)
    with ctx.store.read() as conn:
        found, warnings = certificates.for_deployment(conn, ctx.vault, {"soon"}, at=at)
        assert found["soon"].info.thumbprint == certs.thumbprint(soon)
        assert len(warnings) == 1 and "expires on" in warnings[0] and "in 9 day(s)" in warnings[0]
        with pytest.raises(CertificateError, match=r"certificate 'old' .* expired on .*: renew it"):
            certificates.for_deployment(conn, ctx.vault, {"soon", "old"}, at=at)
        assert not certificates.for_deployment(conn, ctx.vault, {"soon"}, at=at - timedelta(days=365))[1]


def _workspace(home: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("FERRY_HOME", str(home))
    monkeypatch.delenv("FERRY_DATABASE_URL", raising=False)
    monkeypatch.delenv("FERRY_MASTER_KEY", raising=False)
    return Workspace()
