"""`spec.dryRun` on a Restore: a real restore's checks, the plan in status, nothing changed."""

from __future__ import annotations

import sqlite3
from typing import Any

from lifeboat.cli.demo import fingerprint
from tests.integration.operator.conftest import Cluster, OperatorControl, SqliteShop
from tests.integration.operator.test_backup_restore import postgres_backup_spec, secrets_for
from tests.support import postgres as pg


def test_a_dry_run_records_the_plan_and_changes_nothing(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "shop", sqlite_shop.spec())
    backup = cluster.wait_phase("backups", "shop", "Completed", "Failed")
    assert backup["phase"] == "Completed", backup
    with sqlite3.connect(sqlite_shop.db_path) as conn:
        conn.execute("DELETE FROM orders WHERE id > 10")
        conn.execute("CREATE TABLE added_later (id INTEGER)")
    before = fingerprint(sqlite_shop.db_path)

    cluster.create("restores", "shop-dry", {"backupRef": {"name": "shop"}, "dryRun": True})
    status = cluster.wait_phase("restores", "shop-dry", "Completed", "Failed")

    assert status["phase"] == "Completed", status
    assert status["reason"] == "DryRunSucceeded"
    assert "nothing was changed" in status["message"]
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("True", "DryRunSucceeded")
    plan = status["plan"]
    assert plan["targetExists"] is True
    assert plan["checksumVerified"] is True
    assert plan["tables"] == backup["artifact"]["tables"]
    assert plan["rows"] == backup["artifact"]["rows"]
    assert plan["bytesToDownload"] == backup["artifact"]["size"]
    assert "table added_later" in plan["dropped"]
    assert plan["droppedCount"] == len(plan["dropped"])
    assert "table orders" in plan["replaced"]
    assert [c["name"] for c in plan["checks"]][-2:] == ["artifact", "checksum"]
    assert status["verification"]["checksumVerified"] is True
    assert "rowCountsMatched" not in status["verification"]
    assert fingerprint(sqlite_shop.db_path) == before
    assert "DryRunSucceeded" in [reason for reason, _ in cluster.events_for("shop-dry")]


def test_a_dry_run_that_cannot_log_in_fails_with_the_reason(
    cluster: Cluster, lifeboat_operator: OperatorControl, pg_database: pg.PgDatabase, s3_bucket: Any
) -> None:
    pg.seed_sample_schema(pg_database, large_object=False)
    secrets_for(cluster, pg_database, s3_bucket)
    cluster.create("backups", "shop-db", postgres_backup_spec(pg_database, s3_bucket))
    assert cluster.wait_phase("backups", "shop-db", "Completed", "Failed")["phase"] == "Completed"
    cluster.secret("wrong", {"password": "not-" + pg_database.password})
    target = {
        **postgres_backup_spec(pg_database, s3_bucket)["database"],
        "passwordSecretRef": {"name": "wrong", "key": "password"},
    }
    before = pg_database.fingerprint()

    cluster.create(
        "restores",
        "shop-db-dry",
        {"backupRef": {"name": "shop-db"}, "dryRun": True, "target": target},
    )
    status = cluster.wait_phase("restores", "shop-db-dry", "Completed", "Failed")

    assert status["phase"] == "Failed", status
    assert status["reason"] == "AuthenticationFailed"
    stalled = {c["type"]: c for c in status["conditions"]}["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "AuthenticationFailed")
    assert "plan" not in status
    assert pg_database.fingerprint() == before
