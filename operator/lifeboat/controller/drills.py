"""RestoreDrill: wait for the Backup, then one Job that restores it into a throwaway database,
checks it and drops it; the Backup records the result (status.drills).

A drill never runs twice (a finished RestoreDrill never runs again), never touches the source
(the Job names only the reserved throwaway database, see builders/drills.py), and its verdict
comes from the Job as a Restore's does: Completed (reason DrillPassed) when the worker reported a
passing drill, Failed with the worker's reason otherwise (DrillCheckFailed, RestoreFailed,
VerificationFailed, ChecksumMismatch, DrillCleanupFailed, InsufficientPrivilege, a Pod that
never started...). A worker killed mid-drill leaves its throwaway database to the Job's retry
or the next drill of the same database, which drop it first.
"""

from __future__ import annotations

import logging

from kubernetes import client
from pydantic import ValidationError

from lifeboat.api import (
    BACKUP_PLURAL,
    DRILL_KIND,
    DRILL_PLURAL,
    Backup,
    Engine,
    Phase,
    RestoreDrill,
    StorageBackend,
    describe_validation_error,
)
from lifeboat.api.drill import DRILL_HISTORY_LIMIT
from lifeboat.builders.backups import SCHEDULE_LABEL, rfc3339
from lifeboat.builders.drills import (
    build_drill_job,
    drill_job_name,
    drill_name_of,
    drill_server,
    source_label,
)
from lifeboat.contract import DRILL_PASSED, Object, drill_database_name
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.drill_decisions import DRILL_FAILED
from lifeboat.controller.field_hints import FieldHints, field_hints
from lifeboat.controller.jobs import (
    Target,
    now_iso,
    open_unfinished,
    post_event,
    reconcile_job,
    record_on_backup,
    refuse_disallowed_job,
    resource_lock,
    write_verdict,
)
from lifeboat.controller.metrics import database_identity
from lifeboat.controller.schedule_refs import WAITING_FOR_BACKUP, resolve_schedule_ref
from lifeboat.controller.storage import STORE_NOT_FOUND, age_seconds, backup_location
from lifeboat.controller.transitions import TERMINAL_PHASES, Verdict
from lifeboat.kube.objects import list_custom, read_custom

log = logging.getLogger(__name__)


def has_report(status: Object) -> bool:
    """The worker reported a drill that passed."""
    return bool((status.get("report") or {}).get("passed"))


def passed_verdict(status: Object) -> Verdict | None:
    """Completed, in the words of the worker's report (None while there is none)."""
    report = status.get("report") or {}
    if not report.get("passed"):
        return None
    return Verdict(Phase.COMPLETED, DRILL_PASSED, str(report.get("message") or "drill passed"))


def reconcile_drill(
    api: client.ApiClient, namespace: str, name: str, config: OperatorConfig
) -> None:
    with resource_lock(DRILL_PLURAL, namespace, name):
        opened = open_unfinished(api, DRILL_PLURAL, DRILL_KIND, namespace, name, RestoreDrill)
        if opened is None:
            return
        target, drill = opened
        if target.status.get("jobName"):
            # The Job was created: follow it, whatever happened to its Backup since.
            recorded = target.status.get("resolvedBackup")
            reconcile_job(
                api,
                target,
                config,
                job_name=drill_job_name(drill),
                build_job=_job_already_created,
                has_result=has_report,
                success=passed_verdict(target.status),
                before_finish=lambda verdict: _record_on_backup(api, target, verdict, recorded),
                hints=_hints(drill, recorded),
            )
            return
        if refuse_disallowed_job(api, target, drill.spec.job, config) is not None:
            return
        resolved = _resolve_backup(api, target, drill, config)
        if resolved is None:
            return
        backup, storage = resolved
        backup_name = backup.metadata.name or ""
        reconcile_job(
            api,
            target,
            config,
            job_name=drill_job_name(drill),
            build_job=lambda: build_drill_job(
                drill,
                backup,
                storage=storage,
                defaults=config.job_defaults,
                requested_by=_requested_by(target),
            ),
            has_result=has_report,
            extra=_drill_facts(drill, backup),
            success=passed_verdict(target.status),
            before_finish=lambda verdict: _record_on_backup(api, target, verdict, backup_name),
            hints=_hints(drill, backup_name),
        )


