"""Restore by schedule: `spec.scheduleRef` resolves once to the schedule's newest Completed
Backup (status.resolvedBackup) and stays on it: not moved by a newer Backup completing, a
resync or an operator restart. With no Completed Backup it waits, then fails clearly."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from lifeboat.cli.demo import fingerprint
from tests.integration.operator.conftest import Cluster, SqliteShop
from tests.integration.operator.test_schedules import Scheduling, at, scheduling_stage


@pytest.fixture
def scheduling(cluster: Cluster, sqlite_shop: SqliteShop) -> Iterator[Scheduling]:
    with scheduling_stage(cluster) as stage:
        yield stage


def test_a_restore_by_schedule_stays_on_the_backup_it_resolved_to(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    cluster, runner = scheduling.cluster, scheduling.cluster.runner
    scheduling.create("nightly", sqlite_shop.spec())
    scheduling.wait_planned("nightly", at(2))
    older = scheduling.fire("nightly", at(2))
    scheduling.completed(older)
    newest = scheduling.fire("nightly", at(3))
    scheduling.completed(newest)
    at_newest = fingerprint(sqlite_shop.db_path)

    runner.hold_when(lambda namespace, name: name.startswith("latest-restore-"))
    cluster.create("restores", "latest", {"scheduleRef": {"name": "nightly"}})
    cluster.wait_for(lambda: cluster.status("restores", "latest").get("jobName"))
    status = cluster.status("restores", "latest")
    assert status["resolvedBackup"] == newest
    assert status["verification"]["backupName"] == newest
    reasons = [(r, m) for r, m in cluster.events_for("latest") if r == "BackupResolved"]
    assert len(reasons) == 1
    assert newest in reasons[0][1]

    # The data changes and a newer Backup completes (of the changed data), the operator
    # restarts: the Restore still restores what it resolved to.
    with sqlite3.connect(sqlite_shop.db_path) as conn:
        conn.execute("DELETE FROM orders WHERE id > 10")
    newer = scheduling.fire("nightly", at(4))
    scheduling.completed(newer)
    scheduling.stop_operators()
    scheduling.start_operator()
    cluster.wait_for(lambda: scheduling.status("nightly").get("lastSuccessfulBackup") == newer)
    assert cluster.status("restores", "latest")["resolvedBackup"] == newest
    runner.release(status["jobName"])

    restored = cluster.wait_phase("restores", "latest", "Completed", "Failed")
    assert restored["phase"] == "Completed", restored
    assert restored["resolvedBackup"] == newest
    assert restored["verification"]["backupName"] == newest
    assert fingerprint(sqlite_shop.db_path) == at_newest
    assert runner.starts(status["jobName"]) == 1


def test_a_restore_by_schedule_waits_for_the_first_completed_backup(
    cluster: Cluster, sqlite_shop: SqliteShop
) -> None:
    with scheduling_stage(cluster, backup_wait_seconds=120.0, resync_seconds=60.0) as stage:
        waits_for_the_first_completed_backup(stage, sqlite_shop)


def waits_for_the_first_completed_backup(scheduling: Scheduling, sqlite_shop: SqliteShop) -> None:
    cluster = scheduling.cluster
    scheduling.create("nightly", sqlite_shop.spec())
    scheduling.wait_planned("nightly", at(2))
    cluster.create("restores", "first", {"scheduleRef": {"name": "nightly"}})
    waiting = cluster.wait_phase("restores", "first", "Pending")
    assert waiting["reason"] == "WaitingForBackup"
    assert "BackupSchedule nightly has no Completed Backup yet" in waiting["message"]
    assert "resolvedBackup" not in waiting

    backup = scheduling.fire("nightly", at(2))
    # Far sooner than the 60 s resync: the Backup's completion wakes the Restore.
    restored = cluster.wait_phase("restores", "first", "Completed", "Failed", timeout=20)
    assert restored["phase"] == "Completed", restored
    assert restored["resolvedBackup"] == backup


def test_a_restore_by_schedule_without_any_completed_backup_fails_clearly(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    cluster = scheduling.cluster  # backup_wait_seconds is 2 in these tests
    cluster.create("restores", "too-early", {"scheduleRef": {"name": "nightly"}})
    failed = cluster.wait_phase("restores", "too-early", "Failed")
    assert failed["reason"] == "BackupNotFound"
    assert failed["message"].startswith(
        "BackupSchedule nightly has no Completed Backup in namespace default (waited 2s;"
    )
    assert "lifeboat.dev/trigger" in failed["message"]
    stalled = {c["type"]: c for c in failed["conditions"]}["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "BackupNotFound")
