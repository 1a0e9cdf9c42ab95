"""Scoped API keys for requesters (CI, people without the store): ``ferry_<key_id>_<secret>``.

The key text is shown once, when it is created; the store keeps only the sha256 of the secret, so a copy
of the database does not hand out keys. A key is scoped to projects × environments × actions (``push``,
``release``, ``deploy``, ``answer``); every key may read within its projects. Keys change (revoked), so this
table is not append-only; creating and revoking one is in the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Connection, Index, Integer, Row, String, Table, Text, insert, select, update

from snapshots.errors import AccessDenied, ConfigError, ConflictError, NotFoundError
from snapshots.store import audit
from snapshots.store.engine import now
from snapshots.store.tables import Digest, Timestamp, metadata

ACTIONS = ("push", "release", "deploy", "answer")
ALL = "*"
PREFIX = "ferry_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_KEY = re.compile(r"^ferry_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")

api_keys = Table(
    "api_keys", metadata,
    Column("id", Integer, primary_key=True),
    Column("key_id", String(16), nullable=False, unique=True),
    Column("name", String(100), nullable=False),
    Column("secret_sha256", Digest, nullable=False),
    Column("projects", Text, nullable=False),
    Column("environments", Text, nullable=False),
    Column("actions", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", Timestamp),
    Column("revoked_at", Timestamp),
    Column("revoked_by", String(200)),
)
"""Defined here rather than in ``tables.py``: only this module reads or writes it (migration 0003)."""

Index("ix_api_keys_active_name", api_keys.c.name, unique=True, sqlite_where=api_keys.c.revoked_at.is_(None),
      postgresql_where=api_keys.c.revoked_at.is_(None))


@dataclass(frozen=True)
class ApiKey:
    """A key's identity and scope (never its secret)."""

    key_id: str
    name: str
    projects: tuple[str, ...]
    environments: tuple[str, ...]
    actions: tuple[str, ...]
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None

    @property
    def actor(self) -> str:
        """How records name what this key did."""
        return f"key:{self.name}"

    @property
    def state(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.expires_at and self.expires_at <= now():
            return "expired"
        return "active"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "key_id": self.key_id, "projects": list(self.projects),
                "environments": list(self.environments), "actions": list(self.actions),
                "created_at": self.created_at, "created_by": self.created_by, "expires_at": self.expires_at,
                "revoked_at": self.revoked_at, "state": self.state}

    def may_read(self, project: str) -> bool:
        return ALL in self.projects or project in self.projects

    def allows(self, action: str, project: str | None = None, environment: str | None = None) -> bool:
        if action not in self.actions:
            return False
        if project is not None and not self.may_read(project):
            return False
        return environment is None or ALL in self.environments or environment in self.environments


def _sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _key(row: Row[Any]) -> ApiKey:
    m = row._mapping
    return ApiKey(m["key_id"], m["name"], tuple(json.loads(m["projects"])), tuple(json.loads(m["environments"])),
                  tuple(json.loads(m["actions"])), m["created_at"], m["created_by"], m["expires_at"],
                  m["revoked_at"])


def parse_actions(text: str | list[str]) -> tuple[str, ...]:
    """``push,release`` (or a list) → the actions, checked against ``ACTIONS``."""
    items = text.split(",") if isinstance(text, str) else [a for part in text for a in part.split(",")]
    actions = tuple(dict.fromkeys(a.strip() for a in items if a.strip()))
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown or not actions:
        raise ConfigError(f"--can {','.join(actions) or '(nothing)'}: expected a comma-separated subset of "
                          f"{','.join(ACTIONS)}")
    return actions


