"""BackupSchedules end to end: the real operator, driven by a fake clock the tests advance, on the
test API server with the Job runner running real `lifeboat` workers against SQLite.

Time never passes by sleeping: the operator reads `OperatorConfig.clock`, which each test moves
from slot to slot; its schedule timer ticks every TICK seconds of real time, so a slot that has
come is seen within a tick, and every wait is deadline-bounded polling on the API.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from lifeboat.api import BackupSchedule
from lifeboat.builders.backups import (
    SCHEDULE_LABEL,
    SLOT_ANNOTATION,
    TRIGGER_ANNOTATION,
    build_scheduled_backup,
    rfc3339,
)
from lifeboat.builders.naming import child_name
from lifeboat.controller.slots import backup_name, trigger_backup_name
from tests.integration.operator.conftest import (
    GROUP,
    VERSION,
    Cluster,
    OperatorControl,
    SqliteShop,
)

TICK = 0.2
"""Seconds of real time between two looks of the operator at each schedule."""
START = datetime(2026, 12, 3, 1, 59, 30, tzinfo=UTC)
HOURLY = "0 * * * *"
PLURAL = "backupschedules"


class FakeClock:
    """The operator's clock, moved by the test (thread-safe: the operator reads it from its
    handler threads)."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, moment: datetime) -> None:
        with self._lock:
            assert moment >= self._now, "the operator's clock never goes back"
            self._now = moment


def at(hour: int, minute: int = 0, second: int = 0, day: int = 3) -> datetime:
    return datetime(2026, 12, day, hour, minute, second, tzinfo=UTC)


@dataclass
class Scheduling:
    """The stage for schedule tests: the cluster, the clock, and the operators running."""

    cluster: Cluster
    clock: FakeClock
    operators: list[OperatorControl] = field(default_factory=list)

    def start_operator(self, **changes: Any) -> OperatorControl:
        control = OperatorControl(self.cluster.server, self.cluster.kubeconfig)
        control.start(clock=self.clock, schedule_check_seconds=TICK, **changes)
        self.operators.append(control)
        return control

    def stop_operators(self) -> None:
        for control in self.operators:
            control.stop()
        self.operators.clear()

    # -- the schedule ------------------------------------------------------------------------

    def create(self, name: str, template: dict[str, Any], **spec: Any) -> dict[str, Any]:
        body = {"schedule": HOURLY, "template": template, **spec}
        return self.cluster.create(PLURAL, name, body)

    def get(self, name: str) -> dict[str, Any]:
        obj = self.cluster.get(PLURAL, name)
        assert obj is not None, f"BackupSchedule {name} is gone"
        return obj

    def status(self, name: str) -> dict[str, Any]:
        return self.cluster.status(PLURAL, name)

    def patch(self, name: str, patch: dict[str, Any]) -> None:
        self.cluster.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.cluster.namespace, PLURAL, name, patch
        )

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        conditions = self.status(name).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    def wait_planned(self, name: str, slot: datetime) -> None:
        """Until the operator has planned `slot` as the schedule's next one."""
        self.cluster.wait_for(
            lambda: self.status(name).get("nextScheduleTime") == rfc3339(slot),
            message=f"{name} plans {slot}",
        )

    # -- its Backups -------------------------------------------------------------------------

    def backups(self, name: str) -> dict[str, dict[str, Any]]:
        listed = self.cluster.custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.cluster.namespace,
            "backups",
            label_selector=f"{SCHEDULE_LABEL}={name}",
        )
        return {item["metadata"]["name"]: item for item in listed["items"]}

    def fire(self, name: str, slot: datetime, *, late: float = 5, zone: str = "UTC") -> str:
        """Move the clock `late` seconds past `slot` and wait for the slot's Backup (named
        after the slot's wall-clock time in `zone`)."""
        backup = backup_name(name, slot, ZoneInfo(zone))
        self.clock.set(slot + timedelta(seconds=late))
        self.cluster.wait_for(lambda: backup in self.backups(name), message=f"{backup} created")
        return backup

    def completed(self, backup: str) -> dict[str, Any]:
        status = self.cluster.wait_phase("backups", backup, "Completed", "Failed")
        assert status["phase"] == "Completed", status
        return status

    def created_events(self, name: str) -> list[str]:
        return [m for r, m in self.cluster.events_for(name) if r == "BackupCreated"]

    def look(self, name: str) -> int:
        """Make the operator look at the schedule once more, now, and wait until it has: a spec
        edit that changes no slot (failedBackupsHistoryLimit) is reconciled at once and shows in
        status.observedGeneration. Whatever the current clock makes due has then been done.
        Returns the new generation."""
        obj = self.get(name)
        limit = obj["spec"].get("failedBackupsHistoryLimit", 3)
        self.patch(name, {"spec": {"failedBackupsHistoryLimit": limit % 5 + 1}})
        generation = int(self.get(name)["metadata"]["generation"])
        self.cluster.wait_for(
            lambda: self.status(name).get("observedGeneration") == generation,
            message=f"{name} looked at (generation {generation})",
        )
        return generation


