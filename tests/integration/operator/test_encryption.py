"""Encrypted backups through the operator: a BackupStore with client-side encryption and SSE, a
Backup by storeRef, its Restore, and the key's failures (a wrong key, no key, a malformed one),
each ending in the reason the worker gave and the target untouched. The Jobs get the key only
from its Secret."""

from __future__ import annotations

import base64
import os
import sqlite3
from typing import Any

from lifeboat.cli.demo import fingerprint
from lifeboat.worker.encryption import EncryptionKey
from tests.integration.operator.conftest import Cluster, OperatorControl, SqliteShop
from tests.integration.operator.test_backup_restore import postgres_backup_spec, secrets_for
from tests.integration.operator.test_stores import s3_secret, s3_store_spec
from tests.support import postgres as pg
from tests.support.s3 import S3Bucket


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def key_id(key: str) -> str:
    return EncryptionKey.parse(key, "test").key_id


def container_env(cluster: Cluster, job_name: str) -> list[dict[str, Any]]:
    (job,) = [j for j in cluster.jobs() if j["metadata"]["name"] == job_name]
    env: list[dict[str, Any]] = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def test_a_store_with_encryption_and_sse_backs_up_and_restores_and_a_wrong_key_changes_nothing(
    cluster: Cluster, lifeboat_operator: OperatorControl, pg_database: pg.PgDatabase, s3_bucket: Any
) -> None:
    pg.seed_sample_schema(pg_database, large_object=False)
    original = pg_database.fingerprint()
    secrets_for(cluster, pg_database, s3_bucket)
    right, wrong = new_key(), new_key()
    cluster.secret("backup-key", {"key": right})
    cluster.secret("old-key", {"key": wrong})
    store = postgres_backup_spec(pg_database, s3_bucket)["storage"]
    store["s3"]["serverSideEncryption"] = {"type": "AES256"}
    store["encryption"] = {"keySecretRef": {"name": "backup-key"}}
    cluster.create("backupstores", "vault", store)
    spec = postgres_backup_spec(pg_database, s3_bucket)
    spec["storage"] = {"storeRef": {"name": "vault"}}

    cluster.create("backups", "shop-db", spec)
    status = cluster.wait_phase("backups", "shop-db", "Completed", "Failed")

    assert status["phase"] == "Completed", status
    artifact = status["artifact"]
    assert artifact["encryption"] == {"algorithm": "AES-256-GCM", "keyId": key_id(right)}
    assert artifact["serverSideEncryption"] == {"type": "AES256"}
    assert artifact["uri"].endswith(".enc")
    assert status["storage"]["encryption"] == {"keySecretRef": {"name": "backup-key", "key": "key"}}
    stored = s3_bucket.client.head_object(
        Bucket=s3_bucket.bucket, Key=artifact["uri"].removeprefix(f"s3://{s3_bucket.bucket}/")
    )
    assert stored["ServerSideEncryption"] == "AES256"
    env = container_env(cluster, status["jobName"])
    (key_entry,) = [e for e in env if e["name"] == "LIFEBOAT_ENCRYPTION_KEY"]
    assert key_entry == {
        "name": "LIFEBOAT_ENCRYPTION_KEY",
        "valueFrom": {"secretKeyRef": {"name": "backup-key", "key": "key"}},
    }

    pg_database.execute("DELETE FROM shop.orders WHERE id > 10")
    damaged = pg_database.fingerprint()
    cluster.create(
        "restores",
        "with-old-key",
        {"backupRef": {"name": "shop-db"}, "encryption": {"keySecretRef": {"name": "old-key"}}},
    )
    refused = cluster.wait_phase("restores", "with-old-key", "Completed", "Failed")
    assert (refused["phase"], refused["reason"]) == ("Failed", "EncryptionKeyMismatch"), refused
    assert key_id(right) in refused["message"]
    assert "Secret old-key, key key" in refused["message"]
    assert pg_database.fingerprint() == damaged

    cluster.create("restores", "shop-db-back", {"backupRef": {"name": "shop-db"}})
    restored = cluster.wait_phase("restores", "shop-db-back", "Completed", "Failed")
    assert restored["phase"] == "Completed", restored
    assert restored["verification"]["checksumVerified"] is True
    assert pg_database.fingerprint() == original


def test_restores_from_storage_need_the_key_and_a_malformed_key_is_named(
    cluster: Cluster,
    lifeboat_operator: OperatorControl,
    sqlite_shop: SqliteShop,
    s3_bucket: S3Bucket,
) -> None:
    s3_secret(cluster, s3_bucket)
    key = new_key()
    cluster.secret("backup-key", {"key": key})
    cluster.secret("bad-key", {"key": "this is not a key"})
    storage = s3_store_spec(s3_bucket)
    spec = sqlite_shop.spec(
        storage={**storage, "encryption": {"keySecretRef": {"name": "bad-key"}}}
    )
    cluster.create("backups", "bad", spec)
    bad = cluster.wait_phase("backups", "bad", "Completed", "Failed")
    assert (bad["phase"], bad["reason"]) == ("Failed", "EncryptionKeyInvalid"), bad
    assert "Secret bad-key, key key" in bad["message"]
    assert "this is not a key" not in str(bad)

    encryption = {"keySecretRef": {"name": "backup-key"}}
    cluster.create(
        "backups", "shop", sqlite_shop.spec(storage={**storage, "encryption": encryption})
    )
    status = cluster.wait_phase("backups", "shop", "Completed", "Failed")
    assert status["phase"] == "Completed", status
    original = fingerprint(sqlite_shop.db_path)
    with sqlite3.connect(sqlite_shop.db_path) as conn:
        conn.execute("DELETE FROM orders WHERE id > 10")
    damaged = fingerprint(sqlite_shop.db_path)
    path = status["artifact"]["manifestUri"].removeprefix(f"s3://{s3_bucket.bucket}/team/")
    target = sqlite_shop.spec()["database"]

    source: dict[str, Any] = {"storage": storage, "path": path.rsplit("/", 1)[0]}
    cluster.create("restores", "no-key", {"source": source, "target": target})
    refused = cluster.wait_phase("restores", "no-key", "Completed", "Failed")
    assert (refused["phase"], refused["reason"]) == ("Failed", "EncryptionKeyRequired"), refused
    assert fingerprint(sqlite_shop.db_path) == damaged

    keyed = {**source, "storage": {**storage, "encryption": encryption}}
    cluster.create("restores", "with-key", {"source": keyed, "target": target})
    restored = cluster.wait_phase("restores", "with-key", "Completed", "Failed")
    assert restored["phase"] == "Completed", restored
    assert fingerprint(sqlite_shop.db_path) == original
