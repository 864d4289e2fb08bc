"""BackupStore: storage defined once. Backups and Restores name it with storeRef; a Backup
records where it wrote (status.storage), so editing or deleting the store later never loses a
backup; a missing store is waited for, then fails; each store is checked by a short Job with its
own credentials, and its status says whether it is reachable and why not.

The real operator, the test API server, the Job runner (local `lifeboat` processes) and the real
S3 server (moto over HTTP)."""

from __future__ import annotations

import json
import socket
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lifeboat.cli.demo import fingerprint
from tests.integration.operator.conftest import (
    GROUP,
    TEST_IMAGE,
    VERSION,
    Cluster,
    OperatorControl,
    SqliteShop,
)
from tests.support.e2e import E2E_SETTINGS
from tests.support.s3 import EnforcedAuth, S3Bucket

STORES = "backupstores"


def s3_store_spec(
    s3: S3Bucket, *, bucket: str | None = None, credentials: str = "s3"
) -> dict[str, Any]:
    return {
        "s3": {
            "bucket": bucket or s3.bucket,
            "prefix": "team/",
            "endpoint": E2E_SETTINGS.reachable_url(s3.endpoint),
            "region": "us-east-1",
            "credentialsSecretRef": {"name": credentials},
            "forcePathStyle": True,
        }
    }


def s3_secret(cluster: Cluster, s3: S3Bucket, name: str = "s3", **keys: str) -> dict[str, str]:
    data = {
        "AWS_ACCESS_KEY_ID": keys.get("key_id", s3.env["AWS_ACCESS_KEY_ID"]),
        "AWS_SECRET_ACCESS_KEY": keys.get("secret", s3.env["AWS_SECRET_ACCESS_KEY"]),
    }
    cluster.secret(name, data)
    return data


def sqlite_by_ref(store: str = "backups", **extra: Any) -> dict[str, Any]:
    return {
        "database": {"engine": "sqlite", "persistentVolumeClaim": "app-data", "path": "shop.db"},
        "storage": {"storeRef": {"name": store}},
        **extra,
    }


def edit_store(cluster: Cluster, name: str, spec: dict[str, Any]) -> None:
    cluster.custom.patch_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, STORES, name, {"spec": spec}
    )


def event_reasons(cluster: Cluster, name: str, *expected: str) -> bool:
    """For wait_for: the object's Events have exactly these reasons, each once (in any order:
    the API does not promise one)."""
    reasons = sorted(reason for reason, _ in cluster.events_for(name))
    assert reasons == sorted(expected), cluster.events_for(name)
    return True


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def wait_ready(
    cluster: Cluster, name: str, value: str, *, generation: int = 1, timeout: float = 30
) -> dict[str, Any]:
    """Wait for the store's Ready condition to say `value` for this generation's check."""

    def settled() -> dict[str, Any] | None:
        status = cluster.status(STORES, name)
        if status.get("observedGeneration") == generation and ready(status).get("status") == value:
            return status
        return None

    found: dict[str, Any] = cluster.wait_for(settled, timeout=timeout)
    return found


@pytest.fixture
def other_bucket(s3_bucket: S3Bucket) -> Iterator[str]:
    """A second, empty bucket on the same server."""
    name = f"lifeboat-other-{uuid.uuid4().hex[:12]}"
    s3_bucket.client.create_bucket(Bucket=name)
    yield name
    listed = s3_bucket.client.list_objects_v2(Bucket=name).get("Contents", [])
    for item in listed:
        s3_bucket.client.delete_object(Bucket=name, Key=item["Key"])
    s3_bucket.client.delete_bucket(Bucket=name)


@pytest.fixture
def operator_with(cluster: Cluster) -> Iterator[Callable[..., OperatorControl]]:
    """Start the real operator with some settings changed (instead of `lifeboat_operator`)."""
    started: list[OperatorControl] = []

    def start(**changes: Any) -> OperatorControl:
        control = OperatorControl(cluster.server, cluster.kubeconfig)
        control.start(**changes)
        started.append(control)
        return control

    yield start
    for control in started:
        control.stop()


