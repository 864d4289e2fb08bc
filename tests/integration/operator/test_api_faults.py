"""A flaky Kubernetes API never fails a request nor doubles its work: throttling (429 with
Retry-After), 5xx, a create whose answer is lost, Conflicts on status writes, dropped
connections, dropped watches and an expired resourceVersion (410 Gone) are retried or re-listed,
and every Backup and Restore still ends Completed with exactly one Job, run once.

Each test checks that its faults really fired (the test server's `faults.fired` record), so none
can pass because nothing happened."""

from __future__ import annotations

from typing import Any

import pytest

from lifeboat.builders.naming import child_name
from tests.integration.operator.conftest import Cluster, OperatorControl, SqliteShop
from tests.support.kube.faults import Faults

JOBS = "/apis/batch/v1/namespaces/*/jobs"
BACKUP_STATUS = "/apis/lifeboat.dev/v1alpha1/namespaces/*/backups/*/status"
RESTORE_STATUS = "/apis/lifeboat.dev/v1alpha1/namespaces/*/restores/*/status"


def faults_of(cluster: Cluster) -> Faults:
    if cluster.server is None:
        pytest.skip("injects faults through the test API server: not available on a real cluster")
    return cluster.server.faults


def writes(*fields: str) -> Any:
    """A `when` for status patches that write one of `fields` (the operator writes `phase`, the
    worker `progress`, `artifact` and `verification`)."""
    return lambda data: any(f in (data or {}).get("status", {}) for f in fields)


def backup_job(cluster: Cluster, name: str) -> str:
    created = cluster.get("backups", name)
    assert created is not None
    return child_name(name, created["metadata"]["uid"], "backup")


def assert_one_job_run_once(cluster: Cluster, names: list[str]) -> None:
    expected = sorted(backup_job(cluster, name) for name in names)
    assert sorted(j["metadata"]["name"] for j in cluster.jobs()) == expected
    for job in expected:
        assert cluster.runner.starts(job) == 1, job


