"""Restore: wait for the Backup, then one Job; a finished Restore never runs again, and a Restore
re-created under a name that already restored its Backup does not run either (see
`restore_history`): the Backup keeps the history."""

from __future__ import annotations

import logging

from kubernetes import client
from pydantic import ValidationError

from lifeboat.api import (
    BACKUP_PLURAL,
    RESTORE_KIND,
    RESTORE_PLURAL,
    Backup,
    DatabaseSpec,
    Engine,
    Phase,
    Restore,
    StorageBackend,
    describe_validation_error,
)
from lifeboat.builders.backups import SCHEDULE_LABEL, TRIGGER_ANNOTATION, schedule_label_value
from lifeboat.builders.jobs import (
    backup_url,
    build_restore_job,
    database_label,
    restore_job_name,
    storage_url,
)
from lifeboat.contract import Object, same_family
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.field_hints import FieldHints, field_hints
from lifeboat.controller.jobs import (
    Target,
    now_iso,
    open_unfinished,
    reconcile_job,
    record_on_backup,
    refuse_disallowed_job,
    resource_lock,
    write_verdict,
)
from lifeboat.controller.restore_history import (
    record_restore,
    repeat_refusal,
    restore_again_value,
)
from lifeboat.controller.schedule_refs import resolve_schedule_ref
from lifeboat.controller.storage import (
    SOURCE_STORE_FIELD,
    STORE_NOT_FOUND,
    age_seconds,
    backup_location,
    resolve_storage,
)
from lifeboat.controller.transitions import TERMINAL_PHASES, Verdict
from lifeboat.kube.objects import list_custom, read_custom

log = logging.getLogger(__name__)


def has_verification(status: Object) -> bool:
    verification = status.get("verification") or {}
    return bool(verification.get("checksumVerified") and verification.get("rowCountsMatched"))


def has_plan(status: Object) -> bool:
    """A dry run's result: the plan, and the checksum it verified."""
    verification = status.get("verification") or {}
    return bool(status.get("plan") and verification.get("checksumVerified"))


DRY_RUN_SUCCEEDED = Verdict(
    Phase.COMPLETED,
    "DryRunSucceeded",
    "dry run: every check passed and nothing was changed; status.plan says what a restore "
    "would do (kubectl describe shows it). Create a Restore without dryRun to restore.",
)


def reconcile_restore(
    api: client.ApiClient, namespace: str, name: str, config: OperatorConfig
) -> None:
    with resource_lock(RESTORE_PLURAL, namespace, name):
        opened = open_unfinished(api, RESTORE_PLURAL, RESTORE_KIND, namespace, name, Restore)
        if opened is None:
            return
        target, restore = opened
        has_result = has_plan if restore.spec.dry_run else has_verification
        success = DRY_RUN_SUCCEEDED if restore.spec.dry_run else None
        if target.status.get("jobName"):
            # The Job was created: follow it. Its Backup, that Backup's store or schedule may
            # have changed or gone since, which must not fail a restore already under way.
            recorded = target.status.get("resolvedBackup")
            reconcile_job(
                api,
                target,
                config,
                job_name=restore_job_name(restore),
                build_job=_job_already_created,
                has_result=has_result,
                success=success,
                before_finish=lambda verdict: _record_in_history(
                    api, target, restore, verdict, recorded
                ),
                hints=_field_hints(restore, recorded),
            )
            return
        if refuse_disallowed_job(api, target, restore.spec.job, config) is not None:
            return
        resolved = _resolve_source(api, target, restore, config)
        if resolved is None:
            return
        storage, url, database, backup_name = resolved
        if restore.spec.encryption is not None:
            # The Restore's own key wins over the one its Backup or source storage names.
            storage = storage.model_copy(update={"encryption": restore.spec.encryption})
        if backup_name is not None:
            refusal = repeat_refusal(
                _histories(api, target, restore, backup_name),
                name=target.name,
                uid=str(target.obj["metadata"].get("uid", "")),
                again=restore_again_value(target.obj["metadata"].get("annotations")),
                dry_run=restore.spec.dry_run,
            )
            if refusal is not None:
                write_verdict(api, target, refusal)
                return
        reconcile_job(
            api,
            target,
            config,
            job_name=restore_job_name(restore),
            build_job=lambda: build_restore_job(
                restore,
                storage=storage,
                source_url=url,
                target=database,
                defaults=config.job_defaults,
            ),
            has_result=has_result,
            extra=_restore_facts(database, backup_name),
            success=success,
            before_finish=lambda verdict: _record_in_history(
                api, target, restore, verdict, backup_name
            ),
            hints=_field_hints(restore, backup_name),
        )


