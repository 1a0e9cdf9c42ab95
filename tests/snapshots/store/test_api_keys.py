"""API keys in the store, on SQLite and on a real PostgreSQL: the text is shown once and only its hash is kept,
revoked / expired / wrong keys are refused with a reason, scopes decide what a key may do."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from snapshots.errors import AccessDenied, ConfigError, ConflictError, NotFoundError
from snapshots.store import Store, api_keys, audit


@pytest.fixture
def store(database_url: str):  # type: ignore[no-untyped-def]
    store = Store(database_url)
    yield store
    store.dispose()


def _create(store: Store, name: str = "ci", **scope):  # type: ignore[no-untyped-def]
    scope = {"projects": ["OctoFX"], "environments": ["Development", "Test"], "actions": ("push", "release", "deploy"),
             **scope}
    with store.begin() as conn:
        return api_keys.create(conn, name, actor="admin", **scope)


def test_key_text_is_shown_once_and_only_its_hash_is_stored(store: Store) -> None:
    key, text = _create(store)
    assert text.startswith(f"ferry_{key.key_id}_") and len(key.key_id) == 8
    secret = text.split("_", 2)[2]
    with store.read() as conn:
        dump = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM api_keys")) for v in row)
        assert secret not in dump
        assert api_keys.authenticate(conn, text).name == "ci"
        assert api_keys.authenticate(conn, f"  {text} ").actor == "key:ci"
        listed = [k.as_dict() for k in api_keys.list_keys(conn)]
        entries = audit.entries(conn, "api-key/")
    assert secret not in str(listed) and secret not in str(entries)
    assert [(e["actor"], e["action"]) for e in entries] == [("admin", "api-key.create")]


@pytest.mark.parametrize("presented", [None, "", "Bearer nonsense", "ferry_zzzzzzzz_x", "ferry_0000000_" + "a" * 43])
def test_malformed_or_missing_key_is_401(store: Store, presented: str | None) -> None:
    with store.read() as conn, pytest.raises(AccessDenied) as caught:
        api_keys.authenticate(conn, presented)
    assert caught.value.status == 401


def test_wrong_secret_unknown_id_revoked_and_expired_are_401(store: Store) -> None:
    key, text = _create(store)
    wrong = text[:-4] + ("AAAA" if not text.endswith("AAAA") else "BBBB")
    unknown = f"ferry_{'0' * 8 if key.key_id != '0' * 8 else '1' * 8}_{text.split('_', 2)[2]}"
    with store.read() as conn:
        for bad in (wrong, unknown):
            with pytest.raises(AccessDenied, match="is not valid") as caught:
                api_keys.authenticate(conn, bad)
            assert caught.value.status == 401 and text.split("_", 2)[2] not in str(caught.value)
    with store.begin() as conn:
        api_keys.expire(conn, "ci", "admin")
    with store.read() as conn, pytest.raises(AccessDenied, match="expired") as caught:
        api_keys.authenticate(conn, text)
    assert caught.value.status == 401
    with store.begin() as conn:
        api_keys.revoke(conn, "ci", "admin")
    with store.read() as conn:
        with pytest.raises(AccessDenied, match="revoked"):
            api_keys.authenticate(conn, text)
        assert api_keys.list_keys(conn) == []
        assert [k.state for k in api_keys.list_keys(conn, include_revoked=True)] == ["revoked"]
        actions = [e["action"] for e in audit.entries(conn, "api-key/ci")]
    assert actions == ["api-key.create", "api-key.expire", "api-key.revoke"]


def test_expiry_in_days_and_name_reuse_after_revoke(store: Store) -> None:
    key, text = _create(store, expires_days=1)
    assert key.expires_at is not None and key.state == "active"
    with pytest.raises(ConflictError, match="active api key named 'ci'"):
        _create(store)
    with store.begin() as conn:
        api_keys.revoke(conn, "ci", "admin")
    again, text2 = _create(store)
    assert again.key_id != key.key_id and text2 != text
    with store.read() as conn:
        assert api_keys.authenticate(conn, text2).key_id == again.key_id
    with store.begin() as conn, pytest.raises(NotFoundError):
        api_keys.revoke(conn, "nobody", "admin")


@pytest.mark.parametrize("bad", [{"actions": ("push", "destroy")}, {"actions": ()}, {"projects": []},
                                 {"expires_days": 0}], ids=["unknown action", "no action", "no project", "expiry 0"])
def test_bad_key_definitions_are_refused_and_nothing_is_stored(store: Store, bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError):
        _create(store, **bad)
    with store.read() as conn:
        assert api_keys.list_keys(conn, include_revoked=True) == []


def test_scopes() -> None:
    key = api_keys.ApiKey("abcd0123", "ci", ("OctoFX",), ("Development", "Test"), ("push", "deploy"), "", "", None,
                          None)
    api_keys.require(key, "deploy", "OctoFX", "Test")
    api_keys.require(key, "push")
    with pytest.raises(AccessDenied, match="api key 'ci' may not deploy to Production") as caught:
        api_keys.require(key, "deploy", "OctoFX", "Production")
    assert caught.value.status == 403
    with pytest.raises(AccessDenied, match="may not release"):
        api_keys.require(key, "release", "OctoFX")
    with pytest.raises(AccessDenied, match="no access to project Other"):
        api_keys.require(key, "deploy", "Other", "Test")
    wide = api_keys.ApiKey("abcd0124", "ops", ("*",), ("*",), ("answer",), "", "", None, None)
    api_keys.require(wide, "answer", "Anything", "Production")
    assert api_keys.parse_actions("push, release,push") == ("push", "release")
