"""The master key is checked against the store (wrong, missing, malformed, retired keys are one line and write
nothing; a key is generated only for an empty store) and `ferry key rotate` re-encrypts under a new key —
all through the real `ferry` command on a real SQLite store."""

from __future__ import annotations

import base64
import os
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from snapshots.store.crypto import Vault, key_fingerprint
from tests.sample import SECRET


def store_state(home: Path) -> tuple:
    """Every row of every table, the feed's files and the key files: equal before and after means nothing was
    written."""
    db = home / "ferry.db"
    rows = []
    if db.exists():
        conn = sqlite3.connect(db)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        rows = [(t, conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()) for t in tables]
        conn.close()
    files = sorted((str(p.relative_to(home)), p.read_bytes()) for p in home.rglob("*")
                   if p.is_file() and not p.name.startswith("ferry.db"))
    return tuple(rows), tuple(files)


def new_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode("ascii")


def one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def query(home: Path, sql: str) -> list[tuple]:
    conn = sqlite3.connect(home / "ferry.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.fixture
def base(ferry, sample):  # type: ignore[no-untyped-def]
    for args in (("apply", str(sample.infrastructure), str(sample.project)),
                 ("package", "push", str(sample.package("1.0.0"))),
                 ("release", "create", "OctoFX", "--version", "1.0.0", "--no-auto-deploy")):
        result = ferry(*args)
        assert result.exit_code == 0, result.output
    return sample


def _env_key(_home: Path) -> dict[str, str]:
    return {"FERRY_MASTER_KEY": new_key()}


def _key_file(text: str) -> Callable[[Path], dict[str, str]]:
    def setup(home: Path) -> dict[str, str]:
        (home / "master.key").write_text(text)
        return {}
    return setup


def _no_key_file(home: Path) -> dict[str, str]:
    (home / "master.key").unlink()
    return {}


WRONG_ENV = (r"error: FERRY_MASTER_KEY does not match this store \(fingerprint [0-9a-f]{16}, the store's key is "
             r"[0-9a-f]{16}\); set it to this store's key, or unset it to use .*master\.key; nothing was written")
NO_KEY = (r"error: no master key: FERRY_MASTER_KEY is not set and .*master\.key does not exist, but this store's "
          r"data is encrypted and signed under key [0-9a-f]{16}; set FERRY_MASTER_KEY or restore the key file "
          r"\(no new key was generated, nothing was written\)")
PROJECT = ("apply", "{root}/infrastructure.yaml", "{root}/project.yaml")
UPDATE = ("release", "update-variables", "OctoFX", "1.0.0")
CREATE = ("release", "create", "OctoFX", "--version", "1.0.1", "--no-auto-deploy")
VERIFY = ("release", "verify", "OctoFX", "1.0.0")

CASES = {
    "different FERRY_MASTER_KEY, apply": (_env_key, PROJECT, WRONG_ENV),
    "different FERRY_MASTER_KEY, update-variables": (_env_key, UPDATE, WRONG_ENV),
    "different FERRY_MASTER_KEY, release create": (_env_key, CREATE, WRONG_ENV),
    "different FERRY_MASTER_KEY, key rotate": (_env_key, ("key", "rotate"), WRONG_ENV),
    "missing key file, key rotate": (_no_key_file, ("key", "rotate"), NO_KEY),
    "different key file": (_key_file(new_key() + "\n"), PROJECT,
                           r"error: the master key file .*master\.key does not match this store \(fingerprint "
                           r"[0-9a-f]{16}, the store's key is [0-9a-f]{16}\); restore this store's key file, or set "
                           r"FERRY_MASTER_KEY; nothing was written"),
    "missing key file, apply": (_no_key_file, PROJECT, NO_KEY),
    "missing key file, verify": (_no_key_file, VERIFY, NO_KEY),
    "malformed key file": (_key_file("not a key!\n"), PROJECT,
                           r"error: the master key file .*master\.key is malformed: not urlsafe base64"),
    "short key file": (_key_file(base64.urlsafe_b64encode(b"x" * 16).decode() + "\n"), PROJECT,
                       r"error: the master key file .*master\.key is malformed: it must decode to 32 bytes, not 16"),
    "malformed FERRY_MASTER_KEY": (lambda _home: {"FERRY_MASTER_KEY": "%%%"}, PROJECT,
                                   r"error: FERRY_MASTER_KEY is malformed: not urlsafe base64"),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_key_is_one_line_and_writes_nothing(base, ferry, ferry_home: Path, case: str) -> None:  # type: ignore[no-untyped-def]
    setup, args, expected = CASES[case]
    env = setup(ferry_home)
    before = store_state(ferry_home)
    result = ferry(*[a.format(root=base.root) for a in args], env=env)
    assert re.fullmatch(expected, one_line_error(result)), result.stderr
    assert store_state(ferry_home) == before
    assert SECRET not in result.output


def test_key_is_generated_only_for_an_empty_store(ferry, sample, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert ferry("apply", str(sample.infrastructure)).exit_code == 0
    key_file = ferry_home / "master.key"
    key = base64.urlsafe_b64decode(key_file.read_text().strip())
    assert (key_file.stat().st_mode & 0o777) == 0o600
    [(fingerprint, reason)] = query(ferry_home, "SELECT fingerprint, reason FROM master_keys")
    assert (fingerprint, reason) == (key_fingerprint(key), "generated")
    assert key_file.read_text().strip().encode() not in (ferry_home / "ferry.db").read_bytes()
    # the store now has a key: losing the file is an error, not a reason to make another one
    key_file.unlink()
    before = store_state(ferry_home)
    assert re.fullmatch(NO_KEY, one_line_error(ferry("apply", str(sample.infrastructure), str(sample.project))))
    assert not key_file.exists() and store_state(ferry_home) == before


def test_store_made_before_key_checks_adopts_the_key_that_decrypts_it(ferry, sample, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    """A store from before the check (no fingerprint, encrypted values): the right key is recorded, a wrong one
    is refused."""
    assert ferry("apply", str(sample.infrastructure), str(sample.project)).exit_code == 0
    conn = sqlite3.connect(ferry_home / "ferry.db")
    conn.execute("DROP TRIGGER master_keys_no_delete")
    conn.execute("DELETE FROM master_keys")
    conn.commit()
    conn.close()
    before = store_state(ferry_home)
    result = ferry("apply", str(sample.project), env={"FERRY_MASTER_KEY": new_key()})
    assert re.fullmatch(r"error: FERRY_MASTER_KEY does not match this store \(fingerprint [0-9a-f]{16}, the store's "
                        r"data was encrypted under another key\); .*nothing was written", one_line_error(result))
    assert store_state(ferry_home) == before
    assert ferry("apply", str(sample.project)).exit_code == 0
    assert [r[0] for r in query(ferry_home, "SELECT reason FROM master_keys")] == ["adopted"]


def _variable_snapshots(home: Path) -> list[tuple[int, str]]:
    return query(home, "SELECT revision, document FROM variable_snapshots ORDER BY revision")


def _ciphertext(document: str) -> str:
    return re.search(r'"ciphertext":"([^"]+)"', document).group(1)  # type: ignore[union-attr]


def test_rotate_re_encrypts_as_new_revisions_and_keeps_the_old_key_until_retired(  # type: ignore[no-untyped-def]
        base, ferry, ferry_home: Path) -> None:
    key_file = ferry_home / "master.key"
    old = base64.urlsafe_b64decode(key_file.read_text().strip())
    result = ferry("key", "rotate")
    assert result.exit_code == 0, result.output
    new = base64.urlsafe_b64decode(key_file.read_text().strip())
    assert new != old and (key_file.stat().st_mode & 0o777) == 0o600
    retired = ferry_home / f"master.key.{key_fingerprint(old)[:16]}.retired"
    assert base64.urlsafe_b64decode(retired.read_text().strip()) == old
    assert (retired.stat().st_mode & 0o777) == 0o600
    assert new_key_text(result.stdout) is None  # the key file was the source: the new key is not printed
    assert re.search(rf"{key_fingerprint(old)[:16]} → {key_fingerprint(new)[:16]}", result.stdout)
    # append-only history: revision 1 untouched (old key), revision 2 re-encrypted under the new key
    (_, r1), (_, r2) = _variable_snapshots(ferry_home)
    assert Vault(new).decrypt(_ciphertext(r2)) == SECRET
    assert not Vault(new).can_decrypt(_ciphertext(r1))
    assert Vault(new, [old]).decrypt(_ciphertext(r1)) == SECRET
    assert [r[0] for r in query(ferry_home, "SELECT revision FROM project_revisions ORDER BY revision")] == [1, 2]
    assert [r[0] for r in query(ferry_home, "SELECT reason FROM master_keys ORDER BY id")] == ["generated", "rotated"]
    assert SECRET not in result.output
    # the old release verifies (re-signed under the new key), also once the old key is retired for good
    assert ferry(*VERIFY).exit_code == 0
    retired.unlink()
    verified = ferry(*VERIFY)
    assert verified.exit_code == 0, verified.output
    assert f"by key {key_fingerprint(new)[:16]}" in verified.stdout
    # same YAML, same secret: no new revision (fingerprints were recomputed under the new key)
    again = ferry("apply", str(base.infrastructure), str(base.project))
    assert again.exit_code == 0 and "unchanged" in again.stdout, again.output
    assert "already match" in ferry(*UPDATE).stdout
    # the old key is now refused as the retired key it is
    before = store_state(ferry_home)
    error = one_line_error(ferry(*VERIFY, env={"FERRY_MASTER_KEY": base64.urlsafe_b64encode(old).decode()}))
    assert re.fullmatch(r"error: FERRY_MASTER_KEY is a retired key of this store \(fingerprint [0-9a-f]{16}; the "
                        r"store's key is [0-9a-f]{16} since `ferry key rotate`\); .*", error), error
    assert store_state(ferry_home) == before


def new_key_text(stdout: str) -> str | None:
    found = re.search(r"New key \(shown once\): (\S+)", stdout)
    return found.group(1) if found else None


def test_rotate_with_ferry_master_key_prints_the_new_key_once(base, ferry, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    (ferry_home / "master.key").unlink()
    first = new_key()
    # a store keyed by FERRY_MASTER_KEY from the start
    home2 = ferry_home.parent / "env-home"
    env = {"FERRY_HOME": str(home2), "FERRY_MASTER_KEY": first}
    for args in (("apply", str(base.infrastructure), str(base.project)),
                 ("package", "push", str(base.package("1.0.0"))),
                 ("release", "create", "OctoFX", "--version", "1.0.0", "--no-auto-deploy")):
        assert ferry(*args, env=env).exit_code == 0
    assert not (home2 / "master.key").exists()
    result = ferry("key", "rotate", env=env)
    assert result.exit_code == 0, result.output
    second = new_key_text(result.stdout)
    assert second is not None and "set it to the new key now" in result.stdout
    assert (home2 / "master.key").read_text().strip() == second
    before = store_state(home2)
    assert re.fullmatch(r"error: FERRY_MASTER_KEY is a retired key of this store .*",
                        one_line_error(ferry(*VERIFY, env=env)))
    assert store_state(home2) == before
    assert ferry(*VERIFY, env={**env, "FERRY_MASTER_KEY": second}).exit_code == 0


def test_rotate_refuses_a_tampered_release_and_writes_nothing(base, ferry, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    """Re-signing a tampered release under the new key would launder the change: the rotation stops."""
    import hashlib

    conn = sqlite3.connect(ferry_home / "ferry.db")
    conn.execute("DROP TRIGGER releases_no_update")
    text = conn.execute("SELECT snapshot FROM releases").fetchone()[0].replace("Smoke test", "Smoke tost")
    conn.execute("UPDATE releases SET snapshot = ?, digest = ?", (text, hashlib.sha256(text.encode()).hexdigest()))
    conn.commit()
    conn.close()
    before = store_state(ferry_home)
    error = one_line_error(ferry("key", "rotate"))
    assert error == ("error: release OctoFX 1.0.0 was tampered with: the release snapshot does not match its "
                     "signature"), error
    assert store_state(ferry_home) == before


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_ferry_home_store_logs_and_key_files_are_private(ferry, sample, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    ferry_home.mkdir(mode=0o755)
    os.chmod(ferry_home, 0o755)  # as an older ferry left it
    assert ferry("apply", str(sample.infrastructure), str(sample.project)).exit_code == 0
    assert _mode(ferry_home) == 0o700
    stored = [p for p in ferry_home.iterdir() if p.name.startswith("ferry.db")]
    assert stored and all(_mode(p) == 0o600 for p in stored), {p.name: oct(_mode(p)) for p in stored}
    assert _mode(ferry_home / "master.key") == 0o600
    os.chmod(ferry_home, 0o755)
    os.chmod(ferry_home / "ferry.db", 0o644)
    assert ferry("release", "list", "OctoFX").exit_code == 0
    assert _mode(ferry_home) == 0o700 and _mode(ferry_home / "ferry.db") == 0o600
    # logs of background deployments
    from snapshots.settings import open_private_log

    log = ferry_home / "logs" / "deployment-1.log"
    os.close(open_private_log(log))
    assert _mode(log.parent) == 0o700 and _mode(log) == 0o600


def test_a_long_lived_workspace_follows_a_rotation(base, ferry, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    """``ferry serve`` keeps one workspace: after `ferry key rotate` it signs and encrypts under the new key."""
    from snapshots.workspace import Workspace

    workspace = Workspace()
    before = workspace.vault.key_id
    assert workspace.vault.key_id == before  # cached while current
    assert ferry("key", "rotate").exit_code == 0
    new = base64.urlsafe_b64decode((ferry_home / "master.key").read_text().strip())
    assert workspace.vault.key_id == key_fingerprint(new) != before
    workspace.store.dispose()


@pytest.mark.postgres
def test_key_checks_on_a_postgresql_store(ferry, sample, postgres, monkeypatch, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    """The same refusals through the CLI when the store is PostgreSQL (the executor's shared store)."""
    import sqlalchemy as sa

    url = postgres.create_database()
    monkeypatch.setenv("FERRY_DATABASE_URL", url)
    for args in (("apply", str(sample.infrastructure), str(sample.project)),
                 ("package", "push", str(sample.package("1.0.0"))),
                 ("release", "create", "OctoFX", "--version", "1.0.0", "--no-auto-deploy")):
        assert ferry(*args).exit_code == 0

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))

    def rows() -> dict[str, list]:
        with engine.connect() as conn:
            return {t: sorted(map(tuple, conn.execute(sa.text(f"SELECT * FROM {t}"))))
                    for t in sa.inspect(conn).get_table_names()}

    try:
        before = rows()
        assert re.fullmatch(WRONG_ENV, one_line_error(ferry(*UPDATE, env={"FERRY_MASTER_KEY": new_key()})))
        (ferry_home / "master.key").rename(ferry_home / "kept.key")
        assert re.fullmatch(NO_KEY, one_line_error(ferry("apply", str(sample.project))))
        assert not (ferry_home / "master.key").exists()
        assert rows() == before
        (ferry_home / "kept.key").rename(ferry_home / "master.key")
        assert ferry("key", "rotate").exit_code == 0
        verified = ferry(*VERIFY)
        assert verified.exit_code == 0, verified.output
    finally:
        engine.dispose()


def test_releases_made_before_signing_are_signed_when_the_key_is_adopted(base, ferry, ferry_home: Path) -> None:  # type: ignore[no-untyped-def]
    """A store from before signatures (no fingerprint, unsigned releases): the first command with the key that
    decrypts it records the fingerprint and signs the releases whose digests hold; a release edited meanwhile
    without its digest stays unsigned and is reported."""
    assert ferry("release", "create", "OctoFX", "--version", "1.0.1", "--no-auto-deploy").exit_code == 0
    conn = sqlite3.connect(ferry_home / "ferry.db")
    for table in ("signatures", "master_keys"):
        conn.execute(f"DROP TRIGGER {table}_no_delete")
        conn.execute(f"DELETE FROM {table}")
    conn.execute("DROP TRIGGER releases_no_update")
    conn.execute("UPDATE releases SET snapshot = replace(snapshot, 'Smoke test', 'Smoke tost') WHERE version = '1.0.1'")
    conn.commit()
    conn.close()
    assert ferry(*VERIFY).exit_code == 0
    assert [r[0] for r in query(ferry_home, "SELECT reason FROM master_keys")] == ["adopted"]
    error = one_line_error(ferry("release", "verify", "OctoFX", "1.0.1"))
    assert error.startswith("error: release OctoFX 1.0.1 was tampered with: the release snapshot does not match its "
                            "digest"), error