@contextlib.contextmanager
def scheduling_stage(
    cluster: Cluster, start: datetime = START, **changes: Any
) -> Iterator[Scheduling]:
    """One operator running with a fake clock at `start` and `changes` to its test config
    (other test modules use it too)."""
    stage = Scheduling(cluster, FakeClock(start))
    stage.start_operator(**changes)
    try:
        yield stage
    finally:
        stage.stop_operators()


@pytest.fixture
def scheduling(cluster: Cluster, sqlite_shop: SqliteShop) -> Iterator[Scheduling]:
    with scheduling_stage(cluster) as stage:
        yield stage


def test_each_slot_makes_exactly_one_backup_that_completes(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    created = scheduling.create("nightly", sqlite_shop.spec(deletionPolicy="Delete"))
    scheduling.wait_planned("nightly", at(2))
    assert scheduling.backups("nightly") == {}

    first = scheduling.fire("nightly", at(2))
    assert first == "nightly-20261203-0200"
    scheduling.completed(first)
    second = scheduling.fire("nightly", at(3))
    scheduling.completed(second)
    scheduling.wait_planned("nightly", at(4))
    scheduling.cluster.wait_for(
        lambda: scheduling.status("nightly").get("lastSuccessfulBackup") == second
    )

    backups = scheduling.backups("nightly")
    assert sorted(backups) == ["nightly-20261203-0200", "nightly-20261203-0300"]
    backup = backups[first]
    meta = backup["metadata"]
    assert meta["labels"] == {
        "app.kubernetes.io/name": "lifeboat",
        "app.kubernetes.io/component": "backup",
        "app.kubernetes.io/managed-by": "lifeboat-operator",
        SCHEDULE_LABEL: "nightly",
    }
    assert meta["annotations"][SLOT_ANNOTATION] == "2026-12-03T02:00:00Z"
    assert meta["annotations"]["argocd.argoproj.io/sync-options"] == "Prune=false"
    assert meta["annotations"]["argocd.argoproj.io/compare-options"] == "IgnoreExtraneous"
    assert meta["annotations"]["kustomize.toolkit.fluxcd.io/prune"] == "disabled"
    [owner] = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "BackupSchedule",
        "nightly",
        created["metadata"]["uid"],
    )
    assert backup["spec"]["deletionPolicy"] == "Delete"

    status = scheduling.status("nightly")
    assert status["lastScheduleTime"] == "2026-12-03T03:00:00Z"
    assert status["nextScheduleTime"] == "2026-12-03T04:00:00Z"
    assert status["lastBackup"] == status["lastSuccessfulBackup"] == second
    assert (
        status["lastSuccessfulTime"]
        == scheduling.cluster.status("backups", second)["completionTime"]
    )
    assert status["keptCount"] == 2
    assert [k["rules"] for k in status["kept"]] == [["all"], ["all"]]
    assert status["observedGeneration"] == 1
    ready = scheduling.condition("nightly", "Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "True",
        "Scheduled",
        1,
    )
    assert ready["message"] == "next Backup at 2026-12-03 04:00 UTC"
    assert scheduling.condition("nightly", "Stalled")["status"] == "False"
    # One creation per slot, one Job per Backup, one worker per Job.
    events = scheduling.created_events("nightly")
    assert len(events) == 2
    assert any(first in e and "2026-12-03 02:00 UTC" in e for e in events), events
    jobs = sorted(j["metadata"]["name"] for j in scheduling.cluster.jobs())
    uids = {name: b["metadata"]["uid"] for name, b in backups.items()}
    assert jobs == sorted(child_name(n, u, "backup") for n, u in uids.items())
    assert all(scheduling.cluster.runner.starts(job) == 1 for job in jobs)
    # What people see: kubectl get backupschedules, from the CRD's printer columns.
    shown = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(scheduling.cluster.kubeconfig),
            "-n",
            scheduling.cluster.namespace,
            "get",
            "backupschedules",
            "-o",
            "wide",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert shown[0].split() == [
        "NAME", "SCHEDULE", "SUSPENDED", "LAST", "SUCCESS", "NEXT", "KEPT", "AGE", "TIME", "ZONE",
        "LAST", "BACKUP", "LAST", "VERIFIED",
    ]  # fmt: skip
    assert shown[1].startswith("nightly   0 * * * *   false   "), shown
    assert shown[1].split()[-2:] == ["UTC", second], shown  # Last Verified empty: no drill
    assert shown[1].split()[-4] == "2", shown  # kept


