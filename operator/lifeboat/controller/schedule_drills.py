"""A BackupSchedule's restore drills: number its Completed Backups, create the drill that is due,
and say in status what the drills proved. Called by `schedule.reconcile_schedule` on every look
at the schedule; the decisions are `drill_decisions`' pure functions.

Exactly one drill per Backup (spec.drill.every) or per drill slot (spec.drill.schedule): a drill
is named after its Backup or its slot and created with that name, so a second create (a restart,
a second operator, a replayed event) gets 409 AlreadyExists and adopts it. A drill is owned by
the Backup it drills: retention pruning the Backup deletes its drills, and never prunes a Backup
an unfinished drill reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from kubernetes import client

from lifeboat.api import BACKUP_PLURAL, DRILL_PLURAL, SCHEDULE_PLURAL, BackupSchedule
from lifeboat.builders.backups import SCHEDULE_LABEL, rfc3339, schedule_label_value
from lifeboat.builders.drills import (
    SEQUENCE_ANNOTATION,
    backup_drill_name,
    build_scheduled_drill,
    slot_drill_name,
)
from lifeboat.contract import Object
from lifeboat.controller.drill_decisions import (
    NO_COMPLETED_BACKUP,
    DrillableBackup,
    Verification,
    drilled_backups,
    due_every,
    newest_completed_backup,
    sequence_numbers,
    verification,
    view_drillable,
)
from lifeboat.controller.schedule_decisions import parse_time
from lifeboat.controller.slots import Schedule, SlotDecision, check_slot, slot_label
from lifeboat.kube.objects import create_or_adopt_custom, list_custom, patch_custom


@dataclass
class DrillStep:
    """What one look at the schedule decided about its drills."""

    status: Object = field(default_factory=dict)
    """Status fields to write (None removes one)."""
    verification: Verification = field(default_factory=Verification)


@dataclass(frozen=True)
class DrillContext:
    """What `handle_drills` needs of the schedule's reconcile."""

    api: client.ApiClient
    obj: Object
    schedule: BackupSchedule
    drill_cron: Schedule | None
    """spec.drill.schedule, parsed (in spec.timeZone); None for spec.drill.every or no drill."""
    now: datetime
    backups: list[Object]
    """The schedule's Backups as listed (by its label)."""
    event: Callable[[str, str], None]
    """Posts a Normal Event on the schedule (and logs it)."""

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


def handle_drills(context: DrillContext) -> DrillStep:
    uid = str(context.obj["metadata"]["uid"])
    backups = [view_drillable(obj, uid) for obj in context.backups]
    drill = context.schedule.spec.drill
    step = DrillStep()
    if drill is None or context.schedule.spec.suspend:
        step.status["nextDrillTime"] = None
    elif drill.every is not None:
        backups = _number(context, backups)
        _drill_every(context, backups, drill.every, step)
    elif context.drill_cron is not None:
        _drill_slot(context, context.drill_cron, backups, step)
    found = verification(backups, configured=drill is not None)
    step.verification = found
    step.status["lastVerifiedBackup"] = found.last_verified_backup
    step.status["lastVerifiedTime"] = found.last_verified_time
    return step


def _number(context: DrillContext, backups: list[DrillableBackup]) -> list[DrillableBackup]:
    """Give new Completed Backups their lifeboat.dev/sequence; the views with the numbers."""
    numbers = sequence_numbers(backups)
    for name, number in numbers.items():
        patch = {"metadata": {"annotations": {SEQUENCE_ANNOTATION: str(number)}}}
        patch_custom(context.api, BACKUP_PLURAL, context.namespace, name, patch)
    return [replace(b, sequence=numbers[b.name]) if b.name in numbers else b for b in backups]


def _schedule_drills(context: DrillContext) -> list[Object]:
    selector = f"{SCHEDULE_LABEL}={schedule_label_value(context.name)}"
    return list_custom(context.api, DRILL_PLURAL, context.namespace, label_selector=selector)


def _create(
    context: DrillContext, name: str, backup: DrillableBackup, slot: datetime, why: str
) -> None:
    body = build_scheduled_drill(
        context.schedule, name, backup_name=backup.name, backup_uid=backup.uid, slot=slot
    )
    _, created = create_or_adopt_custom(context.api, DRILL_PLURAL, body)
    if created:
        context.event("DrillCreated", f"created RestoreDrill {name} of Backup {backup.name} {why}")


def _drill_every(
    context: DrillContext, backups: list[DrillableBackup], every: int, step: DrillStep
) -> None:
    step.status["nextDrillTime"] = None
    drilled = drilled_backups(backups, _schedule_drills(context))
    last = (context.obj.get("status") or {}).get("lastDrill")
    by_name = {backup_drill_name(b.name): b.name for b in backups}
    if last in by_name:
        drilled.add(by_name[last])
    due = due_every(backups, every, drilled)
    if due is None:
        return
    name = backup_drill_name(due.name)
    why = f"(Completed Backup number {due.sequence}, every {every})"
    _create(context, name, due, context.now, why)
    step.status["lastDrill"] = name


def _drill_slot(
    context: DrillContext, cron: Schedule, backups: list[DrillableBackup], step: DrillStep
) -> None:
    current = context.obj.get("status") or {}
    check = check_slot(
        cron,
        now=context.now,
        planned=parse_time(current.get("nextDrillTime")),
        last_slot=parse_time(current.get("lastDrillScheduleTime")),
        starting_deadline_seconds=context.schedule.spec.starting_deadline_seconds,
    )
    step.status["nextDrillTime"] = rfc3339(check.next_slot)
    slot = check.slot
    if slot is None or check.decision not in (SlotDecision.DUE, SlotDecision.MISSED):
        return
    step.status["lastDrillScheduleTime"] = rfc3339(slot)
    when = f"{slot.astimezone(cron.zone):%Y-%m-%d %H:%M} {context.schedule.spec.time_zone}"
    newest = newest_completed_backup(backups)
    if check.decision is SlotDecision.MISSED or newest is None:
        reason = "MissedStartingDeadline" if newest is not None else NO_COMPLETED_BACKUP
        step.status["lastDrillSkippedReason"] = reason
        context.event("DrillSlotSkipped", f"drill slot {when} skipped: {reason}")
        return
    name = slot_drill_name(context.name, slot_label(slot, cron.zone))
    _create(context, name, newest, slot, f"for the drill slot {when}")
    step.status["lastDrill"] = name
    step.status["lastDrillSkippedReason"] = None


def schedule_of_label(api: client.ApiClient, namespace: str, label: str) -> str | None:
    """The BackupSchedule whose lifeboat.dev/schedule label value is `label` (a long name's is
    shortened with a hash, so it is matched, not read back)."""
    if not label:
        return None
    for obj in list_custom(api, SCHEDULE_PLURAL, namespace):
        name = str(obj["metadata"]["name"])
        if schedule_label_value(name) == label:
            return name
    return None
