"""Restore: wait for the Backup, then one Job; a finished Restore never runs again."""

from __future__ import annotations

from datetime import UTC, datetime

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
    StorageSpec,
    describe_validation_error,
)
from lifeboat.builders.jobs import (
    backup_url,
    build_restore_job,
    database_label,
    restore_job_name,
    storage_url,
)
from lifeboat.contract import Object, same_family
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.jobs import (
    Target,
    open_unfinished,
    reconcile_job,
    resource_lock,
    write_verdict,
)
from lifeboat.controller.transitions import TERMINAL_PHASES, Verdict
from lifeboat.kube.objects import list_custom, read_custom


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


def _age_seconds(obj: Object) -> float:
    created = obj["metadata"].get("creationTimestamp")
    if not created:
        return 0.0
    then = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return (datetime.now(UTC) - then).total_seconds()


def reconcile_restore(
    api: client.ApiClient, namespace: str, name: str, config: OperatorConfig
) -> None:
    with resource_lock(RESTORE_PLURAL, namespace, name):
        opened = open_unfinished(api, RESTORE_PLURAL, RESTORE_KIND, namespace, name, Restore)
        if opened is None:
            return
        target, restore = opened
        resolved = _resolve_source(api, target, restore, config)
        if resolved is None:
            return
        storage, url, database, backup_name = resolved
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
            has_result=has_plan if restore.spec.dry_run else has_verification,
            extra=_restore_facts(database, backup_name),
            success=DRY_RUN_SUCCEEDED if restore.spec.dry_run else None,
        )


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
    return facts


def _resolve_source(
    api: client.ApiClient, target: Target, restore: Restore, config: OperatorConfig
) -> tuple[StorageSpec, str, DatabaseSpec, str | None] | None:
    """Where to restore from and into; None (with status written) when not possible yet."""
    spec = restore.spec
    if spec.source is not None:
        assert spec.target is not None  # the schema and the model require it with source
        return (
            spec.source.storage,
            storage_url(spec.source.storage, spec.source.path),
            spec.target,
            None,
        )
    assert spec.backup_ref is not None
    backup_name = spec.backup_ref.name
    backup_obj = read_custom(api, BACKUP_PLURAL, target.namespace, backup_name)
    if backup_obj is None:
        if _age_seconds(target.obj) < config.backup_wait_seconds:
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
                    "fix spec.backupRef.name or restore from spec.source",
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
    return backup.spec.storage, backup_url(backup), database, backup_name
