"""BackupSchedule: exactly one Backup per slot, never a burst, and a history pruned safely.

Level-triggered: each reconcile reads the schedule and its Backups as they are now, decides
with pure functions (`slots.check_slot`, `decide_slot_action`, `retention.decide_retention`,
`schedule_conditions`) and writes what it decided. Running it twice, late, after a restart or
from two operators at once gives the same result, because:

- a slot's Backup is named after the slot (`nightly-20261203-0200`, `slots.backup_name`), so a
  second create gets 409 AlreadyExists and adopts it: the name, not the status, is what makes a
  slot happen once;
- a slot fires only if it was planned (`status.nextScheduleTime`) and not already handled
  (`status.lastScheduleTime`, `status.lastSkippedTime`), so after any downtime at most the most
  recent slot is caught up;
- "now" is the operator's clock (`OperatorConfig.clock`), never the API server's.

A reconcile runs when the schedule is created, edited or found at start-up, every
`schedule_check_seconds`, when its trigger annotation gets a new value, and when one of its
Backups changes phase (see controller/operator.py).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime

from kubernetes import client
from pydantic import ValidationError

from lifeboat.api import (
    BACKUP_PLURAL,
    DRILL_PLURAL,
    RESTORE_PLURAL,
    SCHEDULE_KIND,
    SCHEDULE_PLURAL,
    BackupSchedule,
    ConditionStatus,
    ConditionType,
    Phase,
    describe_validation_error,
)
from lifeboat.api.schedule import KEPT_LIST_LIMIT
from lifeboat.builders.backups import (
    SCHEDULE_LABEL,
    TRIGGER_ANNOTATION,
    build_scheduled_backup,
    rfc3339,
    schedule_label_value,
)
from lifeboat.contract import Object
from lifeboat.controller import metrics
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.jobs import post_event, resource_lock
from lifeboat.controller.retention import (
    BackupRecord,
    Outcome,
    RetentionDecision,
    RetentionPolicy,
    decide_retention,
)
from lifeboat.controller.schedule_decisions import (
    FOREGROUND_DELETION,
    INVALID_SCHEDULE,
    INVALID_SPEC,
    SKIPPED_BACKUP_RUNNING,
    SKIPPED_LATE,
    SKIPPED_SUSPENDED,
    ScheduledBackup,
    SlotActionKind,
    condition_of,
    decide_slot_action,
    last_handled_slot,
    newest_completed,
    parse_time,
    pending_trigger,
    retention_policy,
    schedule_conditions,
    status_changes,
    suspended_since,
    trigger_record,
    view_backup,
)
from lifeboat.controller.schedule_drills import DrillContext, DrillStep, handle_drills
from lifeboat.controller.slots import (
    InvalidSchedule,
    Schedule,
    SlotCheck,
    SlotDecision,
    backup_name,
    check_slot,
    trigger_backup_name,
)
from lifeboat.controller.tenancy import job_refusal
from lifeboat.controller.transitions import TERMINAL_PHASES, set_condition
from lifeboat.kube.objects import (
    create_or_adopt_custom,
    delete_custom,
    list_custom,
    patch_custom,
    patch_status,
    read_custom,
)

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """One reconcile of one schedule: what it read, and the status it is writing."""

    api: client.ApiClient
    obj: Object
    schedule: BackupSchedule
    cron: Schedule
    policy: RetentionPolicy
    now: datetime
    backups: list[ScheduledBackup]
    objects: list[Object] = field(default_factory=list)
    """The schedule's Backups as listed (what `backups` views)."""
    drill_cron: Schedule | None = None
    """spec.drill.schedule, parsed."""
    status: Object = field(default_factory=dict)
    """Status fields decided so far."""
    changed_backups: bool = False

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def current(self) -> Object:
        current: Object = self.obj.get("status") or {}
        return current

    def local(self, moment: datetime) -> str:
        """A slot in the schedule's own words: 2026-12-03 02:00 Europe/Berlin."""
        zone = self.schedule.spec.time_zone
        return f"{moment.astimezone(self.cron.zone).strftime('%Y-%m-%d %H:%M')} {zone}"

    def event(self, reason: str, message: str) -> None:
        post_event(self.obj, "Normal", reason, message)
        fields = {"kind": SCHEDULE_KIND, "namespace": self.namespace, "name": self.name}
        log.info(
            "BackupSchedule %s/%s: %s",
            self.namespace,
            self.name,
            message,
            extra={"resource": fields, "reason": reason},
        )


