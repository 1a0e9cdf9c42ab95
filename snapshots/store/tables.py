"""The store's tables (SQLAlchemy Core). Snapshot tables are append-only, enforced by database triggers
created in the migrations; ``APPEND_ONLY`` names them."""

from __future__ import annotations

from sqlalchemy import (
                        BigInteger,
                        Boolean,
                        Column,
                        ForeignKey,
                        Index,
                        Integer,
                        MetaData,
                        String,
                        Table,
                        Text,
                        UniqueConstraint,
                        false,
)

metadata = MetaData()

Digest = String(64)
Timestamp = String(32)  # ISO 8601 UTC text: portable, sortable, and identical on SQLite and PostgreSQL

project_revisions = Table(
    "project_revisions", metadata,
    Column("id", Integer, primary_key=True),
    Column("project", String(200), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("content_digest", Digest, nullable=False),
    Column("document", Text, nullable=False),
    Column("source", String(1000), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("project", "revision"),
)

infrastructure_revisions = Table(
    "infrastructure_revisions", metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", Integer, nullable=False, unique=True),
    Column("content_digest", Digest, nullable=False),
    Column("document", Text, nullable=False),
    Column("source", String(1000), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(200), nullable=False),
)

packages = Table(
    "packages", metadata,
    Column("id", Integer, primary_key=True),
    Column("package_id", String(200), nullable=False),
    Column("version", String(200), nullable=False),
    Column("filename", String(500), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", Digest, nullable=False),
    Column("pushed_at", Timestamp, nullable=False),
    Column("pushed_by", String(200), nullable=False),
    UniqueConstraint("package_id", "version"),
)

releases = Table(
    "releases", metadata,
    Column("id", Integer, primary_key=True),
    Column("project", String(200), nullable=False),
    Column("version", String(200), nullable=False),
    Column("project_revision_id", Integer, ForeignKey("project_revisions.id"), nullable=False),
    Column("snapshot", Text, nullable=False),
    Column("digest", Digest, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("project", "version"),
)

variable_snapshots = Table(
    "variable_snapshots", metadata,
    Column("id", Integer, primary_key=True),
    Column("release_id", Integer, ForeignKey("releases.id"), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("project_revision_id", Integer, ForeignKey("project_revisions.id"), nullable=False),
    Column("document", Text, nullable=False),
    Column("digest", Digest, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("release_id", "revision"),
)

deployments = Table(
    "deployments", metadata,
    Column("id", Integer, primary_key=True),
    Column("project", String(200), nullable=False),
    Column("release_id", Integer, ForeignKey("releases.id"), nullable=False),
    Column("environment", String(200), nullable=False),
    Column("variable_snapshot_id", Integer, ForeignKey("variable_snapshots.id"), nullable=False),
    Column("flow_run_id", String(64)),
    Column("state", String(32), nullable=False),
    Column("parameters", Text, nullable=False, server_default="{}"),
    Column("error", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("started_at", Timestamp),
    Column("finished_at", Timestamp),
    Column("heartbeat_at", Timestamp),  # stamped every few seconds by the process running the deployment
    Column("leases", Text),  # JSON list of the Prefect concurrency lease ids that process holds
    Column("kind", String(16), nullable=False, server_default="deployment"),  # or "runbook" (a runbook run)
    Column("runbook", String(200)),  # the runbook a runbook run ran
    Column("no_change", Boolean, nullable=False, server_default=false()),  # every target was current: nothing ran
    Index("ix_deployments_project_env", "project", "environment"),
)

deployment_results = Table(
    "deployment_results", metadata,
    Column("id", Integer, primary_key=True),
    Column("deployment_id", Integer, ForeignKey("deployments.id"), nullable=False),
    Column("step", String(200), nullable=False),
    Column("target", String(200)),
    Column("state", String(32), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("message", Text),
    Column("started_at", Timestamp),
    Column("finished_at", Timestamp),
    Index("ix_deployment_results_deployment", "deployment_id"),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", Timestamp, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("subject", String(500), nullable=False),
    Column("detail", Text, nullable=False, server_default="{}"),
)

master_keys = Table(
    "master_keys", metadata,
    Column("id", Integer, primary_key=True),
    Column("fingerprint", Digest, nullable=False, unique=True),
    Column("reason", String(32), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(200), nullable=False),
)
"""The store's master key, by fingerprint (HMAC of a fixed label under a key derived from it — never the key):
the newest row is the current key; older rows are keys rotated away (``reason``: generated, adopted, rotated)."""

signatures = Table(
    "signatures", metadata,
    Column("id", Integer, primary_key=True),
    Column("subject", String(32), nullable=False),
    Column("subject_id", Integer, nullable=False),
    Column("key_fingerprint", Digest, nullable=False),
    Column("signature", Digest, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("subject", "subject_id", "key_fingerprint"),
    Index("ix_signatures_subject", "subject", "subject_id"),
)
"""HMAC signatures by the executor's key over releases (``subject`` "releases") and variable-snapshot
revisions ("variable_snapshots"), chained; one per key that signed the row (a rotation re-signs under the new
key), so each row names the key fingerprint it was made with."""

library_revisions = Table(
    "library_revisions", metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("content_digest", Digest, nullable=False),
    Column("document", Text, nullable=False),
    Column("source", String(1000), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("created_by", String(200), nullable=False),
    UniqueConstraint("kind", "name", "revision"),
)
"""Revisions of library variable sets (``kind`` "variable_set") and step templates ("step_template"), applied
with ``ferry apply``; append-only (migration 0008) like the project revisions."""

APPEND_ONLY = ("project_revisions", "infrastructure_revisions", "packages", "releases",
               "variable_snapshots", "audit_log", "master_keys", "signatures")
"""Rows of these tables are history: the database refuses UPDATE and DELETE on them."""
