"""Backup applied -> one Job -> real worker -> real database and S3 -> status; then Restore."""

from __future__ import annotations

from typing import Any

from tests.integration.operator.conftest import Cluster, OperatorControl
from tests.support import postgres as pg
from tests.support.e2e import E2E_SETTINGS


def postgres_backup_spec(db: pg.PgDatabase, s3: Any, **extra: Any) -> dict[str, Any]:
    return {
        "database": {
            "engine": "postgresql",
            "host": E2E_SETTINGS.reachable_host(db.server.host),
            "port": db.server.port,
            "name": db.name,
            "user": db.user,
            "passwordSecretRef": {"name": "db", "key": "password"},
        },
        "storage": {
            "s3": {
                "bucket": s3.bucket,
                "prefix": "team/",
                "endpoint": E2E_SETTINGS.reachable_url(s3.endpoint),
                "region": "us-east-1",
                "credentialsSecretRef": {"name": "s3"},
                "forcePathStyle": True,
            }
        },
        "compression": "zstd",
        **extra,
    }


def secrets_for(cluster: Cluster, db: pg.PgDatabase, s3: Any) -> None:
    cluster.secret("db", {"password": db.password})
    cluster.secret(
        "s3",
        {
            "AWS_ACCESS_KEY_ID": s3.env["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": s3.env["AWS_SECRET_ACCESS_KEY"],
        },
    )


def test_backup_completes_with_artifact_and_progress_then_restore_brings_data_back(
    cluster: Cluster, lifeboat_operator: OperatorControl, pg_database: pg.PgDatabase, s3_bucket: Any
) -> None:
    expected_counts = pg.seed_sample_schema(pg_database, large_object=False)
    original = pg_database.fingerprint()
    secrets_for(cluster, pg_database, s3_bucket)

    cluster.create("backups", "shop-db", postgres_backup_spec(pg_database, s3_bucket))
    status = cluster.wait_phase("backups", "shop-db", "Completed", "Failed")

    assert status["phase"] == "Completed", status
    artifact = status["artifact"]
    assert artifact["uri"].startswith(f"s3://{s3_bucket.bucket}/team/{cluster.namespace}/shop-db-")
    assert len(artifact["sha256"]) == 64
    assert artifact["size"] > 0
    assert artifact["rows"] == sum(expected_counts.values())
    stored = s3_bucket.client.head_object(
        Bucket=s3_bucket.bucket, Key=artifact["uri"].removeprefix(f"s3://{s3_bucket.bucket}/")
    )
    assert stored["ContentLength"] == artifact["size"]
    assert status["progress"]["percent"] == 100
    assert status["progress"]["percentText"] == "100%"
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "True"
    assert status["observedGeneration"] == 1
    assert len(cluster.jobs()) == 1
    reasons = [reason for reason, _ in cluster.events_for("shop-db")]
    assert "JobCreated" in reasons
    assert "Completed" in reasons

    pg_database.execute("DELETE FROM shop.orders WHERE id > 10")
    pg_database.execute("CREATE TABLE shop.added_later (id int)")
    assert pg_database.fingerprint() != original

    cluster.create("restores", "shop-db-restore", {"backupRef": {"name": "shop-db"}})
    restored = cluster.wait_phase("restores", "shop-db-restore", "Completed", "Failed")

    assert restored["phase"] == "Completed", restored
    assert pg_database.fingerprint() == original
    verification = restored["verification"]
    assert verification["checksumVerified"] is True
    assert verification["rowCountsMatched"] is True
    assert verification["rowsVerified"] == sum(expected_counts.values())
    assert verification["backupName"] == "shop-db"
    assert verification["sha256"] == artifact["sha256"]
    assert restored["progress"]["percent"] == 100
    assert restored["engine"] == "postgresql"


def test_mariadb_backup_restored_into_a_new_database_through_spec_target(
    cluster: Cluster, lifeboat_operator: OperatorControl, mariadb_databases: Any, s3_bucket: Any
) -> None:
    from tests.support import mariadb as maria

    source = mariadb_databases.create()
    maria.seed_sample_schema(source, bulk_rows=200)
    target = mariadb_databases.reserve(user=source.user)  # not there yet: the restore makes it
    cluster.secret("db", {"password": source.password})
    cluster.secret(
        "s3",
        {
            "AWS_ACCESS_KEY_ID": s3_bucket.env["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": s3_bucket.env["AWS_SECRET_ACCESS_KEY"],
        },
    )
    database = {
        "engine": "mariadb",
        "host": E2E_SETTINGS.reachable_host(source.server.host),
        "port": source.server.port,
        "name": source.name,
        "user": source.user.name,
        "passwordSecretRef": {"name": "db", "key": "password"},
    }
    storage = {
        "s3": {
            "bucket": s3_bucket.bucket,
            "endpoint": E2E_SETTINGS.reachable_url(s3_bucket.endpoint),
            "credentialsSecretRef": {"name": "s3"},
            "forcePathStyle": True,
        }
    }
    cluster.create("backups", "shop-mysql", {"database": database, "storage": storage})
    backup = cluster.wait_phase("backups", "shop-mysql", "Completed", "Failed")
    assert backup["phase"] == "Completed", backup
    assert backup["artifact"]["engine"] == "mariadb"

    cluster.create(
        "restores",
        "shop-mysql-copy",
        {"backupRef": {"name": "shop-mysql"}, "target": {**database, "name": target.name}},
    )
    restored = cluster.wait_phase("restores", "shop-mysql-copy", "Completed", "Failed")

    assert restored["phase"] == "Completed", restored
    assert restored["database"] == target.name
    assert target.row_counts() == source.row_counts()
    assert maria.fingerprint(target) == maria.fingerprint(source)


def test_a_started_restore_follows_its_job_when_its_backup_is_deleted(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: Any
) -> None:
    cluster.create("backups", "shop", sqlite_shop.spec())
    assert cluster.wait_phase("backups", "shop", "Completed", "Failed")["phase"] == "Completed"
    cluster.runner.hold_when(lambda namespace, name: "-restore-" in name)
    cluster.create("restores", "shop-restore", {"backupRef": {"name": "shop"}})
    cluster.wait_for(lambda: cluster.status("restores", "shop-restore").get("jobName"))
    cluster.delete("backups", "shop")  # Retain: the files stay; the object goes
    cluster.wait_for(lambda: cluster.get("backups", "shop") is None)
    # A restarted operator that would look for the Backup again fails at once without waiting.
    lifeboat_operator.stop()
    lifeboat_operator.start(backup_wait_seconds=0)
    cluster.runner.hold_when(None)
    cluster.runner.release(cluster.status("restores", "shop-restore")["jobName"])

    status = cluster.wait_phase("restores", "shop-restore", "Completed", "Failed")

    assert status["phase"] == "Completed", status
    assert status["resolvedBackup"] == "shop"


def test_a_restore_that_cleans_up_after_an_interrupted_one_says_so_in_its_status(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: Any
) -> None:
    cluster.create("backups", "shop", sqlite_shop.spec())
    assert cluster.wait_phase("backups", "shop", "Completed", "Failed")["phase"] == "Completed"
    # What a restore killed while staging leaves next to its target (SIGKILL: no cleanup).
    leftover = sqlite_shop.db_path.parent / f".{sqlite_shop.db_path.name}.lifeboat-restore-k1ll3d"
    leftover.write_bytes(b"SQLite format 3\x00" + b"\x00" * 4096)

    cluster.create("restores", "shop-restore", {"backupRef": {"name": "shop"}})
    restored = cluster.wait_phase("restores", "shop-restore", "Completed", "Failed")

    assert restored["phase"] == "Completed", restored
    assert restored["verification"]["rowCountsMatched"] is True
    [note] = restored["notes"]
    assert note.startswith("removed the staged copy an interrupted restore left: ")
    assert note.endswith(f"/{leftover.name}")
    assert not leftover.exists()
    assert [p.name for p in sqlite_shop.db_path.parent.iterdir()] == ["shop.db"]