def test_the_hour_that_repeats_when_dst_ends_makes_one_backup(
    cluster: Cluster, sqlite_shop: SqliteShop
) -> None:
    """Europe/Berlin, 2026-10-25: 02:30 happens twice (CEST, then CET). One Backup, named
    after the wall-clock time; the next slot is the next day's 02:30."""
    first_pass = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second_pass = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    with scheduling_stage(cluster, start=first_pass - timedelta(minutes=5)) as scheduling:
        scheduling.create(
            "nightly", sqlite_shop.spec(), schedule="30 2 * * *", timeZone="Europe/Berlin"
        )
        scheduling.wait_planned("nightly", first_pass)
        backup = scheduling.fire("nightly", first_pass, zone="Europe/Berlin")
        assert backup == "nightly-20261025-0230"
        scheduling.completed(backup)
        scheduling.wait_planned("nightly", datetime(2026, 10, 26, 1, 30, tzinfo=UTC))
        scheduling.clock.set(second_pass + timedelta(seconds=5))
        scheduling.look("nightly")
        assert list(scheduling.backups("nightly")) == [backup]
        ready = scheduling.condition("nightly", "Ready")["message"]
        assert ready == "next Backup at 2026-10-26 02:30 Europe/Berlin"


def test_two_operators_at_once_make_one_backup_per_slot(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    scheduling.start_operator()  # a second operator, by mistake, with the same clock
    assert len(scheduling.operators) == 2
    scheduling.create("nightly", sqlite_shop.spec())
    scheduling.wait_planned("nightly", at(2))
    names = []
    for slot in (at(2), at(3), at(4)):  # each completes before the next slot (Forbid)
        names.append(scheduling.fire("nightly", slot))
        scheduling.completed(names[-1])
    scheduling.wait_planned("nightly", at(5))

    backups = scheduling.backups("nightly")
    assert sorted(backups) == names
    jobs = scheduling.cluster.jobs()
    assert len(jobs) == 3
    assert all(scheduling.cluster.runner.starts(j["metadata"]["name"]) == 1 for j in jobs)
    # Each Backup was created once: the other operator's create got 409 and adopted it.
    assert len(scheduling.created_events("nightly")) == 3
    assert scheduling.status("nightly")["lastScheduleTime"] == rfc3339(at(4))


def test_an_operator_that_died_between_creating_the_backup_and_recording_it_adopts_it(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    """The crash window: the slot's Backup exists, the status does not say so. The restarted
    operator's create gets 409 and adopts it; no second Backup, the slot recorded."""
    created = scheduling.create("nightly", sqlite_shop.spec())
    scheduling.wait_planned("nightly", at(2))
    scheduling.stop_operators()
    scheduling.clock.set(at(2, 0, 3))
    schedule = BackupSchedule.model_validate(created)
    body = build_scheduled_backup(schedule, "nightly-20261203-0200", at(2))
    scheduling.cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, scheduling.cluster.namespace, "backups", body
    )
    scheduling.start_operator()

    scheduling.cluster.wait_for(
        lambda: scheduling.status("nightly").get("lastScheduleTime") == rfc3339(at(2))
    )
    assert scheduling.status("nightly")["lastBackup"] == "nightly-20261203-0200"
    scheduling.completed("nightly-20261203-0200")
    scheduling.look("nightly")
    assert list(scheduling.backups("nightly")) == ["nightly-20261203-0200"]
    assert not any("0200" in e for e in scheduling.created_events("nightly"))


def test_an_operator_restarted_while_the_slots_backup_runs_makes_no_second_one(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    runner = scheduling.cluster.runner
    runner.hold_when(lambda namespace, name: name.startswith("nightly-20261203-0200"))
    scheduling.create("nightly", sqlite_shop.spec())
    scheduling.wait_planned("nightly", at(2))
    backup = scheduling.fire("nightly", at(2))
    scheduling.cluster.wait_phase("backups", backup, "Pending")
    scheduling.wait_planned("nightly", at(3))

    scheduling.stop_operators()
    scheduling.clock.set(at(2, 30))  # the operator comes back in the middle of the slot
    scheduling.start_operator()
    job = scheduling.cluster.status("backups", backup)["jobName"]
    runner.release(job)
    scheduling.completed(backup)
    scheduling.cluster.wait_for(
        lambda: scheduling.status("nightly").get("lastSuccessfulBackup") == backup
    )

    assert list(scheduling.backups("nightly")) == [backup]
    assert runner.starts(job) == 1
    assert len(scheduling.created_events("nightly")) == 1
    assert scheduling.status("nightly")["nextScheduleTime"] == rfc3339(at(3))


def test_missed_slots_after_downtime_fire_at_most_once(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    scheduling.create("nightly", sqlite_shop.spec())
    scheduling.wait_planned("nightly", at(2))
    scheduling.stop_operators()
    scheduling.clock.set(at(7, 10))  # down from 01:59 to 07:10: six slots passed
    scheduling.start_operator()

    caught_up = "nightly-20261203-0700"
    scheduling.cluster.wait_for(lambda: caught_up in scheduling.backups("nightly"))
    scheduling.completed(caught_up)
    scheduling.wait_planned("nightly", at(8))
    scheduling.look("nightly")
    assert list(scheduling.backups("nightly")) == [caught_up]


def test_a_slot_missed_by_more_than_the_starting_deadline_is_skipped(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    scheduling.create("nightly", sqlite_shop.spec(), startingDeadlineSeconds=300)
    scheduling.wait_planned("nightly", at(2))
    scheduling.stop_operators()
    scheduling.clock.set(at(7, 10))  # the 07:00 slot is 600 s late
    scheduling.start_operator()

    scheduling.cluster.wait_for(
        lambda: scheduling.status("nightly").get("lastSkippedTime") == rfc3339(at(7))
    )
    status = scheduling.status("nightly")
    assert status["lastSkippedReason"] == "MissedStartingDeadline"
    assert "600s late" in status["lastSkippedMessage"]
    assert status["nextScheduleTime"] == rfc3339(at(8))
    assert scheduling.backups("nightly") == {}
    assert any(r == "SlotSkipped" for r, _ in scheduling.cluster.events_for("nightly"))
    # In time, the next slot runs.
    scheduling.completed(scheduling.fire("nightly", at(8), late=60))


def test_forbid_skips_a_slot_while_a_backup_runs_and_says_so(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    runner = scheduling.cluster.runner
    runner.hold_when(lambda namespace, name: name.startswith("nightly-20261203-0200"))
    scheduling.create("nightly", sqlite_shop.spec())  # concurrencyPolicy: Forbid (default)
    scheduling.wait_planned("nightly", at(2))
    running = scheduling.fire("nightly", at(2))
    scheduling.cluster.wait_phase("backups", running, "Pending")
    scheduling.wait_planned("nightly", at(3))

    scheduling.clock.set(at(3, 0, 5))
    scheduling.cluster.wait_for(
        lambda: scheduling.status("nightly").get("lastSkippedTime") == rfc3339(at(3))
    )
    status = scheduling.status("nightly")
    assert status["lastSkippedReason"] == "BackupStillRunning"
    assert running in status["lastSkippedMessage"]
    assert status["active"] == [running]
    assert status["lastScheduleTime"] == rfc3339(at(2))
    skipped = [(r, m) for r, m in scheduling.cluster.events_for("nightly") if r == "SlotSkipped"]
    assert len(skipped) == 1
    assert running in skipped[0][1]
    events = scheduling.cluster.core.list_namespaced_event(scheduling.cluster.namespace).items
    assert all(e.type == "Normal" for e in events if e.involved_object.name == "nightly")

    runner.release(scheduling.cluster.status("backups", running)["jobName"])
    scheduling.completed(running)
    scheduling.look("nightly")  # the skipped 03:00 slot stays skipped once nothing runs
    assert "nightly-20261203-0300" not in scheduling.backups("nightly")
    scheduling.completed(scheduling.fire("nightly", at(4)))


def test_replace_deletes_the_running_backup_and_starts_the_slots(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    runner = scheduling.cluster.runner
    runner.hold_when(lambda namespace, name: name.startswith("nightly-20261203-0200"))
    scheduling.create("nightly", sqlite_shop.spec(), concurrencyPolicy="Replace")
    scheduling.wait_planned("nightly", at(2))
    replaced = scheduling.fire("nightly", at(2))
    job = scheduling.cluster.wait_phase("backups", replaced, "Pending")["jobName"]
    scheduling.wait_planned("nightly", at(3))

    new = scheduling.fire("nightly", at(3))
    scheduling.cluster.wait_for(lambda: scheduling.cluster.get("backups", replaced) is None)
    scheduling.completed(new)
    assert list(scheduling.backups("nightly")) == [new]
    reasons = [r for r, m in scheduling.cluster.events_for("nightly") if replaced in m]
    assert "BackupReplaced" in reasons
    assert runner.starts(job) == 0  # held until replaced: it never ran
    scheduling.cluster.wait_for(
        lambda: job not in [j["metadata"]["name"] for j in scheduling.cluster.jobs()]
    )


def test_suspend_skips_every_slot_and_resuming_fires_none_and_no_burst(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    scheduling.create("nightly", sqlite_shop.spec())
    scheduling.wait_planned("nightly", at(2))
    scheduling.patch("nightly", {"spec": {"suspend": True}})
    scheduling.cluster.wait_for(
        lambda: scheduling.condition("nightly", "Ready").get("reason") == "Suspended"
    )
    assert "nextScheduleTime" not in scheduling.status("nightly")
    assert scheduling.condition("nightly", "Ready")["status"] == "False"

    for hour in (2, 3, 4):  # each slot that comes while suspended is recorded as skipped
        scheduling.clock.set(at(hour, 0, 5))
        scheduling.cluster.wait_for(
            lambda hour=hour: (
                scheduling.status("nightly").get("lastSkippedTime") == rfc3339(at(hour))
            )
        )
        assert scheduling.status("nightly")["lastSkippedReason"] == "Suspended"
    scheduling.clock.set(at(4, 40))
    scheduling.patch("nightly", {"spec": {"suspend": False}})
    scheduling.wait_planned("nightly", at(5))
    assert scheduling.condition("nightly", "Ready")["status"] == "True"
    scheduling.look("nightly")
    assert scheduling.backups("nightly") == {}

    scheduling.completed(scheduling.fire("nightly", at(5)))
    scheduling.wait_planned("nightly", at(6))
    scheduling.look("nightly")
    assert list(scheduling.backups("nightly")) == ["nightly-20261203-0500"]


def test_editing_the_schedule_affects_future_slots_only(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    scheduling.create("nightly", sqlite_shop.spec())
    scheduling.wait_planned("nightly", at(2))
    first = scheduling.fire("nightly", at(2))
    scheduling.completed(first)
    scheduling.clock.set(at(2, 40))
    # Half past every hour, from 02:40 on: 02:30 lies before the edit and does not fire.
    edit = {"schedule": "30 * * * *", "template": {"compression": "gzip"}}
    scheduling.patch("nightly", {"spec": edit})
    scheduling.wait_planned("nightly", at(3, 30))
    scheduling.look("nightly")
    assert list(scheduling.backups("nightly")) == [first]
    second = scheduling.fire("nightly", at(3, 30))
    assert second == "nightly-20261203-0330"
    scheduling.completed(second)
    backups = scheduling.backups("nightly")
    assert backups[first]["spec"]["compression"] == "zstd"  # made before the edit: unchanged
    assert backups[second]["spec"]["compression"] == "gzip"


def test_the_trigger_annotation_backs_up_once_per_value(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    scheduling.create("nightly", sqlite_shop.spec(), suspend=True)  # on request only
    scheduling.cluster.wait_for(lambda: scheduling.condition("nightly", "Ready"))

    def trigger(value: str) -> None:
        scheduling.patch("nightly", {"metadata": {"annotations": {TRIGGER_ANNOTATION: value}}})

    trigger("before-upgrade")
    first = trigger_backup_name("nightly", "before-upgrade")
    scheduling.cluster.wait_for(lambda: first in scheduling.backups("nightly"))
    scheduling.completed(first)
    status = scheduling.status("nightly")
    assert status["lastTrigger"] == "before-upgrade"
    assert status["lastBackup"] == first
    annotations = scheduling.backups("nightly")[first]["metadata"]["annotations"]
    assert annotations[TRIGGER_ANNOTATION] == "before-upgrade"

    # The same value again, an operator restart, resyncs: nothing new.
    trigger("before-upgrade")
    scheduling.stop_operators()
    scheduling.start_operator()
    trigger("after-upgrade")
    second = trigger_backup_name("nightly", "after-upgrade")
    scheduling.cluster.wait_for(lambda: second in scheduling.backups("nightly"))
    scheduling.completed(second)
    trigger("after-upgrade")
    scheduling.cluster.wait_for(
        lambda: scheduling.status("nightly").get("lastSuccessfulBackup") == second
    )
    scheduling.look("nightly")
    assert set(scheduling.backups("nightly")) == {first, second}
    # The annotation stays as written (a GitOps tool sees no drift); status says it was done.
    annotations = scheduling.get("nightly")["metadata"]["annotations"]
    assert annotations[TRIGGER_ANNOTATION] == "after-upgrade"
    created = scheduling.created_events("nightly")
    assert len(created) == 2
    assert sum("before-upgrade" in e for e in created) == 1


@pytest.mark.parametrize(
    ("field", "value", "fix", "reason", "message"),
    [
        (
            "schedule",
            "61 * * * *",
            HOURLY,
            "InvalidSchedule",
            "spec.schedule: '61 * * * *' is not a valid",
        ),
        (
            "timeZone",
            "Mars/Olympus",
            "UTC",
            "InvalidSchedule",
            "spec.timeZone: 'Mars/Olympus' is not",
        ),
        (
            "retention",
            {"maxAge": "99999999999999999w"},
            {"maxAge": None, "keepLast": 3},
            "InvalidSpec",
            "spec.retention.maxAge: '99999999999999999w' is too long",
        ),
    ],
)
def test_what_the_schema_lets_through_stalls_with_the_field_named_until_fixed(
    scheduling: Scheduling,
    sqlite_shop: SqliteShop,
    field: str,
    value: Any,
    fix: Any,
    reason: str,
    message: str,
) -> None:
    scheduling.create("nightly", sqlite_shop.spec(), **{field: value})
    scheduling.cluster.wait_for(
        lambda: scheduling.condition("nightly", "Stalled").get("status") == "True"
    )
    stalled = scheduling.condition("nightly", "Stalled")
    assert stalled["reason"] == reason
    assert stalled["message"].startswith(message), stalled
    assert stalled["observedGeneration"] == 1
    ready = scheduling.condition("nightly", "Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert "nextScheduleTime" not in scheduling.status("nightly")
    events = scheduling.cluster.core.list_namespaced_event(scheduling.cluster.namespace).items
    assert any(e.type == "Warning" and e.reason == reason for e in events)
    scheduling.clock.set(at(3, 0, 5))  # slots come and go: nothing is created
    assert scheduling.look("nightly") == 2
    assert scheduling.condition("nightly", "Stalled")["observedGeneration"] == 2
    assert scheduling.backups("nightly") == {}

    scheduling.patch("nightly", {"spec": {field: fix}})
    scheduling.cluster.wait_for(
        lambda: scheduling.condition("nightly", "Ready").get("status") == "True"
    )
    assert scheduling.condition("nightly", "Stalled")["status"] == "False"
    assert scheduling.status("nightly")["observedGeneration"] == 3
    scheduling.wait_planned("nightly", at(4))  # fixed at 03:00:05: no slot of the past fires
    assert scheduling.backups("nightly") == {}
    scheduling.completed(scheduling.fire("nightly", at(4)))
