"""Deleting a Backup: Delete removes the stored backup (finalizer), Retain keeps it, and a
storage error keeps the finalizer and says so instead of losing track."""

from __future__ import annotations

from typing import Any

from tests.integration.operator.conftest import Cluster, OperatorControl, SqliteShop
from tests.integration.operator.test_backup_restore import postgres_backup_spec, secrets_for
from tests.support import postgres as pg


def stored_files(shop: SqliteShop) -> list[str]:
    return sorted(p.name for p in shop.backups.rglob("*") if p.is_file())


def test_delete_policy_removes_artifact_and_manifest(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "gone", sqlite_shop.spec(deletionPolicy="Delete"))
    assert cluster.wait_phase("backups", "gone", "Completed", "Failed")["phase"] == "Completed"
    assert stored_files(sqlite_shop) == ["manifest.json", "sqlite.dump.zst"]

    cluster.delete("backups", "gone")

    cluster.wait_for(lambda: cluster.get("backups", "gone") is None, timeout=30)
    assert stored_files(sqlite_shop) == []
    assert cluster.jobs() == []  # the Backup's Job went with it, the cleanup Job was removed


def test_retain_policy_keeps_the_backup(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "kept", sqlite_shop.spec(deletionPolicy="Retain"))
    assert cluster.wait_phase("backups", "kept", "Completed", "Failed")["phase"] == "Completed"
    cluster.delete("backups", "kept")
    cluster.wait_for(lambda: cluster.get("backups", "kept") is None, timeout=30)
    assert stored_files(sqlite_shop) == ["manifest.json", "sqlite.dump.zst"]


def test_storage_error_keeps_the_finalizer_and_reports_it(
    cluster: Cluster, lifeboat_operator: OperatorControl, pg_database: pg.PgDatabase, s3_bucket: Any
) -> None:
    pg.seed_sample_schema(pg_database, large_object=False)
    secrets_for(cluster, pg_database, s3_bucket)
    spec = postgres_backup_spec(pg_database, s3_bucket, deletionPolicy="Delete")
    cluster.create("backups", "stuck-delete", spec)
    status = cluster.wait_phase("backups", "stuck-delete", "Completed", "Failed")
    assert status["phase"] == "Completed", status
    client, bucket = s3_bucket.client, s3_bucket.bucket
    for item in client.list_objects_v2(Bucket=bucket)["Contents"]:
        client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)  # storage is gone: the cleanup cannot succeed

    cluster.delete("backups", "stuck-delete")

    def cleanup_failed() -> bool:
        conditions = cluster.status("backups", "stuck-delete").get("conditions") or []
        cleanup = next((c for c in conditions if c["type"] == "StorageCleanup"), {})
        return cleanup.get("status") == "False"

    cluster.wait_for(cleanup_failed, timeout=30)
    obj = cluster.get("backups", "stuck-delete")
    assert obj is not None
    assert obj["metadata"]["deletionTimestamp"]
    assert "lifeboat.dev/finalizer" in obj["metadata"]["finalizers"]
    cleanup = next(c for c in obj["status"]["conditions"] if c["type"] == "StorageCleanup")
    assert "BucketNotFound" in cleanup["message"]

    client.create_bucket(Bucket=bucket)  # storage is back: the retry finishes the deletion
    cluster.wait_for(lambda: cluster.get("backups", "stuck-delete") is None, timeout=30)
