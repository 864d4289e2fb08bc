"""A Backup whose Job's Pod never starts ends Failed with its own reason, in bounded time.

Each way a Pod fails to start in a cluster: the API server refuses it (a ResourceQuota:
FailedCreate), no node fits it (Unschedulable), its volume cannot attach or mount
(FailedAttachVolume/FailedMount), its image cannot be pulled (test_failures.py), or the worker
hangs past the Job's deadline (DeadlineExceeded, here from the operator's default). The reason
and Kubernetes' own message reach status.reason/message, the Stalled condition and a Warning
Event, and the Job is deleted so it cannot start later.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from lifeboat.builders.jobs import JobDefaults
from tests.integration.operator.conftest import Cluster, OperatorControl, SqliteShop
from tests.support.kube.jobs import Image

NO_SUCH_NODE = {"lifeboat.dev/test-node": "does-not-exist"}


def spec_that_never_runs() -> dict[str, Any]:
    """A valid Backup whose worker would fail at once: these tests never get that far, so they
    need no database and no storage (and run unchanged on a real cluster)."""
    return {
        "database": {"engine": "postgresql", "host": "db.invalid", "name": "shop", "user": "u"},
        "storage": {"s3": {"bucket": "unused", "endpoint": "http://s3.invalid:9000"}},
    }


def warning_events(cluster: Cluster, name: str) -> list[tuple[str, str]]:
    events = cluster.core.list_namespaced_event(cluster.namespace).items
    return [
        (e.reason, e.message or "")
        for e in events
        if e.involved_object.name == name and e.type == "Warning"
    ]


def assert_failed_with(cluster: Cluster, name: str, reason: str, detail: str) -> dict[str, Any]:
    """Failed with `reason` and Kubernetes' `detail`, said in status, condition and Event, and
    no Job left behind."""
    status = cluster.wait_phase("backups", name, "Completed", "Failed", timeout=30)
    assert (status["phase"], status["reason"]) == ("Failed", reason), status
    assert detail in status["message"]
    conditions = {c["type"]: c for c in status["conditions"]}
    stalled = conditions["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", reason)
    assert stalled["message"] == status["message"]
    assert (conditions["Ready"]["status"], conditions["Reconciling"]["status"]) == (
        "False",
        "False",
    )
    cluster.wait_for(
        lambda: any(r == reason and detail in m for r, m in warning_events(cluster, name)),
        message=f"a Warning Event {reason} on {name}",
    )
    cluster.wait_for(lambda: cluster.jobs() == [], message="the Job is deleted")
    return status


def test_a_pod_refused_by_a_resource_quota_fails_with_failed_create(
    cluster: Cluster, lifeboat_operator: OperatorControl
) -> None:
    cluster.core.create_namespaced_resource_quota(
        cluster.namespace, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    )
    cluster.create("backups", "over-quota", spec_that_never_runs())

    status = assert_failed_with(
        cluster,
        "over-quota",
        "FailedCreate",
        "exceeded quota: no-pods, requested: pods=1, used: pods=0, limited: pods=0",
    )

    assert status["message"].startswith("the Job could not create its Pod for ")
    assert cluster.core.list_namespaced_pod(cluster.namespace).items == []


def test_an_unschedulable_pod_fails_with_unschedulable(
    cluster: Cluster, lifeboat_operator: OperatorControl
) -> None:
    cluster.create(
        "backups", "no-node", {**spec_that_never_runs(), "job": {"nodeSelector": NO_SUCH_NODE}}
    )

    status = assert_failed_with(
        cluster, "no-node", "Unschedulable", "didn't match Pod's node affinity/selector"
    )

    assert status["message"].startswith("the worker Pod could not be scheduled for ")


def test_an_unschedulable_pod_gets_its_own_longer_limit_and_runs_once_a_node_fits(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    """stuck_pod_seconds (1 s here) is not the limit for scheduling: a node that appears within
    unschedulable_seconds (an autoscaler's) still runs the backup."""
    lifeboat_operator.stop()
    lifeboat_operator.start(unschedulable_seconds=60)
    cluster.create("backups", "patient", sqlite_shop.spec(job={"nodeSelector": {"disk": "ssd"}}))

    def failed_scheduling_count() -> int:
        events = cluster.core.list_namespaced_event(cluster.namespace).items
        return sum(e.count or 1 for e in events if e.reason == "FailedScheduling")

    # The scheduler says so once a second: three times is well past stuck_pod_seconds and
    # several resyncs of the operator.
    cluster.wait_for(lambda: failed_scheduling_count() >= 3, timeout=15)
    status = cluster.status("backups", "patient")
    assert status["phase"] in ("Pending", "Running"), status

    cluster.runner.node.labels["disk"] = "ssd"
    status = cluster.wait_phase("backups", "patient", "Completed", "Failed", timeout=30)
    assert status["phase"] == "Completed", status


def test_a_volume_that_cannot_attach_fails_with_failed_attach_volume(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.runner.fail_volume("app-data", "FailedAttachVolume")
    cluster.create("backups", "no-attach", sqlite_shop.spec())

    status = assert_failed_with(
        cluster,
        "no-attach",
        "FailedAttachVolume",
        'Multi-Attach error for volume "pvc-app-data" Volume is already exclusively attached',
    )

    assert status["message"].startswith("the worker Pod could not attach or mount its volumes")
    assert cluster.runner.starts(status["jobName"], cluster.namespace) == 0


def test_a_volume_that_cannot_mount_fails_with_failed_mount(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.runner.fail_volume("backups", "FailedMount", "MountVolume.SetUp failed: nfs: timeout")
    cluster.create("backups", "no-mount", sqlite_shop.spec())
    assert_failed_with(cluster, "no-mount", "FailedMount", "MountVolume.SetUp failed: nfs: timeout")


def test_the_operators_default_deadline_ends_a_hung_worker_with_deadline_exceeded(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop, tmp_path: Path
) -> None:
    hung_worker = tmp_path / "hung-worker"
    hung_worker.write_text("#!/bin/sh\nexec sleep 600\n")
    hung_worker.chmod(hung_worker.stat().st_mode | stat.S_IEXEC)
    cluster.runner.images["lifeboat:hung"] = Image(executables={"lifeboat": str(hung_worker)})
    lifeboat_operator.stop()
    lifeboat_operator.start(
        job_defaults=JobDefaults(image="lifeboat:hung", active_deadline_seconds=1)
    )
    cluster.runner.hold_when(lambda namespace, name: name.startswith("own-deadline-"))
    cluster.create("backups", "hung", sqlite_shop.spec())
    cluster.create("backups", "own-deadline", sqlite_shop.spec(job={"activeDeadlineSeconds": 900}))

    status = cluster.wait_phase("backups", "hung", "Completed", "Failed", timeout=30)

    assert status["reason"] == "DeadlineExceeded"
    assert status["message"] == "Job was active longer than specified deadline"
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "DeadlineExceeded"
    cluster.wait_for(
        lambda: (
            ("DeadlineExceeded", f"Failed: {status['message']}")
            in (warning_events(cluster, "hung"))
        )
    )
    deadlines = {
        job["metadata"]["labels"]["app.kubernetes.io/instance"]: job["spec"].get(
            "activeDeadlineSeconds"
        )
        for job in cluster.jobs()
    }
    assert deadlines == {"hung": 1, "own-deadline": 900}  # spec.job's own deadline wins


def test_a_cleanup_job_refused_by_a_quota_keeps_the_finalizer_and_says_why(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "kept-by-quota", sqlite_shop.spec(deletionPolicy="Delete"))
    done = cluster.wait_phase("backups", "kept-by-quota", "Completed", "Failed")
    assert done["phase"] == "Completed", done
    cluster.core.create_namespaced_resource_quota(
        cluster.namespace, {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    )
    cluster.delete("backups", "kept-by-quota")

    def cleanup_condition() -> dict[str, Any]:
        conditions = cluster.status("backups", "kept-by-quota").get("conditions") or []
        found: dict[str, Any] = next((c for c in conditions if c["type"] == "StorageCleanup"), {})
        return found if found.get("status") == "False" else {}

    condition = cluster.wait_for(cleanup_condition, timeout=30)
    assert condition["reason"] == "CleanupFailed"
    assert "exceeded quota: no-pods" in condition["message"]
    obj = cluster.get("backups", "kept-by-quota")
    assert obj is not None
    assert "lifeboat.dev/finalizer" in obj["metadata"]["finalizers"]

    cluster.core.delete_namespaced_resource_quota("no-pods", cluster.namespace)
    cluster.wait_for(lambda: cluster.get("backups", "kept-by-quota") is None, timeout=30)
    assert list(sqlite_shop.backups.rglob("*.json")) == []