def create(conn: Connection, name: str, *, projects: list[str], environments: list[str], actions: tuple[str, ...],
           actor: str, expires_days: float | None = None) -> tuple[ApiKey, str]:
    """A new key; returns (the key, its text). The text is not stored and cannot be shown again."""
    if not _NAME.match(name):
        raise ConfigError(f"api key name {name!r}: letters, digits, '.', '_' and '-' (up to 100), starting with a "
                          "letter or digit")
    if not projects or not environments:
        raise ConfigError("an api key needs --project (or '*') and --environment (or '*')")
    actions = parse_actions(list(actions))
    if expires_days is not None and expires_days <= 0:
        raise ConfigError(f"--expires {expires_days:g}: a number of days greater than 0")
    if find(conn, name) is not None:
        raise ConflictError(f"an active api key named {name!r} exists: revoke it first or pick another name")
    key_id = secrets.token_hex(4)
    while conn.execute(select(api_keys.c.id).where(api_keys.c.key_id == key_id)).first() is not None:
        key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    expires_at = None
    if expires_days is not None:
        expires_at = (datetime.now(UTC) + timedelta(days=expires_days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    conn.execute(insert(api_keys).values(
        key_id=key_id, name=name, secret_sha256=_sha(secret), projects=json.dumps(sorted(set(projects))),
        environments=json.dumps(sorted(set(environments))), actions=json.dumps(list(actions)), created_at=now(),
        created_by=actor, expires_at=expires_at))
    audit.record(conn, actor, "api-key.create", f"api-key/{name}", key_id=key_id, projects=sorted(set(projects)),
                 environments=sorted(set(environments)), actions=list(actions), expires_at=expires_at)
    key = find(conn, name)
    assert key is not None
    return key, f"{PREFIX}{key_id}_{secret}"


def find(conn: Connection, name: str) -> ApiKey | None:
    """The key of that name that is not revoked (it may have expired)."""
    row = conn.execute(select(api_keys).where(api_keys.c.name == name, api_keys.c.revoked_at.is_(None))).first()
    return _key(row) if row else None


def list_keys(conn: Connection, *, include_revoked: bool = False) -> list[ApiKey]:
    query = select(api_keys).order_by(api_keys.c.name, api_keys.c.id)
    if not include_revoked:
        query = query.where(api_keys.c.revoked_at.is_(None))
    return [_key(row) for row in conn.execute(query)]


def revoke(conn: Connection, name: str, actor: str) -> ApiKey:
    """Revoke the active key of that name: from now on it is refused (401)."""
    key = find(conn, name)
    if key is None:
        raise NotFoundError(f"no active api key named {name!r}")
    conn.execute(update(api_keys).where(api_keys.c.key_id == key.key_id).values(revoked_at=now(), revoked_by=actor))
    audit.record(conn, actor, "api-key.revoke", f"api-key/{name}", key_id=key.key_id)
    return _key(conn.execute(select(api_keys).where(api_keys.c.key_id == key.key_id)).one())


def expire(conn: Connection, name: str, actor: str, when: str | None = None) -> ApiKey:
    """Set the key's expiry (now by default): after it, the key is refused (401) but still listed."""
    key = find(conn, name)
    if key is None:
        raise NotFoundError(f"no active api key named {name!r}")
    at = when or now()
    conn.execute(update(api_keys).where(api_keys.c.key_id == key.key_id).values(expires_at=at))
    audit.record(conn, actor, "api-key.expire", f"api-key/{name}", key_id=key.key_id, expires_at=at)
    found = find(conn, name)
    assert found is not None
    return found


def authenticate(conn: Connection, text: str | None) -> ApiKey:
    """The key a request presents (``ferry_<id>_<secret>``), or ``AccessDenied`` (status 401) saying why.
    The message never repeats the secret."""
    if not text:
        raise AccessDenied("no api key: send 'Authorization: Bearer ferry_…'", status=401)
    match = _KEY.match(text.strip())
    if match is None:
        raise AccessDenied("not a ferry api key (expected ferry_<id>_<secret>)", status=401)
    key_id, secret = match.groups()
    row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
    # Compare a digest even for an unknown id, so timing does not tell which ids exist.
    stored = row._mapping["secret_sha256"] if row else "0" * 64
    if not hmac.compare_digest(stored, _sha(secret)) or row is None:
        raise AccessDenied(f"api key {key_id} is not valid", status=401)
    key = _key(row)
    if key.revoked_at:
        raise AccessDenied(f"api key {key.name!r} was revoked at {key.revoked_at}", status=401)
    if key.expires_at and key.expires_at <= now():
        raise AccessDenied(f"api key {key.name!r} expired at {key.expires_at}", status=401)
    return key


def require(key: ApiKey, action: str, project: str | None = None, environment: str | None = None) -> None:
    """Raise ``AccessDenied`` (403) unless the key allows ``action`` on the project / environment."""
    if project is not None and not key.may_read(project):
        raise AccessDenied(f"api key {key.name!r} has no access to project {project}")
    if action not in key.actions:
        raise AccessDenied(f"api key {key.name!r} may not {action}" + (f" in {project}" if project else ""))
    if environment is not None and not key.allows(action, project, environment):
        raise AccessDenied(f"api key {key.name!r} may not {action} to {environment}")


def require_read(key: ApiKey, project: str) -> None:
    if not key.may_read(project):
        raise AccessDenied(f"api key {key.name!r} has no access to project {project}")
