"""Every way a request can go wrong ends in Failed with a reason, never an endless Pending."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from lifeboat.builders.naming import child_name
from tests.integration.operator.conftest import (
    TEST_IMAGE,
    Cluster,
    OperatorControl,
    SqliteShop,
)
from tests.integration.operator.test_backup_restore import postgres_backup_spec, secrets_for
from tests.support import postgres as pg
from tests.support.kube.jobs import Image


def test_a_wrong_password_fails_with_the_workers_reason_authentication_failed(
    cluster: Cluster, lifeboat_operator: OperatorControl, pg_database: pg.PgDatabase, s3_bucket: Any
) -> None:
    """The worker's own reason (from the Pod's termination message), not the Job's mechanism
    (PodFailurePolicy), in status.reason, the Stalled condition and the Warning Event; the
    refusal (exit 7) is not retried; and the password appears nowhere."""
    secrets_for(cluster, pg_database, s3_bucket)
    wrong = "not-the-password-" + "0xdeadbeef"
    cluster.core.patch_namespaced_secret(
        "db", cluster.namespace, {"stringData": {"password": wrong}}
    )
    cluster.create("backups", "bad-password", postgres_backup_spec(pg_database, s3_bucket))

    status = cluster.wait_phase("backups", "bad-password", "Completed", "Failed")

    assert (status["phase"], status["reason"]) == ("Failed", "AuthenticationFailed"), status
    assert "was refused" in status["message"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Reconciling"]["status"] == "False"
    stalled = conditions["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "AuthenticationFailed")
    assert stalled["message"] == status["message"]
    cluster.wait_for(
        lambda: (
            ("AuthenticationFailed", f"Failed: {status['message']}")
            in cluster.events_for("bad-password")
        ),
        message="a Warning Event AuthenticationFailed",
    )
    (job,) = cluster.jobs()
    failed = {c["type"]: c["reason"] for c in job["status"]["conditions"]}
    assert failed["Failed"] == "PodFailurePolicy"  # Kubernetes' reason stays on the Job
    assert job["status"]["failed"] == 1  # exit 7 fails the Job at once: no retry
    everything = str(status) + str(cluster.events_for("bad-password")) + str(cluster.jobs())
    assert wrong not in everything
    assert not s3_bucket.client.list_objects_v2(Bucket=s3_bucket.bucket).get("Contents")


def test_image_that_cannot_be_pulled_fails_instead_of_hanging(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.runner.fail_image_pull("registry.invalid/lifeboat:missing")
    cluster.create(
        "backups", "no-image", sqlite_shop.spec(job={"image": "registry.invalid/lifeboat:missing"})
    )
    status = cluster.wait_phase("backups", "no-image", "Completed", "Failed")
    assert status["phase"] == "Failed"
    assert status["reason"] in ("ErrImagePull", "ImagePullBackOff")
    cluster.wait_for(lambda: cluster.jobs() == [])  # the stuck Job is removed


def test_a_job_that_vanishes_fails_the_backup(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.runner.hold_when(lambda namespace, name: True)
    created = cluster.create("backups", "vanishing", sqlite_shop.spec())
    job = child_name("vanishing", created["metadata"]["uid"], "backup")
    cluster.wait_for(lambda: cluster.status("backups", "vanishing").get("jobName") == job)
    cluster.batch.delete_namespaced_job(job, cluster.namespace, propagation_policy="Background")
    status = cluster.wait_phase("backups", "vanishing", "Completed", "Failed")
    assert status["reason"] == "JobVanished"
    assert job in status["message"]


def test_deadline_exceeded_fails_the_backup(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop, tmp_path: Path
) -> None:
    stuck_worker = tmp_path / "stuck-worker"
    stuck_worker.write_text("#!/bin/sh\nexec sleep 600\n")
    stuck_worker.chmod(stuck_worker.stat().st_mode | stat.S_IEXEC)
    cluster.runner.images["lifeboat:stuck"] = Image(executables={"lifeboat": str(stuck_worker)})
    cluster.create(
        "backups",
        "too-slow",
        sqlite_shop.spec(job={"image": "lifeboat:stuck", "activeDeadlineSeconds": 1}),
    )
    status = cluster.wait_phase("backups", "too-slow", "Completed", "Failed", timeout=30)
    assert status["reason"] == "DeadlineExceeded"


def test_restore_of_a_missing_backup_waits_then_fails(
    cluster: Cluster, lifeboat_operator: OperatorControl
) -> None:
    cluster.create("restores", "orphan", {"backupRef": {"name": "does-not-exist"}})
    waiting = cluster.wait_phase("restores", "orphan", "Pending", "Failed")
    assert waiting["reason"] in ("WaitingForBackup", "BackupNotFound")
    status = cluster.wait_phase("restores", "orphan", "Failed", timeout=30)
    assert status["reason"] == "BackupNotFound"
    assert "does-not-exist" in status["message"]
    assert cluster.jobs() == []


def test_restore_of_a_failed_backup_fails_with_the_backups_reason(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    spec = sqlite_shop.spec()
    spec["database"]["path"] = "missing.db"
    cluster.create("backups", "broken", spec)
    assert cluster.wait_phase("backups", "broken", "Completed", "Failed")["phase"] == "Failed"
    cluster.create("restores", "from-broken", {"backupRef": {"name": "broken"}})
    status = cluster.wait_phase("restores", "from-broken", "Completed", "Failed")
    assert status["reason"] == "BackupFailed"
    assert "no SQLite database" in status["message"]


def test_restore_into_another_engine_is_refused_with_the_field_named(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "lite", sqlite_shop.spec())
    assert cluster.wait_phase("backups", "lite", "Completed", "Failed")["phase"] == "Completed"
    target = {"engine": "postgresql", "host": "db.example", "name": "shop", "user": "u"}
    cluster.create("restores", "cross", {"backupRef": {"name": "lite"}, "target": target})
    status = cluster.wait_phase("restores", "cross", "Completed", "Failed")
    assert status["reason"] == "InvalidSpec"
    assert status["message"].startswith("spec.target.engine")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"database": {"engine": "oracle"}}, "spec.database.engine"),
        ({"compression": "lz4"}, "spec.compression"),
        ({"storage": {}}, "spec.storage"),
    ],
)
def test_invalid_specs_are_rejected_by_the_api_with_the_field_named(
    cluster: Cluster, sqlite_shop: SqliteShop, change: dict[str, Any], field: str
) -> None:
    spec = sqlite_shop.spec()
    for key, value in change.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) and value else value
    with pytest.raises(ApiException) as info:
        cluster.create("backups", "invalid", spec)
    assert info.value.status == 422
    assert field in str(info.value.body)


def test_spec_is_immutable(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "fixed", sqlite_shop.spec())
    with pytest.raises(ApiException) as info:
        cluster.custom.patch_namespaced_custom_object(
            "lifeboat.dev",
            "v1alpha1",
            cluster.namespace,
            "backups",
            "fixed",
            {"spec": {"compression": "gzip"}},
        )
    assert info.value.status == 422
    assert "create a new Backup" in str(info.value.body)


def test_default_image_is_the_operators_setting(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "imaged", sqlite_shop.spec())
    cluster.wait_phase("backups", "imaged", "Completed", "Failed")
    (job,) = cluster.jobs()
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == TEST_IMAGE


def test_restore_that_fails_verification_reports_what_did_not_match(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    import json

    from lifeboat.cli.demo import fingerprint

    cluster.create("backups", "tampered", sqlite_shop.spec())
    assert cluster.wait_phase("backups", "tampered", "Completed", "Failed")["phase"] == "Completed"
    (manifest_path,) = sqlite_shop.backups.rglob("manifest.json")
    manifest = json.loads(manifest_path.read_text())
    for table in manifest["tables"]:
        if table["name"] == "orders":
            table["rows"] += 1  # the manifest now promises a row the artifact does not hold
    manifest_path.write_text(json.dumps(manifest))
    before = fingerprint(sqlite_shop.db_path)

    cluster.create("restores", "refused", {"backupRef": {"name": "tampered"}})
    status = cluster.wait_phase("restores", "refused", "Completed", "Failed")

    assert (status["phase"], status["reason"]) == ("Failed", "VerificationFailed")
    assert "the manifest says 301" in status["message"]
    verification = status["verification"]
    assert verification["checksumVerified"] is True
    assert verification["rowCountsMatched"] is False
    assert verification["mismatches"] == ["table orders has 300 rows, the manifest says 301"]
    assert fingerprint(sqlite_shop.db_path) == before