def _field_hints(restore: Restore, backup_name: str | None) -> FieldHints:
    """Where a Restore's inputs come from: its own target and source, or its Backup's."""
    spec = restore.spec
    backup = f"Backup {backup_name}'s" if backup_name else "the Backup's"
    return field_hints(
        database_at="spec.target" if spec.target is not None else f"{backup} spec.database",
        database=spec.target,
        storage_at="spec.source.storage" if spec.source is not None else f"{backup} storage",
        storage=spec.source.storage if spec.source is not None else None,
    )


def _histories(
    api: client.ApiClient, target: Target, restore: Restore, backup_name: str
) -> list[tuple[str, Object]]:
    """(Backup, entry) pairs of the restore history that decides whether this Restore is a
    repeat: its Backup's; for scheduleRef, that of every Backup of the schedule, since a
    re-created Restore of "the newest backup" would otherwise restore a newer one silently."""
    if restore.spec.schedule_ref is not None:
        label = schedule_label_value(restore.spec.schedule_ref.name)
        backups = list_custom(
            api, BACKUP_PLURAL, target.namespace, label_selector=f"{SCHEDULE_LABEL}={label}"
        )
    else:
        found = read_custom(api, BACKUP_PLURAL, target.namespace, backup_name)
        backups = [found] if found is not None else []
    return [
        (obj["metadata"]["name"], entry)
        for obj in backups
        for entry in (obj.get("status") or {}).get("restores") or []
    ]


def _record_in_history(
    api: client.ApiClient,
    target: Target,
    restore: Restore,
    verdict: Verdict,
    backup_name: str | None,
) -> None:
    """Add this finished Restore to its Backup's status.restores (before the Restore's own
    phase is written). A Restore from spec.source has no Backup to remember it; a Backup
    deleted meanwhile has nothing to record on."""
    if backup_name is None:
        return
    verification = target.status.get("verification") or {}
    entry: Object = {
        "name": target.name,
        "uid": str(target.obj["metadata"].get("uid", "")),
        "time": now_iso(),
        "result": verdict.phase.value,
        "reason": verdict.reason,
        "dryRun": restore.spec.dry_run,
        "restoreAgain": restore_again_value(target.obj["metadata"].get("annotations")),
        "database": target.status.get("database"),
        "checksumVerified": verification.get("checksumVerified"),
        "tablesVerified": verification.get("tablesVerified"),
        "rowsVerified": verification.get("rowsVerified"),
    }
    entry = {key: value for key, value in entry.items() if value is not None}
    record_on_backup(
        api, target, backup_name, "restores", lambda history: record_restore(history, entry)
    )


def _job_already_created() -> Object:
    raise AssertionError("reconcile_job builds a Job only for a Restore without status.jobName")


def wake_restores_waiting_for(
    api: client.ApiClient, namespace: str, backup_name: str, config: OperatorConfig
) -> None:
    """A Backup just finished: its waiting Restores go now, not at their next resync."""
    for obj in list_custom(api, RESTORE_PLURAL, namespace):
        ref = ((obj.get("spec") or {}).get("backupRef") or {}).get("name")
        if ref == backup_name and (obj.get("status") or {}).get("phase") not in TERMINAL_PHASES:
            reconcile_restore(api, namespace, obj["metadata"]["name"], config)


def _restore_facts(database: DatabaseSpec, backup_name: str | None) -> Object:
    """What the controller knows about a Restore that `kubectl get -o wide` shows."""
    facts: Object = {"engine": database.engine.value, "database": database_label(database)}
    if backup_name is not None:
        facts["verification"] = {"backupName": backup_name}
        facts["resolvedBackup"] = backup_name
    return facts


def wake_restores_waiting_for_schedule(
    api: client.ApiClient, namespace: str, schedule_label: str, config: OperatorConfig
) -> None:
    """A Backup of a schedule just completed: Restores still waiting for that schedule's first
    Completed Backup go now, not at their next resync."""
    for obj in list_custom(api, RESTORE_PLURAL, namespace):
        ref = ((obj.get("spec") or {}).get("scheduleRef") or {}).get("name")
        status = obj.get("status") or {}
        if (
            ref
            and schedule_label_value(ref) == schedule_label
            and not status.get("resolvedBackup")
            and status.get("phase") not in TERMINAL_PHASES
        ):
            reconcile_restore(api, namespace, obj["metadata"]["name"], config)


