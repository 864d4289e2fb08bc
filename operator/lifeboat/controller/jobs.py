"""One reconcile step shared by Backups and Restores: ensure the Job, read it, write status.

Level-triggered: it looks at the world as it is now (the resource, its Job, the Job's Pods), so
running it twice, late, or after a restart gives the same result. A lock per resource keeps the
Job watcher and the resync timer from interleaving on one object.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import kopf
from kubernetes import client
from pydantic import BaseModel, ValidationError

from lifeboat.api import BACKUP_PLURAL, JobOptions, Phase, describe_validation_error
from lifeboat.contract import Object
from lifeboat.controller import metrics
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.field_hints import FieldHints, with_field_hint
from lifeboat.controller.tenancy import job_refusal
from lifeboat.controller.transitions import (
    TERMINAL_PHASES,
    JobState,
    JobView,
    Verdict,
    decide,
    follow_generation,
    start_event_uids,
    start_failure,
    status_update,
    view_job,
)
from lifeboat.kube.objects import (
    KubeError,
    NotOurs,
    create_or_adopt_job,
    delete_job,
    list_job_pods,
    list_warning_events,
    patch_status,
    read_custom,
    read_job,
)

log = logging.getLogger(__name__)

_locks: dict[tuple[str, str, str], threading.Lock] = {}
_events_unreadable: set[str] = set()  # namespaces already warned about, to warn once
_locks_guard = threading.Lock()


def resource_lock(plural: str, namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((plural, namespace, name), threading.Lock())


def post_event(obj: Object, event_type: str, reason: str, message: str) -> None:
    """A Kubernetes Event on the resource: `kubectl describe` tells its story.

    Best effort, never a reason to fail a handler: kopf queues it and posts it with its own
    retries (a refused post is logged and dropped); a failure to queue it is logged here."""
    try:
        kopf.event(cast(kopf.Body, obj), type=event_type, reason=reason, message=message)
    except Exception as exc:  # noqa: BLE001 - an Event is a courtesy, the status is the record
        meta = obj.get("metadata") or {}
        log.warning(
            "could not post Event %s on %s/%s: %r",
            reason,
            meta.get("namespace"),
            meta.get("name"),
            exc,
        )


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Target:
    """The resource being reconciled, as plain facts."""

    plural: str
    kind: str
    obj: Object

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def status(self) -> Object:
        status: Object = self.obj.get("status") or {}
        return status

    @property
    def generation(self) -> int | None:
        generation = self.obj["metadata"].get("generation")
        return int(generation) if generation is not None else None

    def is_terminal(self) -> bool:
        return self.status.get("phase") in TERMINAL_PHASES


Model = TypeVar("Model", bound=BaseModel)


def open_unfinished(
    api: client.ApiClient, plural: str, kind: str, namespace: str, name: str, model: type[Model]
) -> tuple[Target, Model] | None:
    """Read the resource fresh and parse it; None when there is nothing to do: it is gone,
    being deleted, already Completed or Failed, or invalid (then it is marked Failed, once,
    with the field named, and never retried).

    A finished resource whose spec was edited since (a Backup's `deletionPolicy`) only gets its
    `observedGeneration` brought up to date: it never runs again."""
    obj = read_custom(api, plural, namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        metrics.job_in_flight(kind, namespace, name, False)
        return None
    target = Target(plural, kind, obj)
    if target.is_terminal():
        metrics.job_in_flight(kind, namespace, name, False)
        metrics.operation_seen_finished(kind, obj)
        observe_generation(api, target)
        return None  # finished requests never run again: not on restart, resync or re-apply
    try:
        return target, model.model_validate(obj)
    except ValidationError as exc:
        message = describe_validation_error(exc).replace("\n", "; ")
        write_verdict(api, target, Verdict(Phase.FAILED, "InvalidSpec", message))
        return None


def observe_generation(api: client.ApiClient, target: Target) -> None:
    """Say in status (top level and every condition) that the current spec has been seen."""
    patch = follow_generation(target.status, target.generation)
    if patch is not None:
        patch_status(api, target.plural, target.namespace, target.name, patch)
        log.info(
            "%s %s/%s: observed generation %s (%s, nothing to run)",
            target.kind,
            target.namespace,
            target.name,
            target.generation,
            target.status.get("phase"),
        )


def job_start_failure(
    api: client.ApiClient,
    namespace: str,
    job: Object | None,
    pods: list[Object],
    config: OperatorConfig,
) -> tuple[str, str] | None:
    """(reason, message) when the Job's Pod has failed to start for too long: refused by the API
    server, unschedulable, unable to mount its volumes, or waiting on an image or a Secret.

    Events are read best effort: without permission to list them (an older chart's RBAC) the
    Pod's own status still tells unschedulable and image troubles, and the Job's deadline still
    bounds the rest; reconciling never stops on it."""
    events: list[Object] = []
    try:
        for uid in start_event_uids(job, pods):
            events += list_warning_events(api, namespace, uid)
    except KubeError as exc:
        if exc.transient:  # not a permission problem: the next reconcile reads them again
            log.warning("could not read Events in %s this time: %s", namespace, exc)
        elif namespace not in _events_unreadable:
            _events_unreadable.add(namespace)
            log.warning("cannot read Events in %s (grant list on events): %s", namespace, exc)
    return start_failure(job, pods, events, datetime.now(UTC), config.start_limits)


def write_verdict(
    api: client.ApiClient,
    target: Target,
    verdict: Verdict,
    *,
    job_name: str | None = None,
    extra: Object | None = None,
) -> None:
    """Write a phase (without a Job: invalid spec, waiting) and post an Event if it changed."""
    write_status(api, target, verdict, view_job(None), job_name=job_name, extra=extra)


def record_on_backup(
    api: client.ApiClient,
    target: Target,
    backup_name: str,
    field: str,
    record: Callable[[list[Object]], list[Object]],
) -> Object | None:
    """Pass the Backup's `status.<field>` (a history of what used it: restores, drills) through
    `record` and write it if it changed, under the Backup's lock so two writers never lose an
    entry. The Backup when it changed; None when nothing changed or the Backup is gone."""
    with resource_lock(BACKUP_PLURAL, target.namespace, backup_name):
        backup = read_custom(api, BACKUP_PLURAL, target.namespace, backup_name)
        if backup is None:
            log.info(
                "%s %s/%s: Backup %s is gone; status.%s cannot be kept there",
                target.kind,
                target.namespace,
                target.name,
                backup_name,
                field,
            )
            return None
        history = (backup.get("status") or {}).get(field) or []
        updated = record(history)
        if updated == history:
            return None
        patch_status(api, BACKUP_PLURAL, target.namespace, backup_name, {field: updated})
        return backup


def refuse_disallowed_job(
    api: client.ApiClient, target: Target, options: JobOptions | None, config: OperatorConfig
) -> Verdict | None:
    """Fail `target` when its `spec.job` names an image or a ServiceAccount the operator does not
    allow (its allow-lists), before any Job exists; the verdict written, else None."""
    refusal = job_refusal(
        options,
        namespace=target.namespace,
        defaults=config.job_defaults,
        policy=config.job_policy,
    )
    if refusal is not None:
        write_verdict(api, target, refusal)
    return refusal


def write_status(
    api: client.ApiClient,
    target: Target,
    verdict: Verdict,
    job: JobView,
    *,
    job_name: str | None,
    extra: Object | None = None,
) -> None:
    """The one place a Backup's or Restore's phase is written: the patch, then for a phase
    change an Event, one log line (with kind, namespace, name, phase and reason as fields for
    JSON logs) and, for a terminal phase, the metrics."""
    update = status_update(
        target.status,
        verdict,
        job,
        job_name=job_name,
        generation=target.generation,
        now=now_iso(),
    )
    patch = {**update.patch, **(extra or {})}
    if _already_says(target.status, patch):
        return
    patch_status(api, target.plural, target.namespace, target.name, patch)
    if update.event is None:
        return
    event_type, reason, message = update.event
    post_event(target.obj, event_type, reason, message)
    log.log(
        logging.WARNING if verdict.phase is Phase.FAILED else logging.INFO,
        "%s %s/%s: %s (%s)",
        target.kind,
        target.namespace,
        target.name,
        message,
        reason,
        extra=transition_fields(target, verdict),
    )
    if verdict.phase.value in TERMINAL_PHASES:
        metrics.operation_finished(
            target.kind,
            target.obj,
            {**target.status, **patch},
            job_start=job.start_time,
            job_end=job.completion_time,
        )


def transition_fields(target: Target, verdict: Verdict) -> Object:
    """The fields a JSON log line carries for a transition (see lifeboat.cli.logformat)."""
    return {
        "resource": {"kind": target.kind, "namespace": target.namespace, "name": target.name},
        "phase": verdict.phase.value,
        "reason": verdict.reason,
    }


def _already_says(status: Object, patch: Object) -> bool:
    """True when writing `patch` would change nothing (no write storms from timers)."""

    def strip(conditions: Any) -> Any:
        if not isinstance(conditions, list):
            return conditions
        return sorted(
            ({k: v for k, v in c.items() if k != "lastTransitionTime"} for c in conditions),
            key=lambda c: str(c.get("type")),
        )

    for key, value in patch.items():
        current = status.get(key)
        if key == "conditions":
            if strip(current) != strip(value):
                return False
        elif isinstance(value, dict):
            if not isinstance(current, dict) or not _already_says(current, value):
                return False
        elif current != value:
            return False
    return True


JOB_REJECTED = "JobRejected"


def job_rejected(error: str) -> Verdict:
    """The verdict for a Job the API server refused as invalid (`error` quotes it)."""
    return Verdict(
        Phase.FAILED,
        JOB_REJECTED,
        f"Kubernetes refused the Job ({error}); the values come from spec.job or the operator's "
        "--job-defaults (the chart's worker.job): fix them, then create a new object",
    )


JOB_NAME_TAKEN = "JobNameTaken"


def job_name_taken(job: Object) -> Verdict:
    """The verdict when the Job name derived for this object (name + uid) belongs to a Job
    another object, or nobody, controls: never adopted, never replaced."""
    meta = job.get("metadata") or {}
    owners = [
        f"{ref.get('kind')} {ref.get('name')}"
        for ref in meta.get("ownerReferences") or []
        if ref.get("controller")
    ]
    holder = f"is controlled by {', '.join(owners)}" if owners else "has no controller"
    return Verdict(
        Phase.FAILED,
        JOB_NAME_TAKEN,
        f"a Job named {meta.get('name')} already exists in the namespace and {holder}: Lifeboat "
        "neither adopts nor replaces a Job it did not create. Delete that Job (kubectl delete "
        "job), then create a new object",
    )


def _controlled_by(job: Object, target: Target) -> bool:
    uid = target.obj["metadata"].get("uid")
    return any(
        ref.get("controller") and ref.get("uid") == uid
        for ref in (job.get("metadata") or {}).get("ownerReferences") or []
    )


def reconcile_job(
    api: client.ApiClient,
    target: Target,
    config: OperatorConfig,
    *,
    job_name: str,
    build_job: Callable[[], Object],
    has_result: Callable[[Object], bool],
    extra: Object | None = None,
    success: Verdict | None = None,
    note: str | None = None,
    before_finish: Callable[[Verdict], None] | None = None,
    hints: FieldHints | None = None,
) -> Phase:
    """Ensure exactly one Job for `target`, then derive its phase from that Job.

    `note` is added to the message of every phase but Completed (a BackupStore that failed its
    last check: worth knowing while it waits, runs or fails). `before_finish` runs once the
    verdict is Completed or Failed, before that phase is written (a Restore records itself in
    its Backup's history first, so a crash in between cannot lose the record: the next
    reconcile still finds the Restore unfinished and follows its Job to the same end).
    `hints` name the field of the object a failure is about (see `field_hints`).

    A Job the API server refuses as invalid (422: a value Kubernetes validates and Lifeboat's
    schema does not) fails the object with JobRejected and Kubernetes' words, instead of being
    retried for ever."""
    job = read_job(api, target.namespace, job_name)
    if job is not None and not _controlled_by(job, target):
        taken = job_name_taken(job)
        if before_finish is not None:
            before_finish(taken)
        write_verdict(api, target, taken)
        return taken.phase
    if job is None and not target.status.get("jobName"):
        try:
            job, created = create_or_adopt_job(api, build_job())
        except NotOurs as exc:
            # Created between our read and our create by someone else: the same refusal.
            existing = read_job(api, target.namespace, job_name) or {"metadata": {"name": job_name}}
            taken = job_name_taken(existing)
            log.warning("%s", exc)
            if before_finish is not None:
                before_finish(taken)
            write_verdict(api, target, taken)
            return taken.phase
        except KubeError as exc:
            if exc.status != 422:
                raise
            rejected = job_rejected(str(exc))
            if before_finish is not None:
                before_finish(rejected)
            write_verdict(api, target, rejected)
            return rejected.phase
        if created:
            post_event(target.obj, "Normal", "JobCreated", f"created Job {job_name}")
    pods: list[Object] = []
    view = view_job(job)
    if view.state is not JobState.MISSING and view.state is not JobState.SUCCEEDED:
        pods = list_job_pods(api, target.namespace, job_name)
        view = view_job(job, pods)
    stuck = None
    if view.state in (JobState.PENDING, JobState.RUNNING):
        stuck = job_start_failure(api, target.namespace, job, pods, config)
    verdict = decide(
        target.status,
        view,
        has_result=has_result(target.status),
        stuck=stuck,
        kind=target.kind,
        success=success,
    )
    verdict = with_field_hint(verdict, hints, job)
    if note and verdict.phase is not Phase.COMPLETED:
        verdict = Verdict(verdict.phase, verdict.reason, f"{verdict.message}; {note}")
    if stuck is not None and verdict.phase is Phase.FAILED:
        # Deleted, so that it cannot start later (a quota freed, a node added) and run a request
        # that already says Failed; its Pods go with it.
        delete_job(api, target.namespace, job_name)
    finished = verdict.phase.value in TERMINAL_PHASES
    metrics.job_in_flight(
        target.kind, target.namespace, target.name, job is not None and not finished
    )
    if finished and before_finish is not None:
        before_finish(verdict)
    write_status(api, target, verdict, view, job_name=job_name, extra=extra)
    return verdict.phase