def _job_already_created() -> Object:
    raise AssertionError("reconcile_job builds a Job only for a drill without status.jobName")


def _requested_by(target: Target) -> str:
    labels = target.obj["metadata"].get("labels") or {}
    schedule = labels.get(SCHEDULE_LABEL)
    tail = f" of BackupSchedule {schedule}" if schedule else ""
    return f"{DRILL_KIND} {target.namespace}/{target.name}{tail}"


def _hints(drill: RestoreDrill, backup_name: str | None) -> FieldHints:
    backup = f"Backup {backup_name}'s" if backup_name else "the Backup's"
    target = drill.spec.target
    return field_hints(
        database_at="spec.target" if target is not None else f"{backup} spec.database",
        database=None,
        storage_at=f"{backup} storage",
        storage=None,
    )


def _drill_facts(drill: RestoreDrill, backup: Backup) -> Object:
    """What the controller knows when it starts the drill: shown by kubectl get -o wide, and
    what metrics need to tell the drill's database once the Backup may be gone."""
    source = backup.spec.database
    _, identity = database_identity(source.to_api_dict())
    facts: Object = {
        "resolvedBackup": backup.metadata.name,
        "engine": source.engine.value,
        "database": drill_database_name(source_label(source), drill_name_of(drill)),
        "sourceDatabase": identity,
    }
    server = drill_server(source, drill.spec.target)
    if server is not None:
        facts["server"] = server
    if backup.status.completion_time is not None:
        facts["backupCompletionTime"] = rfc3339(backup.status.completion_time)
    return facts


def _spec_refusal(drill: RestoreDrill, backup: Backup) -> Verdict | None:
    """What the schema cannot see without the Backup: options of another engine."""
    engine = backup.spec.database.engine
    spec = drill.spec
    if (spec.no_owner or spec.no_privileges) and engine is not Engine.POSTGRESQL:
        return Verdict(
            Phase.FAILED,
            "InvalidSpec",
            f"spec.noOwner/spec.noPrivileges: postgresql options, but Backup "
            f"{backup.metadata.name} is {engine.value}; remove them and create a new "
            f"{DRILL_KIND}",
        )
    if engine is Engine.SQLITE and spec.target is not None:
        return Verdict(
            Phase.FAILED,
            "InvalidSpec",
            "spec.target: a sqlite drill restores into its Job's own scratch volume, never on a "
            f"server; remove spec.target and create a new {DRILL_KIND}",
        )
    return None


def _resolve_backup(
    api: client.ApiClient, target: Target, drill: RestoreDrill, config: OperatorConfig
) -> tuple[Backup, StorageBackend] | None:
    """The Completed Backup to drill and where it is stored; None (with status written) while
    it cannot be known yet, or never."""
    spec = drill.spec
    if spec.schedule_ref is not None:
        backup_name = resolve_schedule_ref(
            api,
            target,
            spec.schedule_ref.name,
            config,
            doing="drilling",
            remedy=f"); back up first, then create a new {DRILL_KIND}",
        )
        if backup_name is None:
            return None
    else:
        assert spec.backup_ref is not None
        backup_name = spec.backup_ref.name
    obj = read_custom(api, BACKUP_PLURAL, target.namespace, backup_name)
    status = (obj or {}).get("status") or {}
    waited = age_seconds(target.obj)
    if obj is None or status.get("phase") not in TERMINAL_PHASES:
        if waited < config.backup_wait_seconds or obj is not None:
            state = "does not exist yet" if obj is None else f"is {status.get('phase') or 'new'}"
            write_verdict(
                api,
                target,
                Verdict(Phase.PENDING, WAITING_FOR_BACKUP, f"Backup {backup_name} {state}"),
            )
        else:
            write_verdict(
                api,
                target,
                Verdict(
                    Phase.FAILED,
                    "BackupNotFound",
                    f"Backup {backup_name} does not exist in namespace {target.namespace}; fix "
                    f"spec.backupRef.name and create a new {DRILL_KIND}",
                ),
            )
        return None
    if status.get("phase") == Phase.FAILED.value:
        why = status.get("message") or "no reason recorded"
        write_verdict(
            api,
            target,
            Verdict(Phase.FAILED, "BackupFailed", f"Backup {backup_name} failed: {why}"),
        )
        return None
    try:
        backup = Backup.model_validate(obj)
    except ValidationError as exc:
        message = f"Backup {backup_name} is invalid: " + describe_validation_error(exc)
        write_verdict(api, target, Verdict(Phase.FAILED, "BackupInvalid", message))
        return None
    refusal = _spec_refusal(drill, backup)
    if refusal is not None:
        write_verdict(api, target, refusal)
        return None
    storage = backup_location(api, backup)
    if storage is None:
        write_verdict(
            api,
            target,
            Verdict(
                Phase.FAILED,
                STORE_NOT_FOUND,
                f"Backup {backup_name} never recorded its status.storage and the BackupStore "
                "its spec.storage.storeRef names does not exist: where the backup is cannot be "
                "told",
            ),
        )
        return None
    return backup, storage