# -- Backups and Restores by storeRef ---------------------------------------------------------


def test_backup_by_store_ref_writes_into_the_stores_bucket_and_records_it(
    cluster: Cluster,
    lifeboat_operator: OperatorControl,
    sqlite_shop: SqliteShop,
    s3_bucket: S3Bucket,
) -> None:
    s3_secret(cluster, s3_bucket)
    cluster.create(STORES, "backups", s3_store_spec(s3_bucket))
    cluster.create("backups", "shop", sqlite_by_ref())

    status = cluster.wait_phase("backups", "shop", "Completed", "Failed")

    assert status["phase"] == "Completed", status
    prefix = f"s3://{s3_bucket.bucket}/team/{cluster.namespace}/shop-"
    assert status["artifact"]["uri"].startswith(prefix)
    assert status["storage"] == {
        "s3": {
            "bucket": s3_bucket.bucket,
            "prefix": "team/",
            "endpoint": E2E_SETTINGS.reachable_url(s3_bucket.endpoint),
            "region": "us-east-1",
            "credentialsSecretRef": {
                "name": "s3",
                "accessKeyIdKey": "AWS_ACCESS_KEY_ID",
                "secretAccessKeyKey": "AWS_SECRET_ACCESS_KEY",
            },
            "forcePathStyle": True,
        }
    }
    keys = s3_bucket.keys()
    assert any(key.endswith("/manifest.json") for key in keys), keys
    assert all(key.startswith(f"team/{cluster.namespace}/shop-") for key in keys), keys
    (backup_job,) = [j for j in cluster.jobs() if j["metadata"]["name"] == status["jobName"]]
    env = backup_job["spec"]["template"]["spec"]["containers"][0]["env"]
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert secret_env["AWS_ACCESS_KEY_ID"] == {"name": "s3", "key": "AWS_ACCESS_KEY_ID"}

    # A disaster-recovery Restore names the store too: spec.source.storage.storeRef.
    original = fingerprint(sqlite_shop.db_path)
    with sqlite3.connect(sqlite_shop.db_path) as conn:
        conn.execute("DELETE FROM orders WHERE id > 10")
    path = status["artifact"]["manifestUri"].removeprefix(f"s3://{s3_bucket.bucket}/team/")
    source = {"storage": {"storeRef": {"name": "backups"}}, "path": path.rsplit("/", 1)[0]}
    target = sqlite_by_ref()["database"]
    cluster.create("restores", "from-store", {"source": source, "target": target})
    restored = cluster.wait_phase("restores", "from-store", "Completed", "Failed")
    assert restored["phase"] == "Completed", restored
    assert fingerprint(sqlite_shop.db_path) == original


def test_restores_read_status_storage_after_the_store_moved_and_after_it_was_deleted(
    cluster: Cluster,
    lifeboat_operator: OperatorControl,
    sqlite_shop: SqliteShop,
    s3_bucket: S3Bucket,
    other_bucket: str,
) -> None:
    s3_secret(cluster, s3_bucket)
    cluster.create(STORES, "backups", s3_store_spec(s3_bucket))
    cluster.create("backups", "shop", sqlite_by_ref())
    assert cluster.wait_phase("backups", "shop", "Completed", "Failed")["phase"] == "Completed"
    original = fingerprint(sqlite_shop.db_path)

    edit_store(cluster, "backups", {"s3": {"bucket": other_bucket}})
    wait_ready(cluster, "backups", "True", generation=2)  # the store now points elsewhere
    with sqlite3.connect(sqlite_shop.db_path) as conn:
        conn.execute("DELETE FROM orders")
    cluster.create("restores", "after-edit", {"backupRef": {"name": "shop"}})
    restored = cluster.wait_phase("restores", "after-edit", "Completed", "Failed")
    assert restored["phase"] == "Completed", restored
    assert restored["verification"]["artifactUri"].startswith(f"s3://{s3_bucket.bucket}/")
    assert fingerprint(sqlite_shop.db_path) == original
    assert s3_bucket.client.list_objects_v2(Bucket=other_bucket).get("KeyCount", 0) == 0

    cluster.delete(STORES, "backups")
    cluster.wait_for(lambda: cluster.get(STORES, "backups") is None)
    with sqlite3.connect(sqlite_shop.db_path) as conn:
        conn.execute("DELETE FROM customers WHERE id > 3")
    cluster.create("restores", "after-delete", {"backupRef": {"name": "shop"}})
    restored = cluster.wait_phase("restores", "after-delete", "Completed", "Failed")
    assert restored["phase"] == "Completed", restored
    assert fingerprint(sqlite_shop.db_path) == original


