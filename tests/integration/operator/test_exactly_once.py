"""Exactly one Job per request: across restarts, replays, and a hundred Backups at once."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

from lifeboat.builders.naming import child_name
from lifeboat.cli.demo import fingerprint
from tests.integration.operator.conftest import Cluster, OperatorControl, SqliteShop


def test_operator_restarted_mid_backup_still_makes_one_job_and_completes(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.runner.hold_when(lambda namespace, name: True)
    created = cluster.create("backups", "nightly", sqlite_shop.spec())
    job_name = child_name("nightly", created["metadata"]["uid"], "backup")
    cluster.wait_for(lambda: [j["metadata"]["name"] for j in cluster.jobs()] == [job_name])
    assert cluster.wait_phase("backups", "nightly", "Pending")["jobName"] == job_name

    lifeboat_operator.stop()
    cluster.runner.release(job_name)  # the worker runs while no operator is watching
    cluster.wait_for(lambda: cluster.runner.starts(job_name) == 1)
    lifeboat_operator.start()

    status = cluster.wait_phase("backups", "nightly", "Completed", "Failed")
    assert status["phase"] == "Completed", status
    assert [j["metadata"]["name"] for j in cluster.jobs()] == [job_name]
    assert cluster.runner.starts(job_name) == 1


def test_a_hundred_backups_make_a_hundred_jobs_across_an_operator_restart(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.runner.hold_when(lambda namespace, name: True)  # count Jobs, do not run 100 workers
    uids = {}
    for i in range(100):
        if i == 50:
            lifeboat_operator.stop()  # half are created while no operator runs
        if i == 75:
            lifeboat_operator.start()
        obj = cluster.create("backups", f"b{i:03d}", sqlite_shop.spec())
        uids[obj["metadata"]["name"]] = obj["metadata"]["uid"]

    expected = sorted(child_name(name, uid, "backup") for name, uid in uids.items())
    cluster.wait_for(lambda: len(cluster.jobs()) >= 100, timeout=60)
    lifeboat_operator.stop()
    lifeboat_operator.start()  # a second restart replays everything: no new Jobs
    cluster.wait_for(
        lambda: all(cluster.status("backups", name).get("jobName") for name in uids), timeout=60
    )
    jobs = cluster.jobs()
    assert sorted(j["metadata"]["name"] for j in jobs) == expected
    owners = sorted(j["metadata"]["ownerReferences"][0]["uid"] for j in jobs)
    assert owners == sorted(uids.values())


def test_completed_restore_is_not_run_again_on_reapply_or_restart(
    cluster: Cluster,
    lifeboat_operator: OperatorControl,
    sqlite_shop: SqliteShop,
    tmp_path: Path,
) -> None:
    cluster.create("backups", "nightly", sqlite_shop.spec())
    assert cluster.wait_phase("backups", "nightly", "Completed", "Failed")["phase"] == "Completed"
    original = fingerprint(sqlite_shop.db_path)
    manifest = tmp_path / "restore.yaml"
    manifest.write_text(
        "apiVersion: lifeboat.dev/v1alpha1\nkind: Restore\n"
        f"metadata: {{name: again, namespace: {cluster.namespace}}}\n"
        "spec: {backupRef: {name: nightly}}\n"
    )
    kubectl = ["kubectl", "--kubeconfig", str(cluster.kubeconfig)]
    subprocess.run([*kubectl, "apply", "-f", str(manifest)], check=True, capture_output=True)
    restored = cluster.wait_phase("restores", "again", "Completed", "Failed")
    assert restored["phase"] == "Completed", restored
    job = restored["jobName"]
    assert cluster.runner.starts(job) == 1

    # Change the data: a re-run would now be visible as a changed database.
    with sqlite3.connect(sqlite_shop.db_path) as conn:
        conn.execute("DELETE FROM orders")
    changed = fingerprint(sqlite_shop.db_path)
    assert changed != original

    again = subprocess.run(
        [*kubectl, "apply", "-f", str(manifest)], check=True, capture_output=True, text=True
    )
    assert "unchanged" in again.stdout
    lifeboat_operator.stop()
    lifeboat_operator.start()
    cluster.wait_for(lambda: cluster.status("restores", "again").get("phase") == "Completed")
    # The restarted operator is reconciling (a new Backup reaches a final phase); still nothing
    # ran again.
    before = cluster.status("restores", "again")
    cluster.wait_for(lambda: _operator_is_reconciling(cluster), timeout=10)
    assert cluster.runner.starts(job) == 1
    assert fingerprint(sqlite_shop.db_path) == changed
    assert cluster.status("restores", "again") == before


def _operator_is_reconciling(cluster: Cluster) -> bool:
    """True once a Backup created now has reached a final phase: the operator is working."""
    name = "probe"
    if cluster.get("backups", name) is None:
        cluster.create(
            "backups",
            name,
            {
                "database": {
                    "engine": "sqlite",
                    "persistentVolumeClaim": "app-data",
                    "path": "x.db",
                },
                "storage": {"volume": {"persistentVolumeClaim": "backups"}},
            },
        )
    return bool(cluster.status("backups", name).get("phase") in ("Completed", "Failed"))


def test_a_waiting_restore_starts_as_soon_as_its_backup_completes(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    lifeboat_operator.stop()
    lifeboat_operator.start(resync_seconds=60.0, backup_wait_seconds=120.0)
    cluster.create("restores", "early", {"backupRef": {"name": "later"}})  # GitOps order
    assert cluster.wait_phase("restores", "early", "Pending")["reason"] == "WaitingForBackup"
    cluster.create("backups", "later", sqlite_shop.spec())
    # Far sooner than the 60 s resync: the Backup's completion wakes the Restore.
    status = cluster.wait_phase("restores", "early", "Completed", "Failed", timeout=15)
    assert status["phase"] == "Completed", status


def test_a_job_with_our_name_that_is_not_ours_is_never_adopted(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    """Someone else's Job already has the name Lifeboat derives for a Backup: the Backup fails
    with JobNameTaken, naming it, and that Job is neither adopted, changed nor deleted."""
    lifeboat_operator.stop()
    created = cluster.create("backups", "squatted", sqlite_shop.spec())
    job_name = child_name("squatted", created["metadata"]["uid"], "backup")
    cluster.runner.hold_when(lambda namespace, name: name == job_name)
    foreign = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "labels": {"team": "someone-else"}},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
                }
            }
        },
    }
    cluster.batch.create_namespaced_job(cluster.namespace, foreign)
    lifeboat_operator.start()

    status = cluster.wait_phase("backups", "squatted", "Completed", "Failed")
    assert (status["phase"], status["reason"]) == ("Failed", "JobNameTaken"), status
    assert job_name in status["message"]
    assert "has no controller" in status["message"]
    job = cluster.batch.read_namespaced_job(job_name, cluster.namespace)
    assert job.metadata.labels == {"team": "someone-else"}
    assert not job.metadata.owner_references
    assert cluster.runner.starts(job_name) == 0