# -- the Backup's record ----------------------------------------------------------------------


def drill_record(target: Target, verdict: Verdict, now: str) -> Object:
    """The entry a finished drill adds to its Backup's status.drills."""
    report = target.status.get("report") or {}
    checks = report.get("checks") or []
    entry: Object = {
        "name": target.name,
        "uid": str(target.obj["metadata"].get("uid", "")),
        "time": now,
        "result": verdict.phase.value,
        "reason": verdict.reason,
        "restoreSeconds": report.get("restoreSeconds"),
        "tablesVerified": report.get("tablesVerified"),
        "rowsVerified": report.get("rowsVerified"),
        "checksPassed": sum(1 for c in checks if c.get("passed")) if checks else None,
        "failedCheck": report.get("failedCheck"),
        "reportUri": report.get("reportUri"),
    }
    return {key: value for key, value in entry.items() if value is not None}


def record_drill(
    history: list[Object], entry: Object, limit: int = DRILL_HISTORY_LIMIT
) -> list[Object]:
    """The history with `entry` (replacing one of the same uid), oldest first, the newest
    `limit` kept."""
    kept = [e for e in history if e.get("uid") != entry.get("uid")] + [entry]
    return kept[-limit:]


def _record_on_backup(
    api: client.ApiClient, target: Target, verdict: Verdict, backup_name: str | None
) -> None:
    """Before the drill's own phase is written: its record on the Backup (status.drills) and
    an Event there, so `kubectl describe backup` shows every drill of it."""
    if not backup_name:
        return
    entry = drill_record(target, verdict, now_iso())
    backup = record_on_backup(
        api, target, backup_name, "drills", lambda history: record_drill(history, entry)
    )
    if backup is not None:
        passed = verdict.phase is Phase.COMPLETED
        post_event(
            backup,
            "Normal" if passed else "Warning",
            DRILL_PASSED if passed else DRILL_FAILED,
            f"{DRILL_KIND} {target.name}: {verdict.reason}: {verdict.message}",
        )


def wake_drills_waiting_for(
    api: client.ApiClient, namespace: str, backup_name: str, config: OperatorConfig
) -> None:
    """A Backup just finished: drills waiting for it (by name, or for their schedule's first
    Completed Backup) go now, not at their next resync."""
    for obj in list_custom(api, DRILL_PLURAL, namespace):
        status = obj.get("status") or {}
        if status.get("phase") in TERMINAL_PHASES or status.get("jobName"):
            continue
        spec = obj.get("spec") or {}
        by_name = (spec.get("backupRef") or {}).get("name") == backup_name
        by_schedule = bool(spec.get("scheduleRef")) and not status.get("resolvedBackup")
        if by_name or by_schedule:
            reconcile_drill(api, namespace, obj["metadata"]["name"], config)
