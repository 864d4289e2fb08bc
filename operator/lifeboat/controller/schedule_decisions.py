"""BackupSchedule decisions as pure functions: what a slot does, triggers, the retention policy
from the spec, conditions and status patches. `schedule.py` reads the world, asks these, and
writes what they decided; tests table-drive them without a server."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final

from lifeboat.api import (
    BackupScheduleSpec,
    ConcurrencyPolicy,
    ConditionStatus,
    ConditionType,
    Phase,
)
from lifeboat.builders.backups import SLOT_ANNOTATION, TRIGGER_ANNOTATION
from lifeboat.contract import Object
from lifeboat.controller.retention import (
    Outcome,
    RetentionPolicy,
    parse_duration,
)
from lifeboat.controller.transitions import TERMINAL_PHASES, set_condition

SCHEDULED: Final = "Scheduled"
SUSPENDED: Final = "Suspended"
INVALID_SCHEDULE: Final = "InvalidSchedule"
INVALID_SPEC: Final = "InvalidSpec"
SKIPPED_SUSPENDED: Final = "Suspended"
SKIPPED_BACKUP_RUNNING: Final = "BackupStillRunning"
SKIPPED_LATE: Final = "MissedStartingDeadline"
FOREGROUND_DELETION: Final = "foregroundDeletion"
LAST_TRIGGER_LIMIT: Final = 256
"""status.lastTrigger's maxLength: longer trigger values are recorded by their hash."""


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time from the API (None for none)."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


# -- the schedule's Backups, as facts -----------------------------------------------------------


@dataclass(frozen=True)
class ScheduledBackup:
    """One Backup labelled with the schedule, as the decisions need it."""

    name: str
    uid: str
    time: datetime
    """Its slot (the lifeboat.dev/slot annotation), else its creation."""
    phase: str | None
    completion_time: str | None
    owned: bool
    """Controlled by this schedule (not orphaned from an earlier schedule of the same name)."""
    deleting: bool
    deletion_policy: str

    @property
    def active(self) -> bool:
        """Pending or Running (and not on its way out)."""
        return not self.deleting and self.phase not in TERMINAL_PHASES

    @property
    def outcome(self) -> Outcome:
        if self.phase == Phase.COMPLETED.value:
            return Outcome.SUCCEEDED
        if self.phase == Phase.FAILED.value:
            return Outcome.FAILED
        return Outcome.ACTIVE


def view_backup(obj: Object, schedule_uid: str) -> ScheduledBackup:
    meta = obj["metadata"]
    annotations = meta.get("annotations") or {}
    status = obj.get("status") or {}
    when = parse_time(annotations.get(SLOT_ANNOTATION)) or parse_time(meta["creationTimestamp"])
    assert when is not None
    owners = meta.get("ownerReferences") or []
    return ScheduledBackup(
        name=meta["name"],
        uid=meta["uid"],
        time=when,
        phase=status.get("phase"),
        completion_time=status.get("completionTime"),
        owned=any(ref.get("uid") == schedule_uid for ref in owners),
        deleting=bool(meta.get("deletionTimestamp")),
        deletion_policy=str((obj.get("spec") or {}).get("deletionPolicy", "Retain")),
    )


def newest_completed(backups: Iterable[ScheduledBackup]) -> ScheduledBackup | None:
    """The newest Completed Backup, by slot (then by completion): what a Restore with
    scheduleRef restores."""
    done = [b for b in backups if b.phase == Phase.COMPLETED.value and not b.deleting]
    return max(done, key=lambda b: (b.time, b.completion_time or ""), default=None)


# -- decisions ----------------------------------------------------------------------------------


class SlotActionKind(StrEnum):
    CREATE = "Create"
    ADOPT = "Adopt"
    """The slot's Backup exists already (a restart, a second operator): nothing to create."""
    SKIP = "Skip"
    """Forbid: another Backup of the schedule is still Pending or Running."""


@dataclass(frozen=True)
class SlotAction:
    kind: SlotActionKind
    replaced: tuple[ScheduledBackup, ...] = ()
    """Replace: the active Backups to delete before creating the slot's."""
    running: tuple[ScheduledBackup, ...] = ()
    """The schedule's other active Backups when the slot came."""