def reconcile_schedule(
    api: client.ApiClient, namespace: str, name: str, config: OperatorConfig
) -> None:
    """Bring one schedule up to date: a trigger, a due slot, retention, status."""
    with resource_lock(SCHEDULE_PLURAL, namespace, name):
        obj = read_custom(api, SCHEDULE_PLURAL, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        now = config.clock()
        try:
            schedule = BackupSchedule.model_validate(obj)
        except ValidationError as exc:
            _stall(api, obj, INVALID_SPEC, describe_validation_error(exc), now)
            return
        try:
            cron = Schedule.parse(schedule.spec.schedule, schedule.spec.time_zone)
        except InvalidSchedule as exc:
            _stall(api, obj, INVALID_SCHEDULE, str(exc), now)
            return
        try:
            policy = retention_policy(schedule.spec)
        except ValueError as exc:
            _stall(api, obj, INVALID_SPEC, str(exc), now)
            return
        refusal = job_refusal(
            schedule.spec.template.job,
            namespace=namespace,
            defaults=config.job_defaults,
            policy=config.job_policy,
            field="spec.template.job",
            then="then edit the schedule. No Backup was created.",
        )
        if refusal is not None:  # every Backup it made would fail the same way
            _stall(api, obj, refusal.reason, refusal.message, now)
            return
        drill = schedule.spec.drill
        refusal = job_refusal(
            drill.job if drill is not None else None,
            namespace=namespace,
            defaults=config.job_defaults,
            policy=config.job_policy,
            field="spec.drill.job",
            then="then edit the schedule. No RestoreDrill was created.",
        )
        if refusal is not None:  # every drill it made would fail the same way
            _stall(api, obj, refusal.reason, refusal.message, now)
            return
        try:
            drill_cron = (
                Schedule.parse(drill.schedule, schedule.spec.time_zone)
                if drill is not None and drill.schedule is not None
                else None
            )
        except InvalidSchedule as exc:
            message = str(exc).replace("spec.schedule:", "spec.drill.schedule:", 1)
            _stall(api, obj, INVALID_SCHEDULE, message, now)
            return
        objects = _list_backup_objects(api, obj)
        run = _Run(api, obj, schedule, cron, policy, now, _views(obj, objects), objects, drill_cron)
        _handle_trigger(run)
        check = _handle_slot(run)
        if run.changed_backups:
            run.objects = _list_backup_objects(api, obj)
            run.backups = _views(obj, run.objects)
        decision = _apply_retention(run)
        drills = _handle_drills(run, decision)
        _write_status(run, check, decision, drills)


def _list_backup_objects(api: client.ApiClient, obj: Object) -> list[Object]:
    meta = obj["metadata"]
    selector = f"{SCHEDULE_LABEL}={schedule_label_value(meta['name'])}"
    return list_custom(api, BACKUP_PLURAL, meta["namespace"], label_selector=selector)


def _views(obj: Object, listed: list[Object]) -> list[ScheduledBackup]:
    return [view_backup(item, obj["metadata"]["uid"]) for item in listed]


def _handle_drills(run: _Run, decision: RetentionDecision) -> DrillStep:
    """Restore drills (spec.drill): after retention, among the Backups it kept."""
    pruned = set(decision.pruned)
    context = DrillContext(
        api=run.api,
        obj=run.obj,
        schedule=run.schedule,
        drill_cron=run.drill_cron,
        now=run.now,
        backups=[o for o in run.objects if o["metadata"]["name"] not in pruned],
        event=run.event,
    )
    return handle_drills(context)


def _create(run: _Run, name: str, slot: datetime, trigger: str | None, why: str) -> None:
    body = build_scheduled_backup(run.schedule, name, slot, trigger=trigger)
    _, created = create_or_adopt_custom(run.api, BACKUP_PLURAL, body)
    run.changed_backups = True
    run.status["lastBackup"] = name
    if created:
        run.event("BackupCreated", f"created Backup {name} {why}")
        if trigger is None:
            metrics.slot_fired(run.namespace, run.name)
        else:
            metrics.trigger_fired(run.namespace, run.name)


def _handle_trigger(run: _Run) -> None:
    """`lifeboat.dev/trigger: <value>`: one extra Backup per value, whatever the slots say."""
    value = pending_trigger(run.obj["metadata"].get("annotations"), run.current)
    if value is None:
        return
    name = trigger_backup_name(run.name, value)
    shown = value if len(value) <= 64 else value[:61] + "..."
    _create(run, name, run.now, value, f"on request ({TRIGGER_ANNOTATION}={shown!r})")
    run.status["lastTrigger"] = trigger_record(value)


def _handle_slot(run: _Run) -> SlotCheck:
    spec, current = run.schedule.spec, run.current
    check = check_slot(
        run.cron,
        now=run.now,
        planned=parse_time(current.get("nextScheduleTime")),
        last_slot=last_handled_slot(current),
        starting_deadline_seconds=spec.starting_deadline_seconds,
        suspended_since=suspended_since(current, run.now) if spec.suspend else None,
    )
    run.status["nextScheduleTime"] = None if spec.suspend else rfc3339(check.next_slot)
    slot = check.slot
    if slot is None:
        return check
    when = run.local(slot)
    if check.decision is SlotDecision.SUSPENDED:
        _skip(run, slot, SKIPPED_SUSPENDED, f"slot {when} skipped: the schedule is suspended")
    elif check.decision is SlotDecision.MISSED:
        late = int((run.now - slot).total_seconds())
        _skip(
            run,
            slot,
            SKIPPED_LATE,
            f"slot {when} skipped: seen {late}s late, more than startingDeadlineSeconds "
            f"({spec.starting_deadline_seconds})",
        )
    elif check.decision is SlotDecision.DUE:
        _fire(run, slot, when)
    return check


def _fire(run: _Run, slot: datetime, when: str) -> None:
    name = backup_name(run.name, slot, run.cron.zone)
    action = decide_slot_action(name, run.schedule.spec.concurrency_policy, run.backups)
    if action.kind is SlotActionKind.SKIP:
        running = ", ".join(f"{b.name} ({b.phase or Phase.PENDING.value})" for b in action.running)
        _skip(
            run,
            slot,
            SKIPPED_BACKUP_RUNNING,
            f"slot {when} skipped: Backup {running} of this schedule is still running "
            "(concurrencyPolicy Forbid)",
        )
        return
    for old in action.replaced:
        if delete_custom(
            run.api, BACKUP_PLURAL, run.namespace, old.name, uid=old.uid, propagation="Foreground"
        ):
            run.event(
                "BackupReplaced",
                f"deleted Backup {old.name} ({old.phase or Phase.PENDING.value}) to start the "
                f"slot {when} (concurrencyPolicy Replace; its deletionPolicy "
                f"{old.deletion_policy} applies)",
            )
    if action.kind is SlotActionKind.CREATE:
        _create(run, name, slot, None, f"for the slot {when}")
    run.status["lastScheduleTime"] = rfc3339(slot)
    run.status["lastBackup"] = name


def _skip(run: _Run, slot: datetime, reason: str, message: str) -> None:
    run.status.update(
        {
            "lastSkippedTime": rfc3339(slot),
            "lastSkippedReason": reason,
            "lastSkippedMessage": message,
        }
    )
    run.event("SlotSkipped", message)
    metrics.slot_skipped(run.namespace, run.name, reason)


def _apply_retention(run: _Run) -> RetentionDecision:
    """Delete the Backups the policy no longer keeps; each one's deletionPolicy then decides
    whether its files go. Only Backups this schedule controls are ever pruned."""
    owned = [b for b in run.backups if b.owned and not b.deleting]
    records = [BackupRecord(b.name, b.time, b.outcome) for b in owned]
    zone = run.cron.zone
    decision = decide_retention(records, run.policy, now=run.now, zone=zone)
    if decision.pruned:
        protected = _read_by_restores(run.api, run.namespace)
        decision = decide_retention(
            records, run.policy, now=run.now, zone=zone, protected=protected
        )
    by_name = {b.name: b for b in owned}
    limit = run.policy.failed_history_limit
    for name in decision.pruned:
        backup = by_name[name]
        if not delete_custom(run.api, BACKUP_PLURAL, run.namespace, name, uid=backup.uid):
            continue
        why = (
            f"failed, beyond failedBackupsHistoryLimit {limit}"
            if backup.outcome is Outcome.FAILED
            else "not kept by spec.retention"
        )
        metrics.backup_pruned(run.namespace, run.name, backup.outcome.value)
        run.event(
            "BackupPruned",
            f"deleted Backup {name} ({why}); its deletionPolicy {backup.deletion_policy} "
            + (
                "deletes its files"
                if backup.deletion_policy == "Delete"
                else "keeps its files in storage"
            ),
        )
    pruned = set(decision.pruned)
    run.backups = [b for b in run.backups if b.name not in pruned]
    return decision


def _read_by_restores(api: client.ApiClient, namespace: str) -> set[str]:
    """Backups an unfinished Restore or RestoreDrill reads (backupRef, or what its scheduleRef
    resolved to)."""
    names: set[str] = set()
    readers = [
        *list_custom(api, RESTORE_PLURAL, namespace),
        *list_custom(api, DRILL_PLURAL, namespace),
    ]
    for restore in readers:
        status = restore.get("status") or {}
        if status.get("phase") in TERMINAL_PHASES:
            continue
        ref = ((restore.get("spec") or {}).get("backupRef") or {}).get("name")
        for name in (ref, status.get("resolvedBackup")):
            if name:
                names.add(str(name))
    return names


def _write_status(
    run: _Run, check: SlotCheck, decision: RetentionDecision, drills: DrillStep
) -> None:
    owned = [b for b in run.backups if b.owned]
    times = {b.name: b.time for b in owned}
    kept = sorted(decision.kept.items(), key=lambda item: times[item[0]], reverse=True)
    active = sorted(b.name for b in owned if b.active)
    desired: Object = {
        **run.status,
        "active": active or None,
        "kept": [
            {"name": name, "time": rfc3339(times[name]), "rules": rules}
            for name, rules in kept[:KEPT_LIST_LIMIT]
        ]
        or None,
        "keptCount": len(kept),
    }
    newest = newest_completed(owned)
    if newest is not None:
        desired["lastSuccessfulBackup"] = newest.name
        desired["lastSuccessfulTime"] = newest.completion_time
    desired.update(drills.status)
    _write(
        run.api,
        run.obj,
        desired,
        None,
        run.now,
        next_slot=run.local(check.next_slot),
        verified=drills.verification.condition,
    )


def _stall(api: client.ApiClient, obj: Object, reason: str, message: str, now: datetime) -> None:
    """The spec cannot run: say so, with the field named, and create nothing until it is
    edited (an edit reconciles at once)."""
    message = message.replace("\n", "; ")
    current = obj.get("status") or {}
    stalled = condition_of(current, ConditionType.STALLED.value) or {}
    if stalled.get("status") != "True" or stalled.get("message") != message:
        post_event(obj, "Warning", reason, message)
    _write(api, obj, {"nextScheduleTime": None}, (reason, message), now, next_slot="")


def _write(
    api: client.ApiClient,
    obj: Object,
    desired: Object,
    stalled: tuple[str, str] | None,
    now: datetime,
    *,
    next_slot: str,
    verified: tuple[ConditionStatus, str, str] | None = None,
) -> None:
    """Write what changed. `verified`: the Verified condition (spec.drill), None to leave it."""
    meta = obj["metadata"]
    generation = meta.get("generation")
    current: Object = obj.get("status") or {}
    suspended = bool((obj.get("spec") or {}).get("suspend"))
    conditions = schedule_conditions(
        current,
        stalled=stalled,
        suspended=suspended,
        next_slot=next_slot,
        generation=generation,
        now=rfc3339(now),
    )
    if verified is not None:
        conditions = set_condition(
            conditions,
            ConditionType.VERIFIED.value,
            *verified,
            generation=generation,
            now=rfc3339(now),
        )
    desired = {**desired, "observedGeneration": generation, "conditions": conditions}
    patch = status_changes(current, desired)
    if patch:
        patch_status(api, SCHEDULE_PLURAL, meta["namespace"], meta["name"], patch)


# -- deleting a schedule ------------------------------------------------------------------------


def release_backups(api: client.ApiClient, body: Object) -> None:
    """A schedule is being deleted: its Backups stay. Each loses its ownerReference to the
    schedule (labels kept), so the garbage collector does not delete it when the schedule goes.

    Deleted with `--cascade=foreground` (the `foregroundDeletion` finalizer), the schedule's
    Backups are meant to go too: the garbage collector deletes them, each under its own
    deletionPolicy, and nothing is released."""
    meta = body["metadata"]
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    if FOREGROUND_DELETION in (meta.get("finalizers") or []):
        log.info("BackupSchedule %s/%s: deleted in the foreground: its Backups go", namespace, name)
        return
    with resource_lock(SCHEDULE_PLURAL, namespace, name):
        selector = f"{SCHEDULE_LABEL}={schedule_label_value(name)}"
        released = []
        for backup in list_custom(api, BACKUP_PLURAL, namespace, label_selector=selector):
            refs = backup["metadata"].get("ownerReferences") or []
            remaining = [ref for ref in refs if ref.get("uid") != uid]
            if len(remaining) == len(refs):
                continue
            owners = {"metadata": {"ownerReferences": remaining or None}}
            if patch_custom(api, BACKUP_PLURAL, namespace, backup["metadata"]["name"], owners):
                released.append(backup["metadata"]["name"])
    if released:
        message = (
            f"{len(released)} Backups kept: no longer owned by this {SCHEDULE_KIND}, still "
            f"labelled {SCHEDULE_LABEL}={schedule_label_value(name)}"
        )
        post_event(body, "Normal", "BackupsKept", message)
        log.info("BackupSchedule %s/%s: %s: %s", namespace, name, message, ", ".join(released))


# -- following the schedule's Backups ----------------------------------------------------------


class PhaseMemory:
    """The last phase seen of each scheduled Backup (by uid), so that a schedule is reconciled
    when one of its Backups changes phase, not on every progress write."""

    def __init__(self) -> None:
        self._phases: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def changed(self, uid: str, phase: str | None) -> bool:
        """Record `phase`; True if a different phase was recorded before (the first sight is
        not a change: the schedule is reconciled when the operator starts anyway)."""
        with self._lock:
            seen = uid in self._phases
            before = self._phases.get(uid)
            self._phases[uid] = phase
        return seen and before != phase

    def forget(self, uid: str) -> None:
        with self._lock:
            self._phases.pop(uid, None)


def owning_schedule(body: Object) -> str | None:
    """The name of the BackupSchedule that controls a Backup, if one does."""
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == SCHEDULE_KIND and ref.get("controller"):
            return str(ref["name"])
    return None