def test_storage_cleanup_deletes_from_where_the_backup_was_written(
    cluster: Cluster,
    lifeboat_operator: OperatorControl,
    sqlite_shop: SqliteShop,
    s3_bucket: S3Bucket,
    other_bucket: str,
) -> None:
    s3_secret(cluster, s3_bucket)
    cluster.create(STORES, "backups", s3_store_spec(s3_bucket))
    cluster.create("backups", "gone", sqlite_by_ref(deletionPolicy="Delete"))
    assert cluster.wait_phase("backups", "gone", "Completed", "Failed")["phase"] == "Completed"
    assert s3_bucket.keys()
    edit_store(cluster, "backups", {"s3": {"bucket": other_bucket}})

    cluster.delete("backups", "gone")

    cluster.wait_for(lambda: cluster.get("backups", "gone") is None, timeout=30)
    assert s3_bucket.keys() == []


def test_a_backup_waits_for_a_store_applied_later_then_completes(
    cluster: Cluster,
    operator_with: Callable[..., OperatorControl],
    sqlite_shop: SqliteShop,
    s3_bucket: S3Bucket,
) -> None:
    operator_with(store_wait_seconds=60.0)
    s3_secret(cluster, s3_bucket)
    cluster.create("backups", "early", sqlite_by_ref())
    cluster.wait_for(lambda: cluster.status("backups", "early").get("reason") == "WaitingForStore")
    waiting = cluster.status("backups", "early")
    assert waiting["phase"] == "Pending"
    assert (
        "BackupStore backups (spec.storage.storeRef.name) does not exist yet"
        in (waiting["message"])
    )
    assert cluster.jobs() == []

    cluster.create(STORES, "backups", s3_store_spec(s3_bucket))  # GitOps applies it later

    status = cluster.wait_phase("backups", "early", "Completed", "Failed")
    assert status["phase"] == "Completed", status
    assert status["storage"]["s3"]["bucket"] == s3_bucket.bucket


def test_a_backup_naming_a_store_that_never_appears_fails_store_not_found(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "orphan", sqlite_by_ref(store="nowhere"))

    status = cluster.wait_phase("backups", "orphan", "Completed", "Failed")

    assert (status["phase"], status["reason"]) == ("Failed", "StoreNotFound"), status
    assert "BackupStore nowhere (spec.storage.storeRef.name) does not exist" in status["message"]
    assert "storage" not in status
    assert cluster.jobs() == []
    assert ("StoreNotFound", f"Failed: {status['message']}") in cluster.events_for("orphan")


def test_a_store_that_is_not_ready_does_not_block_a_backup_but_is_named_in_its_message(
    cluster: Cluster,
    lifeboat_operator: OperatorControl,
    sqlite_shop: SqliteShop,
    s3_bucket: S3Bucket,
) -> None:
    s3_secret(cluster, s3_bucket)
    cluster.create(STORES, "backups", s3_store_spec(s3_bucket, bucket="no-such-bucket-here"))
    wait_ready(cluster, "backups", "False")
    cluster.create("backups", "tried", sqlite_by_ref())

    status = cluster.wait_phase("backups", "tried", "Completed", "Failed")

    assert (status["phase"], status["reason"]) == ("Failed", "BucketNotFound"), status
    assert status["jobName"]  # the Job ran: its own error is the truth
    assert (
        "BackupStore backups was not Ready at its last check (BucketNotFound" in (status["message"])
    )