def decide_slot_action(
    name: str, policy: ConcurrencyPolicy, backups: Iterable[ScheduledBackup]
) -> SlotAction:
    """What a due slot does, given the schedule's Backups. The slot's own Backup (created by a
    previous attempt or another operator) never counts as running: it is adopted."""
    backups = list(backups)
    if any(b.name == name for b in backups):
        return SlotAction(SlotActionKind.ADOPT)
    running = tuple(sorted((b for b in backups if b.owned and b.active), key=lambda b: b.name))
    if not running or policy is ConcurrencyPolicy.ALLOW:
        return SlotAction(SlotActionKind.CREATE, running=running)
    if policy is ConcurrencyPolicy.FORBID:
        return SlotAction(SlotActionKind.SKIP, running=running)
    return SlotAction(SlotActionKind.CREATE, replaced=running, running=running)


def trigger_record(value: str) -> str:
    """How a trigger value is recorded in status.lastTrigger (long ones by their hash)."""
    if len(value) <= LAST_TRIGGER_LIMIT:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def pending_trigger(annotations: dict[str, str] | None, status: Object | None) -> str | None:
    """The trigger annotation's value when it asks for a Backup not made yet, else None."""
    value = (annotations or {}).get(TRIGGER_ANNOTATION, "")
    if not value.strip() or trigger_record(value) == (status or {}).get("lastTrigger"):
        return None
    return value


def retention_policy(spec: BackupScheduleSpec) -> RetentionPolicy:
    """The spec's retention as the pure function's policy; ValueError (the field named) for a
    value the schema cannot refuse."""
    retention = spec.retention
    limit = spec.failed_backups_history_limit
    if retention is None:
        return RetentionPolicy(failed_history_limit=limit)
    try:
        max_age = parse_duration(retention.max_age) if retention.max_age else None
    except ValueError as exc:
        raise ValueError(f"spec.retention.maxAge: {exc}") from None
    return RetentionPolicy(
        keep_last=retention.keep_last,
        keep_hourly=retention.keep_hourly,
        keep_daily=retention.keep_daily,
        keep_weekly=retention.keep_weekly,
        keep_monthly=retention.keep_monthly,
        keep_yearly=retention.keep_yearly,
        max_age=max_age,
        failed_history_limit=limit,
    )


def suspended_since(status: Object, now: datetime) -> datetime:
    """Since when the schedule is known to be suspended: its Ready condition's transition to
    Suspended, else now (the operator sees it for the first time)."""
    ready = condition_of(status, ConditionType.READY.value)
    if ready and ready.get("reason") == SUSPENDED and ready.get("status") == "False":
        return parse_time(ready.get("lastTransitionTime")) or now
    return now


def last_handled_slot(status: Object) -> datetime | None:
    """The most recent slot already handled: a Backup created for it, or skipped."""
    times = [parse_time(status.get(k)) for k in ("lastScheduleTime", "lastSkippedTime")]
    return max((t for t in times if t is not None), default=None)


def schedule_conditions(
    status: Object,
    *,
    stalled: tuple[str, str] | None,
    suspended: bool,
    next_slot: str,
    generation: int | None,
    now: str,
) -> list[Object]:
    """Ready and Stalled, as kstatus, Argo CD and Flux read them. `stalled` is (reason,
    message) when the spec cannot run; `next_slot` the next slot in words."""
    T, F = ConditionStatus.TRUE, ConditionStatus.FALSE
    if stalled is not None:
        ready: tuple[ConditionStatus, str, str] = (F, *stalled)
        stall: tuple[ConditionStatus, str, str] = (T, *stalled)
    elif suspended:
        message = "suspended: no Backups for slots until spec.suspend is false"
        ready, stall = (F, SUSPENDED, message), (F, SUSPENDED, "")
    else:
        ready, stall = (T, SCHEDULED, f"next Backup at {next_slot}"), (F, SCHEDULED, "")
    conditions = list(status.get("conditions") or [])
    for type_, (value, reason, message) in (
        (ConditionType.READY, ready),
        (ConditionType.STALLED, stall),
    ):
        conditions = set_condition(
            conditions, type_.value, value, reason, message, generation=generation, now=now
        )
    if generation is not None:
        conditions = [{**c, "observedGeneration": generation} for c in conditions]
    return conditions


def status_changes(current: Object, desired: Object) -> Object:
    """The merge patch that makes `current` say `desired` (None values remove a field);
    condition transition times alone are no change."""

    def comparable(key: str, value: object) -> object:
        if key == "conditions" and isinstance(value, list):
            return sorted(
                ({k: v for k, v in c.items() if k != "lastTransitionTime"} for c in value),
                key=lambda c: str(c.get("type")),
            )
        return value

    return {
        key: value
        for key, value in desired.items()
        if comparable(key, current.get(key)) != comparable(key, value)
    }


def condition_of(status: Object, type_: str) -> Object | None:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), None)


# -- the reconcile --------------------------------------------------------------------------------
