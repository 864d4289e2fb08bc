"""Backup: one Job per Backup, phase from the Job, storage cleanup on deletion (policy Delete).

The storage is resolved first (a storeRef to its BackupStore, see `storage.py`) and recorded in
status.storage before the Job is created, so the Job, the Restores and the cleanup all use the
same location, whatever happens to the store later."""

from __future__ import annotations

import logging
from typing import NoReturn

import kopf
from kubernetes import client
from pydantic import ValidationError

from lifeboat.api import (
    BACKUP_KIND,
    BACKUP_PLURAL,
    STORE_KIND,
    Backup,
    ConditionStatus,
    ConditionType,
    DeletionPolicy,
    Phase,
    StorageBackend,
)
from lifeboat.builders.jobs import (
    backup_job_name,
    backup_url,
    build_backup_job,
    build_cleanup_job,
    cleanup_job_name,
    database_label,
)
from lifeboat.contract import Object
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.field_hints import field_hints
from lifeboat.controller.jobs import (
    job_start_failure,
    now_iso,
    open_unfinished,
    post_event,
    reconcile_job,
    refuse_disallowed_job,
    resource_lock,
    write_verdict,
)
from lifeboat.controller.storage import (
    BACKUP_STORE_FIELD,
    STORE_NOT_FOUND,
    backup_location,
    resolve_storage,
)
from lifeboat.controller.tenancy import job_refusal
from lifeboat.controller.transitions import (
    JobState,
    JobView,
    Verdict,
    set_condition,
    view_job,
)
from lifeboat.kube.objects import (
    KubeError,
    NamespaceTerminating,
    create_or_adopt_job,
    delete_job,
    list_job_pods,
    patch_status,
    read_job,
)

log = logging.getLogger(__name__)


def has_artifact(status: Object) -> bool:
    return bool((status.get("artifact") or {}).get("sha256"))


def reconcile_backup(
    api: client.ApiClient, namespace: str, name: str, config: OperatorConfig
) -> Phase | None:
    """Bring one Backup a step closer to Completed or Failed; a no-op once it is either.

    Returns the phase it was given, None when there was nothing to do."""
    with resource_lock(BACKUP_PLURAL, namespace, name):
        opened = open_unfinished(api, BACKUP_PLURAL, BACKUP_KIND, namespace, name, Backup)
        if opened is None:
            return None
        target, backup = opened
        if not target.status.get("jobName"):
            refusal = refuse_disallowed_job(api, target, backup.spec.job, config)
            if refusal is not None:
                return refusal.phase
        resolved = resolve_storage(
            api,
            target,
            backup.spec.storage,
            field=BACKUP_STORE_FIELD,
            config=config,
            recorded=backup.status.storage,
        )
        if isinstance(resolved, Verdict):
            write_verdict(api, target, resolved)
            return resolved.phase
        storage = resolved.backend
        recorded = storage.to_api_dict()
        if backup.status.storage is None:
            # On record before the Job exists: after a crash between the two, the Job and the
            # record still name the same place, even if the store was edited meanwhile.
            patch_status(api, BACKUP_PLURAL, target.namespace, target.name, {"storage": recorded})
        return reconcile_job(
            api,
            target,
            config,
            job_name=backup_job_name(backup),
            build_job=lambda: build_backup_job(backup, storage, config.job_defaults),
            has_result=has_artifact,
            extra={"database": database_label(backup.spec.database), "storage": recorded},
            note=resolved.note,
            hints=field_hints(
                database_at="spec.database",
                database=backup.spec.database,
                storage_at="spec.storage",
                storage=backup.spec.storage,
            ),
        )