# -- store checks ----------------------------------------------------------------------------


def test_a_store_with_a_good_bucket_is_ready_reachable(
    cluster: Cluster, lifeboat_operator: OperatorControl, s3_bucket: S3Bucket
) -> None:
    s3_secret(cluster, s3_bucket)
    cluster.create(STORES, "backups", s3_store_spec(s3_bucket))

    status = wait_ready(cluster, "backups", "True")

    assert status["reason"] == "Reachable"
    assert status["uri"] == f"s3://{s3_bucket.bucket}/team/"
    assert status["lastCheckTime"] == status["lastSuccessTime"]
    assert ready(status)["reason"] == "Reachable"
    assert ready(status)["observedGeneration"] == 1
    (check,) = [j for j in cluster.jobs() if j["metadata"]["name"] == status["checkJobName"]]
    pod = check["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["check", f"s3://{s3_bucket.bucket}/team/"]
    assert pod["serviceAccountName"] == "lifeboat-worker"
    assert check["spec"]["ttlSecondsAfterFinished"] > 0
    assert check["metadata"]["ownerReferences"][0]["kind"] == "BackupStore"
    cluster.wait_for(lambda: event_reasons(cluster, "backups", "Reachable"))


def test_a_missing_bucket_is_bucket_not_found_until_it_is_created_without_event_spam(
    cluster: Cluster, operator_with: Callable[..., OperatorControl], s3_bucket: S3Bucket
) -> None:
    fast_checks = operator_with(store_check_seconds=1.0)
    s3_secret(cluster, s3_bucket)
    bucket = f"lifeboat-later-{uuid.uuid4().hex[:12]}"
    cluster.create(STORES, "backups", s3_store_spec(s3_bucket, bucket=bucket))

    status = wait_ready(cluster, "backups", "False")
    assert status["reason"] == "BucketNotFound"
    assert ready(status)["reason"] == "BucketNotFound"
    assert f"bucket '{bucket}' does not exist" in status["message"]
    assert "lastSuccessTime" not in status
    first_check = status["lastCheckTime"]
    cluster.wait_for(  # checked again (every second here) ...
        lambda: cluster.status(STORES, "backups")["lastCheckTime"] != first_check, timeout=20
    )
    assert ready(cluster.status(STORES, "backups"))["status"] == "False"

    s3_bucket.client.create_bucket(Bucket=bucket)
    try:
        recovered = wait_ready(cluster, "backups", "True")
        assert recovered["reason"] == "Reachable"
        assert recovered["lastSuccessTime"] == recovered["lastCheckTime"]
        # ... yet one Event per change of Ready, not one per check.
        cluster.wait_for(lambda: event_reasons(cluster, "backups", "BucketNotFound", "Reachable"))
    finally:
        fast_checks.stop()  # before the bucket goes, or the next check would say so
        s3_bucket.client.delete_bucket(Bucket=bucket)
    checks = [j for j in cluster.jobs() if j["metadata"]["labels"]["lifeboat.dev/owner-kind"]]
    assert len({j["metadata"]["name"] for j in checks}) >= 3


def test_a_spec_edit_is_checked_at_once(
    cluster: Cluster, lifeboat_operator: OperatorControl, s3_bucket: S3Bucket
) -> None:
    """The default interval is five minutes: the new result comes from the edit itself."""
    s3_secret(cluster, s3_bucket)
    cluster.create(STORES, "backups", s3_store_spec(s3_bucket))
    wait_ready(cluster, "backups", "True")

    edit_store(cluster, "backups", {"s3": {"bucket": "not-there-at-all"}})

    status = wait_ready(cluster, "backups", "False", generation=2)
    assert status["reason"] == "BucketNotFound"
    assert status["uri"] == "s3://not-there-at-all/team/"


def test_wrong_credentials_are_access_denied_and_no_secret_reaches_status_or_events(
    cluster: Cluster,
    lifeboat_operator: OperatorControl,
    s3_bucket: S3Bucket,
    s3_enforced_auth: EnforcedAuth,
) -> None:
    wrong = s3_secret(
        cluster,
        s3_bucket,
        name="wrong",
        key_id=s3_enforced_auth.allowed.access_key_id,
        secret="not-the-secret-" + uuid.uuid4().hex,
    )
    good = s3_secret(
        cluster,
        s3_bucket,
        name="good",
        key_id=s3_enforced_auth.allowed.access_key_id,
        secret=s3_enforced_auth.allowed.secret_access_key,
    )
    cluster.create(STORES, "denied", s3_store_spec(s3_bucket, credentials="wrong"))
    cluster.create(STORES, "allowed", s3_store_spec(s3_bucket, credentials="good"))

    denied = wait_ready(cluster, "denied", "False")
    allowed = wait_ready(cluster, "allowed", "True")

    assert denied["reason"] == "AccessDenied", denied
    assert "was refused" in denied["message"]
    assert allowed["reason"] == "Reachable"
    cluster.wait_for(lambda: cluster.events_for("denied") and cluster.events_for("allowed"))
    everything = json.dumps(
        [
            cluster.get(STORES, "denied"),
            cluster.get(STORES, "allowed"),
            cluster.events_for("denied"),
            cluster.events_for("allowed"),
            cluster.jobs(),
        ]
    )
    for value in (wrong["AWS_SECRET_ACCESS_KEY"], good["AWS_SECRET_ACCESS_KEY"]):
        assert value not in everything


def test_an_endpoint_nobody_answers_is_storage_unreachable(
    cluster: Cluster, lifeboat_operator: OperatorControl, s3_bucket: S3Bucket
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s3_secret(cluster, s3_bucket)
    spec = s3_store_spec(s3_bucket)
    spec["s3"]["endpoint"] = f"http://127.0.0.1:{port}"
    cluster.create(STORES, "backups", spec)

    status = wait_ready(cluster, "backups", "False")

    assert status["reason"] == "StorageUnreachable", status
    assert f"cannot reach the S3 endpoint http://127.0.0.1:{port}" in status["message"]
    assert "lastSuccessTime" not in status


def test_a_check_whose_pod_cannot_start_fails_with_kubernetes_reason(
    cluster: Cluster, lifeboat_operator: OperatorControl, s3_bucket: S3Bucket
) -> None:
    cluster.runner.fail_image_pull(TEST_IMAGE)
    s3_secret(cluster, s3_bucket)
    cluster.create(STORES, "backups", s3_store_spec(s3_bucket))

    status = wait_ready(cluster, "backups", "False")

    # The kubelet reports ErrImagePull, then ImagePullBackOff between retries: which one the
    # check sees first is timing (test_failures.py accepts the same two for Backups).
    assert status["reason"] in ("ErrImagePull", "ImagePullBackOff"), status
    assert "cannot start" in status["message"]
    cluster.wait_for(lambda: cluster.jobs() == [])  # deleted: it must not start later


def test_an_operator_restart_follows_the_check_in_flight_instead_of_starting_another(
    cluster: Cluster, lifeboat_operator: OperatorControl, s3_bucket: S3Bucket
) -> None:
    cluster.runner.hold_when(lambda namespace, name: "-check-" in name)
    s3_secret(cluster, s3_bucket)
    cluster.create(STORES, "backups", s3_store_spec(s3_bucket))
    cluster.wait_for(lambda: cluster.status(STORES, "backups").get("checkJobName"))
    checking = cluster.status(STORES, "backups")
    assert (checking["reason"], ready(checking)["status"]) == ("Checking", "Unknown")

    lifeboat_operator.stop()
    lifeboat_operator.start()
    cluster.runner.hold_when(None)
    cluster.runner.release(checking["checkJobName"], cluster.namespace)

    status = wait_ready(cluster, "backups", "True")
    assert status["checkJobName"] == checking["checkJobName"]
    assert [j["metadata"]["name"] for j in cluster.jobs()] == [checking["checkJobName"]]
    assert cluster.runner.starts(checking["checkJobName"], cluster.namespace) == 1
