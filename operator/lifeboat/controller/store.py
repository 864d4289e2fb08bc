"""BackupStore: checked for reachability by a short Job, the result written into its status.

The operator never reads a store's credentials: a check is a Job (same image, the worker's
ServiceAccount, the credentials as secretKeyRef environment variables exactly as a backup Job
gets them) running `lifeboat check BACKUP_URL`, and its result (success, or the worker's error
line) becomes the Ready condition. A check runs when the store is created, when its spec changes
(at once), and every `store_check_seconds`.

Each check's Job is named from the store, its generation and the previous check's time, so a
restarted operator finds the check in flight and follows it instead of starting another one.
Ready goes Unknown (Checking) only before the first result for a spec; later checks keep the
last result until theirs is in, so an Event is posted when Ready or its reason changes, not on
every check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes import client
from pydantic import ValidationError

from lifeboat.api import (
    BACKUP_PLURAL,
    RESTORE_PLURAL,
    STORE_KIND,
    STORE_PLURAL,
    BackupStore,
    ConditionStatus,
    ConditionType,
    describe_validation_error,
)
from lifeboat.builders.jobs import build_store_check_job, store_check_job_name, store_uri
from lifeboat.contract import Object
from lifeboat.controller import metrics
from lifeboat.controller.backup import reconcile_backup
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.jobs import (
    job_start_failure,
    now_iso,
    post_event,
    resource_lock,
)
from lifeboat.controller.restore import reconcile_restore
from lifeboat.controller.storage import WAITING_FOR_STORE
from lifeboat.controller.transitions import (
    TERMINAL_PHASES,
    WORKER_FAILURE_REASONS,
    JobState,
    JobView,
    set_condition,
    view_job,
)
from lifeboat.kube.objects import (
    NamespaceTerminating,
    create_or_adopt_job,
    delete_job,
    list_custom,
    list_job_pods,
    patch_status,
    read_custom,
    read_job,
)

log = logging.getLogger(__name__)

REACHABLE = "Reachable"
CHECKING = "Checking"
CHECK_FAILED = "CheckFailed"
INVALID_SPEC = "InvalidSpec"
MESSAGE_LIMIT = 32768  # status.message's maxLength: a longer one would be refused


@dataclass(frozen=True)
class CheckResult:
    """What one check found: reachable, or why not (a CamelCase reason and a message)."""

    reachable: bool
    reason: str
    message: str


@dataclass
class StoreUpdate:
    patch: Object = field(default_factory=dict)
    event: tuple[str, str, str] | None = None  # (type, reason, message)


def _time(value: object) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _ready(status: Object) -> Object | None:
    conditions = status.get("conditions") or []
    return next((c for c in conditions if c.get("type") == ConditionType.READY.value), None)


def check_due(status: Object, generation: int | None, now: datetime, interval: float) -> bool:
    """A check is due for a spec never checked (new, or edited since the last result) and
    `interval` seconds after the last one."""
    if status.get("observedGeneration") != generation:
        return True
    last = _time(status.get("lastCheckTime"))
    return last is None or (now - last).total_seconds() >= interval


def check_id(status: Object, generation: int | None) -> str:
    """What tells one check from the next: the spec's generation and the previous check's time.
    Stable until the check's result is recorded (which moves lastCheckTime), so the check's
    Job name is too."""
    return f"{generation}/{status.get('lastCheckTime') or 'never'}"


def check_result(view: JobView, stuck: tuple[str, str] | None, *, uri: str) -> CheckResult | None:
    """The result of a check Job; None while it may still give one."""
    if view.state is JobState.SUCCEEDED:
        return CheckResult(True, REACHABLE, f"{uri} is reachable with the store's settings")
    if view.state is JobState.FAILED:
        reason = view.reason or CHECK_FAILED
        if reason in WORKER_FAILURE_REASONS:  # the worker died without saying why
            reason = CHECK_FAILED
        return CheckResult(False, reason, view.message or "the check Job failed")
    if stuck is not None:
        return CheckResult(False, stuck[0], stuck[1])
    return None


def checking_patch(
    status: Object, *, generation: int | None, uri: str, job_name: str, now: str
) -> Object:
    """What status says while a check runs: its Job, and Ready Unknown (Checking) when there is
    no result for this spec yet. Empty when status already says it."""
    patch: Object = {}
    if status.get("uri") != uri:
        patch["uri"] = uri
    if status.get("checkJobName") != job_name:
        patch["checkJobName"] = job_name
    ready = _ready(status)
    if ready is None or ready.get("observedGeneration") != generation:
        message = f"checking that {uri} is reachable (Job {job_name})"
        patch["conditions"] = set_condition(
            list(status.get("conditions") or []),
            ConditionType.READY.value,
            ConditionStatus.UNKNOWN,
            CHECKING,
            message,
            generation=generation,
            now=now,
        )
        patch["reason"] = CHECKING
        patch["message"] = message
    return patch


def result_update(
    status: Object,
    result: CheckResult,
    *,
    generation: int | None,
    uri: str | None,
    job_name: str | None,
    now: str,
) -> StoreUpdate:
    """The status patch recording a check's result, and an Event when Ready or its reason
    changed (not for a result that repeats the last one)."""
    value = ConditionStatus.TRUE if result.reachable else ConditionStatus.FALSE
    previous = _ready(status)
    conditions = set_condition(
        list(status.get("conditions") or []),
        ConditionType.READY.value,
        value,
        result.reason,
        result.message,
        generation=generation,
        now=now,
    )
    patch: Object = {
        "uri": uri,
        "lastCheckTime": now,
        "lastSuccessTime": now if result.reachable else None,
        "reason": result.reason,
        "message": result.message[:MESSAGE_LIMIT],
        "checkJobName": job_name,
        "observedGeneration": generation,
        "conditions": conditions,
    }
    update = StoreUpdate(patch={k: v for k, v in patch.items() if v is not None})
    if previous is None or (previous.get("status"), previous.get("reason")) != (
        value.value,
        result.reason,
    ):
        if result.reachable:
            update.event = ("Normal", result.reason, f"Ready: {result.message}")
        else:
            update.event = ("Warning", result.reason, f"not Ready: {result.message}")
    return update


def reconcile_store(
    api: client.ApiClient, namespace: str, name: str, config: OperatorConfig
) -> None:
    """Start the check that is due, follow the one in flight, or record its result; a no-op
    between checks."""
    with resource_lock(STORE_PLURAL, namespace, name):
        obj = read_custom(api, STORE_PLURAL, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return
        status: Object = obj.get("status") or {}
        metrics.store_seen(namespace, name, status)
        generation = obj["metadata"].get("generation")
        if not check_due(status, generation, datetime.now(UTC), config.store_check_seconds):
            return
        try:
            store = BackupStore.model_validate(obj)
        except ValidationError as exc:
            detail = describe_validation_error(exc).replace("\n", "; ")
            invalid = CheckResult(False, INVALID_SPEC, f"the spec is invalid: {detail}")
            _record(api, obj, invalid, uri=None, job_name=None)
            return
        uri = store_uri(store.spec)
        job_name = store_check_job_name(store, check_id(status, generation))
        job = read_job(api, namespace, job_name)
        if job is None:
            try:
                job, _ = create_or_adopt_job(
                    api, build_store_check_job(store, job_name, config.job_defaults)
                )
            except NamespaceTerminating:
                return  # the store goes with its namespace
        view = view_job(job)
        pods: list[Object] = []
        if view.state is not JobState.SUCCEEDED:
            pods = list_job_pods(api, namespace, job_name)
            view = view_job(job, pods)
        stuck = None
        if view.state in (JobState.PENDING, JobState.RUNNING):
            stuck = job_start_failure(api, namespace, job, pods, config)
        result = check_result(view, stuck, uri=uri)
        if result is None:
            patch = checking_patch(
                status, generation=generation, uri=uri, job_name=job_name, now=now_iso()
            )
            if patch:
                patch_status(api, STORE_PLURAL, namespace, name, patch)
            return
        if stuck is not None:
            delete_job(api, namespace, job_name)  # it must not start later and say otherwise
        _record(api, obj, result, uri=uri, job_name=job_name)


def _record(
    api: client.ApiClient,
    obj: Object,
    result: CheckResult,
    *,
    uri: str | None,
    job_name: str | None,
) -> None:
    meta = obj["metadata"]
    update = result_update(
        obj.get("status") or {},
        result,
        generation=meta.get("generation"),
        uri=uri,
        job_name=job_name,
        now=now_iso(),
    )
    patch_status(api, STORE_PLURAL, meta["namespace"], meta["name"], update.patch)
    metrics.store_checked(
        meta["namespace"], meta["name"], reachable=result.reachable, reason=result.reason
    )
    if update.event is not None:
        event_type, reason, message = update.event
        post_event(obj, event_type, reason, message)
        fields = {"kind": STORE_KIND, "namespace": meta["namespace"], "name": meta["name"]}
        log.log(
            logging.INFO if result.reachable else logging.WARNING,
            "%s %s/%s: %s",
            STORE_KIND,
            meta["namespace"],
            meta["name"],
            message,
            extra={"resource": fields, "reason": reason},
        )


def _names_store(obj: Object, store_name: str) -> bool:
    spec = obj.get("spec") or {}
    for storage in (spec.get("storage"), (spec.get("source") or {}).get("storage")):
        if ((storage or {}).get("storeRef") or {}).get("name") == store_name:
            return True
    return False


def wake_waiting_for_store(
    api: client.ApiClient, namespace: str, store_name: str, config: OperatorConfig
) -> None:
    """A store appeared (or changed): the Backups and Restores waiting for it go now, not at
    their next resync."""
    for plural, reconcile in (
        (BACKUP_PLURAL, reconcile_backup),
        (RESTORE_PLURAL, reconcile_restore),
    ):
        for obj in list_custom(api, plural, namespace):
            status = obj.get("status") or {}
            if (
                status.get("reason") == WAITING_FOR_STORE
                and status.get("phase") not in TERMINAL_PHASES
                and _names_store(obj, store_name)
            ):
                reconcile(api, namespace, obj["metadata"]["name"], config)