def clean_up_storage(api: client.ApiClient, body: Object, config: OperatorConfig) -> None:
    """On deletion with deletionPolicy Delete: run a Job that deletes the artifact and manifest.

    Raises kopf.TemporaryError while the Job runs or after it failed, so kopf keeps the
    finalizer and retries: a storage error never loses track of the data. The Job deletes from
    where the backup was written (status.storage), not from where a BackupStore points now.

    In a namespace being deleted no Job can be created: the backup is kept in storage, the
    condition StorageCleanup says so, and the finalizer goes (else the namespace would never go).
    """
    try:
        backup = Backup.model_validate(body)
    except ValidationError:
        return  # never had a valid spec, so it never stored anything
    if backup.spec.deletion_policy is not DeletionPolicy.DELETE:
        return
    status = body.get("status") or {}
    if not status.get("jobName") and not has_artifact(status):
        return  # no Job ever ran: nothing can be in storage
    namespace, _name = backup.metadata.namespace or "", backup.metadata.name or ""
    storage = backup_location(api, backup)
    if storage is None:
        _cannot_locate(api, body, backup, config)
    job_name = cleanup_job_name(backup)
    job = read_job(api, namespace, job_name)
    if job is None:
        refusal = job_refusal(
            backup.spec.job,
            namespace=namespace,
            defaults=config.job_defaults,
            policy=config.job_policy,
            then="or set spec.deletionPolicy to Retain to delete the Backup without its files.",
        )
        if refusal is not None:
            # The allow-list changed since the backup ran: its spec.job may not run any more, not
            # even to delete. The finalizer stays until it is allowed again or deletionPolicy is
            # Retain.
            message = f"cannot delete the backup from storage: {refusal.message}"
            _cleanup_condition(api, body, ConditionStatus.FALSE, refusal.reason, message)
            post_event(body, "Warning", "CleanupFailed", message)
            raise kopf.TemporaryError(message, delay=config.cleanup_retry_seconds)
        try:
            job, _ = create_or_adopt_job(
                api, build_cleanup_job(backup, storage, config.job_defaults)
            )
        except NamespaceTerminating:
            _keep_in_terminating_namespace(api, body, backup, storage)
            return
        _cleanup_condition(api, body, ConditionStatus.UNKNOWN, "Deleting", "deleting from storage")
    pods = list_job_pods(api, namespace, job_name)
    view = view_job(job, pods)
    if view.state in (JobState.PENDING, JobState.RUNNING):
        stuck = job_start_failure(api, namespace, job, pods, config)
        if stuck is not None:
            view = JobView(JobState.FAILED, reason=stuck[0], message=stuck[1])
    if view.state is JobState.SUCCEEDED:
        delete_job(api, namespace, job_name)
        post_event(body, "Normal", "StorageCleaned", "artifact and manifest deleted")
        return
    if view.state is JobState.FAILED:
        message = f"could not delete the backup from storage: {view.reason}: {view.message}"
        _cleanup_condition(api, body, ConditionStatus.FALSE, "CleanupFailed", message)
        post_event(body, "Warning", "CleanupFailed", message)
        delete_job(api, namespace, job_name)  # the retry starts a fresh Job
        raise kopf.TemporaryError(message, delay=config.cleanup_retry_seconds)
    raise kopf.TemporaryError("waiting for the storage cleanup Job", delay=1)


def _cannot_locate(
    api: client.ApiClient, body: Object, backup: Backup, config: OperatorConfig
) -> NoReturn:
    """A storeRef that was never recorded in status.storage and whose store is gone: where
    the backup is cannot be known, so nothing is deleted and the finalizer stays (set
    deletionPolicy to Retain to let the Backup go)."""
    ref = backup.spec.storage.store_ref
    message = (
        f"cannot tell where the backup is: status.storage was never recorded and {STORE_KIND} "
        f"{ref.name if ref else ''} does not exist; re-create the store, or set "
        "spec.deletionPolicy to Retain to delete the Backup without its stored files"
    )
    _cleanup_condition(api, body, ConditionStatus.FALSE, STORE_NOT_FOUND, message)
    post_event(body, "Warning", "CleanupFailed", message)
    raise kopf.TemporaryError(message, delay=config.cleanup_retry_seconds)


def _keep_in_terminating_namespace(
    api: client.ApiClient, body: Object, backup: Backup, storage: StorageBackend
) -> None:
    """deletionPolicy Delete in a namespace being deleted: the API server refuses the cleanup
    Job, so the backup stays in storage and the finalizer goes. Said in the log and, while the
    object can still be patched, in its StorageCleanup condition (Events cannot be created in a
    terminating namespace)."""
    namespace, name = backup.metadata.namespace or "", backup.metadata.name or ""
    message = (
        f"namespace {namespace} is being deleted and refuses new Jobs, so the backup was not "
        f"deleted from storage: it remains at {backup_url(backup, storage)} (delete it there if "
        "unwanted)"
    )
    log.warning("Backup %s/%s: %s", namespace, name, message)
    try:
        _cleanup_condition(api, body, ConditionStatus.FALSE, "NamespaceTerminating", message)
    except KubeError as exc:  # the record is a courtesy; the namespace must still go
        log.warning("Backup %s/%s: could not record it in status: %s", namespace, name, exc)


def _cleanup_condition(
    api: client.ApiClient, body: Object, status: ConditionStatus, reason: str, message: str
) -> None:
    current = (body.get("status") or {}).get("conditions") or []
    conditions = set_condition(
        current,
        ConditionType.STORAGE_CLEANUP.value,
        status,
        reason,
        message,
        generation=body["metadata"].get("generation"),
        now=now_iso(),
    )
    meta = body["metadata"]
    patch_status(api, BACKUP_PLURAL, meta["namespace"], meta["name"], {"conditions": conditions})
