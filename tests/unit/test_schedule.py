"""The schedule controller's pure parts: the Backup it builds, what a due slot does, triggers,
retention settings, conditions and the status patch. Table-driven, no API server."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lifeboat.api import BackupSchedule, ConcurrencyPolicy
from lifeboat.builders.backups import (
    GITOPS_ANNOTATIONS,
    SCHEDULE_LABEL,
    SLOT_ANNOTATION,
    TRIGGER_ANNOTATION,
    build_scheduled_backup,
    schedule_label_value,
)
from lifeboat.builders.naming import LABEL_INSTANCE
from lifeboat.controller.retention import Outcome
from lifeboat.controller.schedule import PhaseMemory, owning_schedule
from lifeboat.controller.schedule_decisions import (
    ScheduledBackup,
    SlotActionKind,
    decide_slot_action,
    last_handled_slot,
    newest_completed,
    pending_trigger,
    retention_policy,
    schedule_conditions,
    status_changes,
    suspended_since,
    trigger_record,
    view_backup,
)
from tests.unit.test_argocd_health import health

UID = "5c1e6d0a-1111-4222-8333-444455556666"
NOW = datetime(2026, 12, 3, 2, 0, 5, tzinfo=UTC)


def schedule(**spec: Any) -> BackupSchedule:
    return BackupSchedule.model_validate(
        {
            "metadata": {
                "name": "nightly",
                "namespace": "shop",
                "uid": UID,
                "labels": {"app.kubernetes.io/instance": "shop-app", "team": "shop"},
                "annotations": {"argocd.argoproj.io/tracking-id": "shop:x", "note": "mine"},
            },
            "spec": {
                "schedule": "0 2 * * *",
                "timeZone": "Europe/Berlin",
                "template": {
                    "database": {
                        "engine": "sqlite",
                        "persistentVolumeClaim": "app-data",
                        "path": "shop.db",
                    },
                    "storage": {"volume": {"persistentVolumeClaim": "backups"}},
                    "deletionPolicy": "Delete",
                },
                **spec,
            },
        }
    )


# -- the Backup a slot creates ----------------------------------------------------------------


def test_a_scheduled_backup_is_the_template_owned_and_labelled_for_the_schedule_only() -> None:
    slot = datetime(2026, 12, 3, 1, 0, tzinfo=UTC)  # 02:00 in Berlin
    backup = build_scheduled_backup(schedule(), "nightly-20261203-0200", slot)
    meta = backup["metadata"]
    assert (backup["apiVersion"], backup["kind"]) == ("lifeboat.dev/v1alpha1", "Backup")
    assert (meta["name"], meta["namespace"]) == ("nightly-20261203-0200", "shop")
    assert meta["labels"] == {
        "app.kubernetes.io/name": "lifeboat",
        "app.kubernetes.io/component": "backup",
        "app.kubernetes.io/managed-by": "lifeboat-operator",
        "lifeboat.dev/schedule": "nightly",
    }
    assert LABEL_INSTANCE not in meta["labels"]  # a GitOps tool's tracking label: never
    assert meta["annotations"] == {
        "argocd.argoproj.io/sync-options": "Prune=false",
        "argocd.argoproj.io/compare-options": "IgnoreExtraneous",
        "kustomize.toolkit.fluxcd.io/prune": "disabled",
        "lifeboat.dev/slot": "2026-12-03T01:00:00Z",
    }
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "lifeboat.dev/v1alpha1",
            "kind": "BackupSchedule",
            "name": "nightly",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert backup["spec"] == {
        "database": {"engine": "sqlite", "persistentVolumeClaim": "app-data", "path": "shop.db"},
        "storage": {"volume": {"persistentVolumeClaim": "backups", "path": ""}},
        "compression": "zstd",
        "deletionPolicy": "Delete",
    }


def test_a_triggered_backup_records_its_trigger() -> None:
    backup = build_scheduled_backup(schedule(), "nightly-manual-x", NOW, trigger="before-upgrade")
    annotations = backup["metadata"]["annotations"]
    assert annotations[TRIGGER_ANNOTATION] == "before-upgrade"
    assert annotations[SLOT_ANNOTATION] == "2026-12-03T02:00:05Z"
    assert GITOPS_ANNOTATIONS.items() <= annotations.items()


def test_schedule_label_values_stay_valid_for_long_names() -> None:
    assert schedule_label_value("nightly") == "nightly"
    label_value = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    long = "a" * 55 + "-." + "c" * 100  # cut after the '-.': it must not end the value
    value = schedule_label_value(long)
    assert len(value) <= 63
    assert label_value.match(value), value
    assert value.startswith("a" * 55 + "-")
    assert value != schedule_label_value(long + "d")


# -- the schedule's Backups as facts ----------------------------------------------------------


def backup_obj(
    name: str,
    *,
    slot: str | None = None,
    phase: str | None = None,
    owner: str | None = UID,
    created: str = "2026-12-01T00:00:00Z",
    deleting: bool = False,
    completed: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "uid": f"uid-{name}",
        "creationTimestamp": created,
        "labels": {SCHEDULE_LABEL: "nightly"},
    }
    if slot:
        meta["annotations"] = {SLOT_ANNOTATION: slot}
    if owner:
        meta["ownerReferences"] = [
            {"kind": "BackupSchedule", "name": "nightly", "uid": owner, "controller": True}
        ]
    if deleting:
        meta["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    status = {"phase": phase, "completionTime": completed} if phase else {}
    return {"metadata": meta, "spec": {"deletionPolicy": "Retain"}, "status": status}


def test_a_backup_is_timed_by_its_slot_else_by_its_creation() -> None:
    slotted = view_backup(backup_obj("a", slot="2026-12-02T01:00:00Z"), UID)
    assert slotted.time == datetime(2026, 12, 2, 1, 0, tzinfo=UTC)
    unslotted = view_backup(backup_obj("b", created="2026-11-30T05:00:00Z"), UID)
    assert unslotted.time == datetime(2026, 11, 30, 5, 0, tzinfo=UTC)
    assert slotted.owned
    assert not view_backup(backup_obj("c", owner="someone-else"), UID).owned
    assert not view_backup(backup_obj("d", owner=None), UID).owned


@pytest.mark.parametrize(
    ("phase", "deleting", "active", "outcome"),
    [
        (None, False, True, Outcome.ACTIVE),
        ("Pending", False, True, Outcome.ACTIVE),
        ("Running", False, True, Outcome.ACTIVE),
        ("Running", True, False, Outcome.ACTIVE),
        ("Completed", False, False, Outcome.SUCCEEDED),
        ("Failed", False, False, Outcome.FAILED),
    ],
)
def test_phases_as_retention_sees_them(
    phase: str | None, deleting: bool, active: bool, outcome: Outcome
) -> None:
    backup = view_backup(backup_obj("x", phase=phase, deleting=deleting), UID)
    assert backup.active is active
    assert backup.outcome is outcome


def test_the_newest_completed_backup_is_chosen_by_slot() -> None:
    backups = [
        view_backup(backup_obj(n, slot=s, phase=p, completed=c, deleting=d), UID)
        for n, s, p, c, d in [
            ("old", "2026-12-01T01:00:00Z", "Completed", "2026-12-01T01:05:00Z", False),
            ("mid", "2026-12-02T01:00:00Z", "Completed", "2026-12-03T09:00:00Z", False),
            ("new-failed", "2026-12-03T01:00:00Z", "Failed", "2026-12-03T01:01:00Z", False),
            ("newest-running", "2026-12-04T01:00:00Z", "Running", None, False),
            ("going", "2026-12-05T01:00:00Z", "Completed", "2026-12-05T01:01:00Z", True),
        ]
    ]
    newest = newest_completed(backups)
    assert newest is not None
    assert newest.name == "mid"
    assert newest_completed(backups[2:4]) is None


# -- what a due slot does ---------------------------------------------------------------------


def active(name: str, *, owned: bool = True, phase: str = "Running") -> ScheduledBackup:
    return ScheduledBackup(
        name=name,
        uid=f"uid-{name}",
        time=NOW - timedelta(hours=1),
        phase=phase,
        completion_time=None,
        owned=owned,
        deleting=False,
        deletion_policy="Retain",
    )


SLOT = "nightly-20261203-0200"


@pytest.mark.parametrize(
    ("policy", "backups", "kind", "replaced", "running"),
    [
        (ConcurrencyPolicy.FORBID, [], SlotActionKind.CREATE, [], []),
        (ConcurrencyPolicy.FORBID, [active("b1")], SlotActionKind.SKIP, [], ["b1"]),
        (ConcurrencyPolicy.ALLOW, [active("b1")], SlotActionKind.CREATE, [], ["b1"]),
        (ConcurrencyPolicy.REPLACE, [active("b1")], SlotActionKind.CREATE, ["b1"], ["b1"]),
        (
            ConcurrencyPolicy.FORBID,
            [active("b1", phase="Completed"), active("b2", phase="Failed")],
            SlotActionKind.CREATE,
            [],
            [],
        ),
        # Another schedule's orphan, or a hand-made Backup with the label: not ours to wait for.
        (ConcurrencyPolicy.FORBID, [active("b1", owned=False)], SlotActionKind.CREATE, [], []),
        # The slot's own Backup (a restart, a second operator): adopted, whatever the policy,
        # and never replaced or counted as running.
        (ConcurrencyPolicy.FORBID, [active(SLOT)], SlotActionKind.ADOPT, [], []),
        (ConcurrencyPolicy.REPLACE, [active(SLOT), active("b1")], SlotActionKind.ADOPT, [], []),
    ],
)
def test_what_a_due_slot_does(
    policy: ConcurrencyPolicy,
    backups: list[ScheduledBackup],
    kind: SlotActionKind,
    replaced: list[str],
    running: list[str],
) -> None:
    action = decide_slot_action(SLOT, policy, backups)
    assert action.kind is kind
    assert [b.name for b in action.replaced] == replaced
    assert [b.name for b in action.running] == running


# -- triggers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotations", "status", "pending"),
    [
        (None, None, None),
        ({}, {}, None),
        ({TRIGGER_ANNOTATION: ""}, {}, None),
        ({TRIGGER_ANNOTATION: "  "}, {}, None),
        ({TRIGGER_ANNOTATION: "now"}, {}, "now"),
        ({TRIGGER_ANNOTATION: "now"}, {"lastTrigger": "now"}, None),
        ({TRIGGER_ANNOTATION: "again"}, {"lastTrigger": "now"}, "again"),
        ({"other": "now"}, {}, None),
    ],
)
def test_a_trigger_is_pending_once_per_value(
    annotations: dict[str, str] | None, status: dict[str, str] | None, pending: str | None
) -> None:
    assert pending_trigger(annotations, status) == pending


def test_long_trigger_values_are_recorded_by_their_hash() -> None:
    long = "x" * 300
    recorded = trigger_record(long)
    assert len(recorded) <= 256
    assert recorded.startswith("sha256:")
    assert pending_trigger({TRIGGER_ANNOTATION: long}, {"lastTrigger": recorded}) is None
    assert trigger_record("short") == "short"


# -- settings ---------------------------------------------------------------------------------


def test_retention_settings_become_the_policy() -> None:
    spec = schedule(
        retention={"keepDaily": 7, "keepWeekly": 4, "keepMonthly": 6, "maxAge": "30d"},
        failedBackupsHistoryLimit=1,
    ).spec
    policy = retention_policy(spec)
    assert (policy.keep_daily, policy.keep_weekly, policy.keep_monthly) == (7, 4, 6)
    assert policy.max_age == timedelta(days=30)
    assert policy.failed_history_limit == 1
    assert not retention_policy(schedule().spec).has_rules


def test_a_max_age_the_schema_lets_through_is_refused_with_the_field_named() -> None:
    spec = schedule(retention={"maxAge": "99999999999999w"}).spec
    with pytest.raises(ValueError, match=r"^spec\.retention\.maxAge: .*too long"):
        retention_policy(spec)


def test_the_last_handled_slot_is_the_later_of_created_and_skipped() -> None:
    assert last_handled_slot({}) is None
    status = {"lastScheduleTime": "2026-12-02T01:00:00Z", "lastSkippedTime": "2026-12-03T01:00:00Z"}
    assert last_handled_slot(status) == datetime(2026, 12, 3, 1, 0, tzinfo=UTC)


def test_suspended_since_is_when_ready_turned_suspended() -> None:
    since = "2026-12-03T00:10:00Z"
    suspended = {
        "conditions": [
            {"type": "Ready", "status": "False", "reason": "Suspended", "lastTransitionTime": since}
        ]
    }
    assert suspended_since(suspended, NOW) == datetime(2026, 12, 3, 0, 10, tzinfo=UTC)
    scheduled = {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Scheduled", "lastTransitionTime": since}
        ]
    }
    assert suspended_since(scheduled, NOW) == NOW
    assert suspended_since({}, NOW) == NOW


# -- conditions and status --------------------------------------------------------------------


def conditions_of(**kwargs: Any) -> dict[str, tuple[str, str, str, int | None]]:
    found = schedule_conditions({}, generation=3, now="2026-12-03T02:00:05Z", **kwargs)
    return {
        c["type"]: (c["status"], c["reason"], c["message"], c.get("observedGeneration"))
        for c in found
    }


def test_conditions_of_a_running_schedule() -> None:
    assert conditions_of(stalled=None, suspended=False, next_slot="2026-12-04 02:00 UTC") == {
        "Ready": ("True", "Scheduled", "next Backup at 2026-12-04 02:00 UTC", 3),
        "Stalled": ("False", "Scheduled", "", 3),
    }


def test_conditions_of_a_suspended_schedule() -> None:
    found = conditions_of(stalled=None, suspended=True, next_slot="x")
    assert found["Ready"][:2] == ("False", "Suspended")
    assert found["Stalled"][:2] == ("False", "Suspended")


def test_conditions_of_a_stalled_schedule_name_the_field() -> None:
    message = "spec.schedule: '61 * * * *' is not a valid cron expression"
    found = conditions_of(stalled=("InvalidSchedule", message), suspended=True, next_slot="")
    assert found["Ready"] == ("False", "InvalidSchedule", message, 3)
    assert found["Stalled"] == ("True", "InvalidSchedule", message, 3)


def test_status_changes_only_what_differs_and_removes_with_none() -> None:
    current = {
        "nextScheduleTime": "2026-12-04T01:00:00Z",
        "active": ["a"],
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "S", "lastTransitionTime": "t1"}
        ],
    }
    desired = {
        "nextScheduleTime": "2026-12-04T01:00:00Z",
        "active": None,
        "kept": None,
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "S", "lastTransitionTime": "t2"}
        ],
    }
    assert status_changes(current, desired) == {"active": None}


# -- following Backups ------------------------------------------------------------------------


def test_a_phase_change_is_reported_once_and_the_first_sight_is_not_one() -> None:
    memory = PhaseMemory()
    assert not memory.changed("u", None)
    assert memory.changed("u", "Pending")
    assert not memory.changed("u", "Pending")
    assert memory.changed("u", "Completed")
    memory.forget("u")
    assert not memory.changed("u", "Completed")


def test_the_owning_schedule_is_the_controller_reference() -> None:
    assert owning_schedule(backup_obj("x")) == "nightly"
    assert owning_schedule(backup_obj("x", owner=None)) is None


# -- what Argo CD makes of the conditions the controller writes -------------------------------


@pytest.mark.parametrize(
    ("suspended", "stalled", "expected"),
    [
        (False, None, "Healthy"),
        (True, None, "Suspended"),
        (False, ("InvalidSchedule", "spec.schedule: '61 * * * *' is not valid"), "Degraded"),
    ],
)
def test_argo_cd_reads_the_schedule_conditions_as_meant(
    suspended: bool, stalled: tuple[str, str] | None, expected: str
) -> None:
    status = {
        "observedGeneration": 2,
        "nextScheduleTime": "2026-12-04T01:00:00Z",
        "conditions": schedule_conditions(
            {},
            stalled=stalled,
            suspended=suspended,
            next_slot="2026-12-04 02:00 Europe/Berlin",
            generation=2,
            now="2026-12-03T02:00:05Z",
        ),
    }
    obj = {
        "metadata": {"name": "nightly", "generation": 2},
        "spec": {"suspend": suspended},
        "status": status,
    }
    state, message = health("schedule.lua", obj)
    assert state == expected, message
    if stalled is not None:
        assert stalled[1] in message