def _resolve_source(
    api: client.ApiClient, target: Target, restore: Restore, config: OperatorConfig
) -> tuple[StorageBackend, str, DatabaseSpec, str | None] | None:
    """Where to restore from and into; None (with status written) when not possible yet."""
    spec = restore.spec
    if spec.source is not None:
        assert spec.target is not None  # the schema and the model require it with source
        source = resolve_storage(
            api, target, spec.source.storage, field=SOURCE_STORE_FIELD, config=config
        )
        if isinstance(source, Verdict):
            write_verdict(api, target, source)
            return None
        return (
            source.backend,
            storage_url(source.backend, spec.source.path),
            spec.target,
            None,
        )
    if spec.schedule_ref is not None:
        resolved = resolve_schedule_ref(
            api,
            target,
            spec.schedule_ref.name,
            config,
            doing="restoring",
            remedy=(
                f"; kubectl get backups -l {SCHEDULE_LABEL}="
                f"{schedule_label_value(spec.schedule_ref.name)} lists its Backups): back up "
                f"first (annotate the schedule with {TRIGGER_ANNOTATION}=<any new value>), or "
                "name a Backup in spec.backupRef; then create a new Restore"
            ),
        )
        if resolved is None:
            return None
        backup_name = resolved
    else:
        assert spec.backup_ref is not None
        backup_name = spec.backup_ref.name
    backup_obj = read_custom(api, BACKUP_PLURAL, target.namespace, backup_name)
    if backup_obj is None:
        if age_seconds(target.obj) < config.backup_wait_seconds:
            write_verdict(
                api,
                target,
                Verdict(
                    Phase.PENDING, "WaitingForBackup", f"Backup {backup_name} does not exist yet"
                ),
            )
        else:
            write_verdict(
                api,
                target,
                Verdict(
                    Phase.FAILED,
                    "BackupNotFound",
                    f"Backup {backup_name} does not exist in namespace {target.namespace}; "
                    + (
                        f"it was the newest Completed Backup of BackupSchedule "
                        f"{spec.schedule_ref.name} and has been deleted since: create a new "
                        "Restore"
                        if spec.schedule_ref is not None
                        else "fix spec.backupRef.name or restore from spec.source"
                    ),
                ),
            )
        return None
    phase = (backup_obj.get("status") or {}).get("phase")
    if phase == Phase.FAILED.value:
        why = (backup_obj.get("status") or {}).get("message") or "no reason recorded"
        write_verdict(
            api,
            target,
            Verdict(Phase.FAILED, "BackupFailed", f"Backup {backup_name} failed: {why}"),
        )
        return None
    if phase != Phase.COMPLETED.value:
        write_verdict(
            api,
            target,
            Verdict(
                Phase.PENDING,
                "WaitingForBackup",
                f"waiting for Backup {backup_name} to complete (it is {phase or 'new'})",
            ),
        )
        return None
    try:
        backup = Backup.model_validate(backup_obj)
    except ValidationError as exc:
        message = f"Backup {backup_name} is invalid: " + describe_validation_error(exc)
        write_verdict(api, target, Verdict(Phase.FAILED, "BackupInvalid", message))
        return None
    database = spec.target or backup.spec.database
    if (spec.no_owner or spec.no_privileges) and database.engine is not Engine.POSTGRESQL:
        write_verdict(
            api,
            target,
            Verdict(
                Phase.FAILED,
                "InvalidSpec",
                f"spec.noOwner/spec.noPrivileges: postgresql options, but the target is "
                f"{database.engine.value}; remove them",
            ),
        )
        return None
    if not same_family(database.engine.value, backup.spec.database.engine.value):
        write_verdict(
            api,
            target,
            Verdict(
                Phase.FAILED,
                "InvalidSpec",
                f"spec.target.engine: {database.engine.value} cannot receive a "
                f"{backup.spec.database.engine.value} backup; use a target of the same engine",
            ),
        )
        return None
    storage = backup_location(api, backup)  # where it was written: status.storage
    if storage is None:
        write_verdict(
            api,
            target,
            Verdict(
                Phase.FAILED,
                STORE_NOT_FOUND,
                f"Backup {backup_name} never recorded its status.storage and the BackupStore its "
                "spec.storage.storeRef names does not exist: where the backup is cannot be told; "
                "restore it from spec.source",
            ),
        )
        return None
    return storage, backup_url(backup, storage), database, backup_name