def test_job_creation_throttled_and_failing_still_makes_one_job(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    faults = faults_of(cluster)
    faults.add(method="POST", path_glob=JOBS, status=500, times=2)
    faults.add(method="POST", path_glob=JOBS, status=429, retry_after=1, times=1)
    faults.add(method="POST", path_glob=JOBS, status=503, times=1)

    cluster.create("backups", "nightly", sqlite_shop.spec())
    status = cluster.wait_phase("backups", "nightly", "Completed", "Failed", timeout=30)

    assert status["phase"] == "Completed", status
    assert faults.count(status=500, path_glob=JOBS) == 2
    assert faults.count(status=429, path_glob=JOBS) == 1
    assert faults.count(status=503, path_glob=JOBS) == 1
    assert_one_job_run_once(cluster, ["nightly"])
    throttled = next(f for f in faults.fired if f.status == 429)
    retried = next(f for f in faults.fired if f.status == 503)
    assert retried.at - throttled.at >= 0.9  # the Retry-After: 1 was honored


def test_job_created_but_answer_lost_is_adopted_not_duplicated(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    faults = faults_of(cluster)
    # The Job is created, the operator hears 504 and sends the create again: 409, adopt.
    faults.add(method="POST", path_glob=JOBS, status=504, times=1, commit=True)

    cluster.create("backups", "nightly", sqlite_shop.spec())
    status = cluster.wait_phase("backups", "nightly", "Completed", "Failed", timeout=30)

    assert status["phase"] == "Completed", status
    assert faults.count(status=504, path_glob=JOBS) == 1
    assert_one_job_run_once(cluster, ["nightly"])
    created = [r for r in cluster.events_for("nightly") if r[0] == "JobCreated"]
    assert len(created) <= 1  # adopted, not announced as a second creation


def test_conflicts_on_status_writes_of_operator_and_worker_are_retried(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    faults = faults_of(cluster)
    faults.add(method="PATCH", path_glob=BACKUP_STATUS, status=409, times=2, when=writes("phase"))
    faults.add(
        method="PATCH", path_glob=BACKUP_STATUS, status=409, times=2, when=writes("artifact")
    )
    # The worker's final progress write loses its connection once; its artifact write is next.
    faults.add(method="PATCH", path_glob=BACKUP_STATUS, reset=True, when=writes("progress"))

    cluster.create("backups", "nightly", sqlite_shop.spec())
    status = cluster.wait_phase("backups", "nightly", "Completed", "Failed", timeout=30)

    assert status["phase"] == "Completed", status
    assert status["artifact"]["sha256"]
    conflicts = [f for f in faults.fired if f.status == 409]
    assert len(conflicts) == 4
    assert sum("phase" in f.data["status"] for f in conflicts) == 2  # the operator's
    assert sum("artifact" in f.data["status"] for f in conflicts) == 2  # the worker's
    assert faults.count(reason="ConnectionReset", path_glob=BACKUP_STATUS) == 1
    assert_one_job_run_once(cluster, ["nightly"])


def test_connection_reset_on_the_workers_final_write_does_not_fail_the_backup(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    faults = faults_of(cluster)
    faults.add(
        method="PATCH", path_glob=BACKUP_STATUS, reset=True, times=2, when=writes("artifact")
    )

    cluster.create("backups", "nightly", sqlite_shop.spec())
    status = cluster.wait_phase("backups", "nightly", "Completed", "Failed", timeout=30)

    assert status["phase"] == "Completed", status
    assert faults.count(reason="ConnectionReset", path_glob=BACKUP_STATUS) == 2
    assert_one_job_run_once(cluster, ["nightly"])


def test_watches_dropped_again_and_again_lose_and_double_nothing(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    faults = faults_of(cluster)
    names = [f"b{i:02d}" for i in range(10)]
    for name in names:
        cluster.create("backups", name, sqlite_shop.spec())

    drops = 0

    def all_done_while_dropping() -> bool:
        nonlocal drops
        drops += faults.drop_watches()
        phases = [cluster.status("backups", name).get("phase") for name in names]
        return all(p in ("Completed", "Failed") for p in phases)

    cluster.wait_for(all_done_while_dropping, timeout=40, interval=0.2, max_interval=0.3)

    assert drops >= 5
    assert faults.count(reason="WatchDropped") == drops
    failed = {n: s for n in names if (s := cluster.status("backups", n))["phase"] != "Completed"}
    assert not failed
    assert_one_job_run_once(cluster, names)


def test_expired_resource_version_makes_the_operator_relist_and_go_on(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    faults = faults_of(cluster)
    cluster.runner.hold_when(lambda namespace, name: True)
    cluster.create("backups", "before", sqlite_shop.spec())
    before_job = backup_job(cluster, "before")
    cluster.wait_for(lambda: [j["metadata"]["name"] for j in cluster.jobs()] == [before_job])

    faults.compact()  # every resourceVersion handed out so far is now too old
    assert faults.drop_watches() > 0  # everyone watches again from an expired version

    expired = "/apis/lifeboat.dev/v1alpha1/backups"
    cluster.wait_for(lambda: faults.count(status=410, reason="Expired", path_glob=expired) >= 1)
    # Only a Backup watch that works again (after a re-list) can see this one.
    cluster.create("backups", "after", sqlite_shop.spec())
    after_job = backup_job(cluster, "after")
    cluster.wait_for(lambda: len(cluster.jobs()) == 2)
    cluster.runner.release(before_job)
    cluster.runner.release(after_job)

    for name in ("before", "after"):
        status = cluster.wait_phase("backups", name, "Completed", "Failed", timeout=30)
        assert status["phase"] == "Completed", status
    assert_one_job_run_once(cluster, ["before", "after"])
    assert faults.count(status=410, path_glob="/apis/batch/v1/jobs") >= 1  # the Job watches too


def test_restore_through_failing_job_creation_and_status_conflicts(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    faults = faults_of(cluster)
    cluster.create("backups", "nightly", sqlite_shop.spec())
    assert cluster.wait_phase("backups", "nightly", "Completed", "Failed")["phase"] == "Completed"

    faults.add(method="POST", path_glob=JOBS, status=500, times=2)
    faults.add(method="PATCH", path_glob=RESTORE_STATUS, status=409, times=2, when=writes("phase"))
    faults.add(
        method="PATCH", path_glob=RESTORE_STATUS, status=409, times=1, when=writes("verification")
    )
    cluster.create("restores", "back", {"backupRef": {"name": "nightly"}})
    status = cluster.wait_phase("restores", "back", "Completed", "Failed", timeout=30)

    assert status["phase"] == "Completed", status
    assert faults.count(status=500, path_glob=JOBS) == 2
    assert faults.count(status=409, path_glob=RESTORE_STATUS) == 3
    restore_jobs = [j for j in cluster.jobs() if j["metadata"]["name"] == status["jobName"]]
    assert len(restore_jobs) == 1
    assert cluster.runner.starts(status["jobName"]) == 1
    assert len(cluster.jobs()) == 2  # the Backup's and the Restore's
