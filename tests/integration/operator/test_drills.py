"""RestoreDrills end to end: the real operator on the test API server, real Jobs running the real
worker against real PostgreSQL, SQLite and S3; and a BackupSchedule's spec.drill driven by a fake
clock (see test_schedules.py), across an operator restart."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from lifeboat.builders.drills import SEQUENCE_ANNOTATION, backup_drill_name, slot_drill_name
from lifeboat.builders.naming import child_name
from lifeboat.contract import drill_database_name, drill_id, drill_prefix
from tests.integration.operator.conftest import Cluster, OperatorControl, SqliteShop
from tests.integration.operator.test_backup_restore import postgres_backup_spec, secrets_for
from tests.integration.operator.test_metrics import Scraper, epoch, free_port, value
from tests.integration.operator.test_schedules import Scheduling, at, scheduling_stage
from tests.support import postgres as pg

PLURAL = "restoredrills"
NS = "default"
ORDERS_CHECK = {"name": "orders", "query": "SELECT count(*) FROM shop.orders", "expect": "40"}


@pytest.fixture
def scraper(cluster: Cluster) -> Iterator[Scraper]:
    """The real operator with its metrics endpoint on a free local port."""
    port = free_port()
    control = OperatorControl(cluster.server, cluster.kubeconfig)
    control.start(metrics_address=f"127.0.0.1:{port}")
    try:
        yield Scraper(port)
    finally:
        control.stop()


@pytest.fixture
def stage(cluster: Cluster, sqlite_shop: SqliteShop) -> Iterator[Scheduling]:
    """One operator with a fake clock (test_schedules.py)."""
    with scheduling_stage(cluster) as running:
        yield running


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status.get("conditions") or []}


def pg_databases_with_prefix(db: pg.PgDatabase) -> list[str]:
    prefix = drill_prefix(db.name).replace("_", "\\_")
    with db.server.connect() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_a_restore_drill_of_a_postgres_backup_passes_and_is_recorded_on_the_backup(
    cluster: Cluster,
    lifeboat_operator: OperatorControl,
    pg_database_factory: pg.PgDatabaseFactory,
    s3_bucket: Any,
) -> None:
    db = pg_database_factory(createdb=True)
    counts = pg.seed_sample_schema(db, large_object=False)
    secrets_for(cluster, db, s3_bucket)
    cluster.create("backups", "shop-db", postgres_backup_spec(db, s3_bucket))
    backup = cluster.wait_phase("backups", "shop-db", "Completed", "Failed")
    assert backup["phase"] == "Completed", backup
    before = db.fingerprint()

    created = cluster.create(
        PLURAL, "shop-db-drill", {"backupRef": {"name": "shop-db"}, "checks": [ORDERS_CHECK]}
    )
    status = cluster.wait_phase(PLURAL, "shop-db-drill", "Completed", "Failed", timeout=120)

    assert status["phase"] == "Completed", status
    assert status["reason"] == "DrillPassed"
    assert conditions(status)["Ready"]["status"] == "True"
    report = status["report"]
    assert report["passed"] is True
    assert report["restoreSeconds"] > 0
    assert report["tablesVerified"] == len(counts)
    assert report["rowsVerified"] == sum(counts.values())
    assert report["checks"] == [
        {"name": "orders", "passed": True, "expected": "40", "actual": "40"}
    ]
    assert report["requestedBy"] == f"RestoreDrill {NS}/shop-db-drill"
    reserved = drill_database_name(db.name, drill_id(created["metadata"]["uid"]))
    assert status["database"] == report["drillDatabase"] == reserved
    assert status["resolvedBackup"] == "shop-db"
    assert status["engine"] == "postgresql"
    assert status["sourceDatabase"] == f"{db.server.host}:{db.server.port}/{db.name}"
    assert status["backupCompletionTime"] == backup["completionTime"]
    # The Backup records it, and says so in its Events.
    [record] = cluster.status("backups", "shop-db")["drills"]
    assert record["name"] == "shop-db-drill"
    assert record["uid"] == created["metadata"]["uid"]
    assert (record["result"], record["reason"]) == ("Completed", "DrillPassed")
    assert record["rowsVerified"] == sum(counts.values())
    assert record["checksPassed"] == 1
    assert record["reportUri"] == report["reportUri"]
    assert "DrillPassed" in [reason for reason, _ in cluster.events_for("shop-db")]
    assert "DrillPassed" in [reason for reason, _ in cluster.events_for("shop-db-drill")]
    # Evidence in the bucket; nothing left on the server; the source untouched.
    key = report["reportUri"].removeprefix(f"s3://{s3_bucket.bucket}/")
    stored = json.loads(
        s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key=key)["Body"].read()
    )
    assert (stored["passed"], stored["backupSha256"]) == (True, backup["artifact"]["sha256"])
    assert pg_databases_with_prefix(db) == []
    assert db.fingerprint() == before
    # One Job, started once; kubectl shows the evidence.
    uid = created["metadata"]["uid"]
    jobs = [j["metadata"]["name"] for j in cluster.jobs()]
    assert [j for j in jobs if "-drill-" in j] == [child_name("shop-db-drill", uid, "drill")]
    shown = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "-n", cluster.namespace, "get",
         PLURAL],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    assert shown[0].split() == [
        "NAME", "PHASE", "PROGRESS", "BACKUP", "RESTORE", "SECONDS", "ROWS", "AGE",
    ]  # fmt: skip
    assert shown[1].split()[:4] == ["shop-db-drill", "Completed", "100%", "shop-db"]
    assert shown[1].split()[5] == str(sum(counts.values()))


def test_a_drill_whose_check_fails_is_failed_with_the_check_named_and_counted(
    cluster: Cluster, scraper: Scraper, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "shop", sqlite_shop.spec())
    backup = cluster.wait_phase("backups", "shop", "Completed", "Failed")
    assert backup["phase"] == "Completed", backup
    labels = {"namespace": NS, "engine": "sqlite", "database": "app-data/shop.db"}
    before = scraper.samples()
    stale = {"name": "no-orders", "query": "SELECT count(*) FROM orders", "expect": "0"}

    cluster.create(PLURAL, "shop-stale", {"backupRef": {"name": "shop"}, "checks": [stale]})
    failed = cluster.wait_phase(PLURAL, "shop-stale", "Completed", "Failed", timeout=60)

    assert failed["phase"] == "Failed", failed
    assert failed["reason"] == "DrillCheckFailed"
    assert "check 'no-orders' returned '300', expected '0'" in failed["message"]
    stalled = conditions(failed)["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "DrillCheckFailed")
    assert failed["report"]["failedCheck"] == "no-orders"
    assert failed["report"]["cleanedUp"] is True
    [record] = cluster.status("backups", "shop")["drills"]
    assert (record["result"], record["reason"], record["failedCheck"]) == (
        "Failed",
        "DrillCheckFailed",
        "no-orders",
    )
    assert "DrillFailed" in [reason for reason, _ in cluster.events_for("shop")]

    cluster.create(PLURAL, "shop-good", {"backupRef": {"name": "shop"}})
    passed = cluster.wait_phase(PLURAL, "shop-good", "Completed", "Failed", timeout=60)
    assert passed["phase"] == "Completed", passed

    after = scraper.samples()

    def delta(name: str, **extra: str) -> float:
        return value(after, name, **labels, **extra) - value(before, name, **labels, **extra)

    assert delta("lifeboat_drills_total", result="Failed", reason="DrillCheckFailed") == 1
    assert delta("lifeboat_drills_total", result="Completed", reason="DrillPassed") == 1
    assert value(
        after, "lifeboat_drill_last_failure_timestamp_seconds", **labels, reason="DrillCheckFailed"
    ) == epoch(failed["completionTime"])
    assert value(after, "lifeboat_backup_last_verified_timestamp_seconds", **labels) == epoch(
        backup["completionTime"]
    )
    sqlite = {"namespace": NS, "engine": "sqlite"}
    grew = value(
        after, "lifeboat_drill_restore_duration_seconds_count", **sqlite, result="Completed"
    ) - value(before, "lifeboat_drill_restore_duration_seconds_count", **sqlite, result="Completed")
    assert grew == 1


def test_a_sqlite_drill_with_a_server_target_is_refused_with_the_field_named(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "shop", sqlite_shop.spec())
    assert cluster.wait_phase("backups", "shop", "Completed", "Failed")["phase"] == "Completed"

    cluster.create(PLURAL, "shop-elsewhere", {"backupRef": {"name": "shop"},
                                              "target": {"host": "drills.svc"}})  # fmt: skip
    status = cluster.wait_phase(PLURAL, "shop-elsewhere", "Completed", "Failed")

    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec")
    assert status["message"].startswith("spec.target: a sqlite drill restores into its Job's")
    assert not [j for j in cluster.jobs() if "-drill-" in j["metadata"]["name"]]


# -- drills on a schedule -------------------------------------------------------------------------


def drills_of(stage: Scheduling, name: str) -> dict[str, dict[str, Any]]:
    listed = stage.cluster.custom.list_namespaced_custom_object(
        "lifeboat.dev", "v1alpha1", stage.cluster.namespace, PLURAL,
        label_selector=f"lifeboat.dev/schedule={name}",
    )  # fmt: skip
    return {item["metadata"]["name"]: item for item in listed["items"]}


def drill_completes(stage: Scheduling, name: str) -> dict[str, Any]:
    status = stage.cluster.wait_phase(PLURAL, name, "Completed", "Failed", timeout=60)
    assert status["phase"] == "Completed", status
    return status


def backup_and_look(stage: Scheduling, slot: datetime) -> str:
    """Fire the slot, let its Backup complete, and make the operator look at the schedule once
    more: whatever its drills decide about that Backup has been done."""
    backup = stage.fire("nightly", slot)
    stage.completed(backup)
    stage.cluster.wait_for(
        lambda: SEQUENCE_ANNOTATION in (stage.cluster.get("backups", backup) or {}).get(
            "metadata", {}).get("annotations", {}),
        message=f"{backup} numbered",
    )  # fmt: skip
    stage.look("nightly")
    return backup


def test_drill_every_2_drills_every_second_backup_once_each_across_a_restart(
    stage: Scheduling, sqlite_shop: SqliteShop
) -> None:
    checks = [{"name": "orders", "query": "SELECT count(*) FROM orders", "expect": "300"}]
    stage.create("nightly", sqlite_shop.spec(), drill={"every": 2, "checks": checks})
    stage.wait_planned("nightly", at(2))
    assert stage.condition("nightly", "Verified")["reason"] == "NoDrillYet"

    backups = [backup_and_look(stage, at(2))]
    assert drills_of(stage, "nightly") == {}
    backups.append(backup_and_look(stage, at(3)))
    drill_completes(stage, backup_drill_name(backups[1]))
    backups.append(backup_and_look(stage, at(4)))
    # The operator restarts between the 3rd and the 4th Backup: it must neither drill again
    # nor lose count.
    stage.stop_operators()
    stage.start_operator()
    backups.append(backup_and_look(stage, at(5)))
    drill_completes(stage, backup_drill_name(backups[3]))
    backups.append(backup_and_look(stage, at(6)))
    backups.append(backup_and_look(stage, at(7)))
    sixth = drill_completes(stage, backup_drill_name(backups[5]))

    drills = drills_of(stage, "nightly")
    assert sorted(drills) == sorted(backup_drill_name(backups[i]) for i in (1, 3, 5))
    for name, drill in drills.items():
        assert drill["spec"]["backupRef"]["name"] == name.removesuffix("-drill")
        [owner] = drill["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"]) == ("Backup", name.removesuffix("-drill"))
        job = child_name(name, drill["metadata"]["uid"], "drill")
        assert stage.cluster.runner.starts(job) == 1
    numbers = [
        (stage.cluster.get("backups", b) or {})["metadata"]["annotations"][SEQUENCE_ANNOTATION]
        for b in backups
    ]
    assert numbers == ["1", "2", "3", "4", "5", "6"]
    created = [m for r, m in stage.cluster.events_for("nightly") if r == "DrillCreated"]
    assert len(created) == 3
    status = stage.status("nightly")
    assert status["lastDrill"] == backup_drill_name(backups[5])
    assert status["lastVerifiedBackup"] == backups[5]
    last = stage.cluster.status("backups", backups[5])
    assert status["lastVerifiedTime"] == last["completionTime"]
    verified = stage.condition("nightly", "Verified")
    assert (verified["status"], verified["reason"]) == ("True", "DrillPassed")
    assert sixth["report"]["checks"][0]["actual"] == "300"


def test_a_drill_schedule_drills_the_newest_backup_once_per_drill_slot(
    stage: Scheduling, sqlite_shop: SqliteShop
) -> None:
    stage.create("nightly", sqlite_shop.spec(), drill={"schedule": "30 * * * *"})
    stage.cluster.wait_for(
        lambda: stage.status("nightly").get("nextDrillTime") == "2026-12-03T02:30:00Z"
    )
    first = stage.fire("nightly", at(2))
    stage.completed(first)

    stage.clock.set(at(2, 30, 5))
    name = slot_drill_name("nightly", "20261203-0230")
    stage.cluster.wait_for(lambda: name in drills_of(stage, "nightly"))
    drill = drill_completes(stage, name)
    stage.look("nightly")

    assert drill["resolvedBackup"] == first
    status = stage.status("nightly")
    assert status["lastDrillScheduleTime"] == "2026-12-03T02:30:00Z"
    assert status["nextDrillTime"] == "2026-12-03T03:30:00Z"
    assert status["lastVerifiedBackup"] == first
    assert list(drills_of(stage, "nightly")) == [name]  # one per slot, also on every look
