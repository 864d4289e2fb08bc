"""Pure functions: from a Job's state (and its Pods' and Events') to a resource's phase and
conditions.

The controller is the only writer of `phase`, `conditions`, `reason`, `message`, `jobName`,
`attempts`, times and `observedGeneration`; the worker writes `progress` and its result. Keeping
the decision pure makes it table-testable: every Job state Kubernetes can report maps to exactly
one phase, and nothing maps to an endless Pending or Running: a Pod that cannot be created,
scheduled, mounted or pulled fails the request after a time limit of its kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from lifeboat.api import ConditionStatus, ConditionType, Phase
from lifeboat.contract import Object, parse_error_line

TERMINAL_PHASES = frozenset({Phase.COMPLETED.value, Phase.FAILED.value})
# Waiting reasons of a container that will not go away by themselves.
STUCK_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
# Warning Events of a scheduled Pod whose volumes cannot be attached or mounted (the Pod stays in
# ContainerCreating and nothing else says why).
VOLUME_REASONS = frozenset({"FailedMount", "FailedAttachVolume"})
FAILED_CREATE = "FailedCreate"
UNSCHEDULABLE = "Unschedulable"
# Job failure reasons that come from how the worker's Pod ended: the worker's own error line says
# more. Others (DeadlineExceeded) happen to the worker, and Kubernetes' reason stays.
WORKER_FAILURE_REASONS = frozenset({"PodFailurePolicy", "BackoffLimitExceeded"})


class JobState(StrEnum):
    MISSING = "Missing"
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobView:
    """What matters of a Job and its Pods, read once per reconcile."""

    state: JobState
    attempts: int = 0
    reason: str | None = None
    message: str | None = None
    start_time: str | None = None
    completion_time: str | None = None


@dataclass(frozen=True)
class Verdict:
    """What the status should say now: phase, why, and an Event when the phase changes."""

    phase: Phase
    reason: str
    message: str


@dataclass
class StatusUpdate:
    patch: Object = field(default_factory=dict)
    event: tuple[str, str, str] | None = None  # (type, reason, message)


def _conditions_of(job: Object) -> dict[str, Object]:
    conditions = job.get("status", {}).get("conditions") or []
    return {c.get("type", ""): c for c in conditions if c.get("status") == "True"}


def view_job(job: Object | None, pods: list[Object] | None = None) -> JobView:
    """Classify a Job as Kubernetes >= 1.31 reports it (terminal conditions first)."""
    if job is None:
        return JobView(JobState.MISSING)
    status = job.get("status", {})
    attempts = int(status.get("failed", 0)) + int(status.get("succeeded", 0))
    attempts += int(status.get("active", 0))
    conditions = _conditions_of(job)
    common = {
        "attempts": attempts,
        "start_time": status.get("startTime"),
        "completion_time": status.get("completionTime"),
    }
    for kind in ("Complete", "SuccessCriteriaMet"):
        if kind in conditions:
            return JobView(JobState.SUCCEEDED, reason="Completed", **common)
    for kind in ("Failed", "FailureTarget"):
        if kind in conditions:
            condition = conditions[kind]
            reason = condition.get("reason") or "JobFailed"
            message = condition.get("message") or f"the Job failed ({reason})"
            worker_error = worker_error_from_pods(pods or [])
            if worker_error is not None and reason in WORKER_FAILURE_REASONS:
                # The worker knows why (AuthenticationFailed); the Job only that a Pod failed.
                reason = worker_error[0] or reason
                message = worker_error[1]
            return JobView(JobState.FAILED, reason=reason, message=message, **common)
    if int(status.get("active", 0)) > 0 or int(status.get("ready", 0)) > 0:
        return JobView(JobState.RUNNING, **common)
    return JobView(JobState.PENDING, **common)


def worker_error_from_pods(pods: list[Object]) -> tuple[str | None, str] | None:
    """(reason, message) of the worker's error line in the newest failed Pod's termination
    message (see `lifeboat.contract.format_error_line`)."""

    def created(pod: Object) -> str:
        return str(pod.get("metadata", {}).get("creationTimestamp", ""))

    for pod in sorted(pods, key=created, reverse=True):
        for container in pod.get("status", {}).get("containerStatuses") or []:
            terminated = (container.get("state") or {}).get("terminated") or {}
            parsed = parse_error_line(terminated.get("message") or "")
            if parsed is not None:
                return parsed
    return None


@dataclass(frozen=True)
class StartLimits:
    """How long a Job's Pod may fail to start, by kind of trouble, before the request fails."""

    stuck_seconds: float = 120.0
    """Troubles that do not fix themselves: an image that cannot be pulled, a missing Secret or
    key, a Pod the API server refuses to create (FailedCreate: a quota, a missing service
    account, a policy)."""
    unschedulable_seconds: float = 600.0
    """A Pod no node can take (PodScheduled=False, Unschedulable): an autoscaler may add one."""
    volume_seconds: float = 600.0
    """A scheduled Pod whose volumes cannot be attached or mounted (FailedAttachVolume,
    FailedMount): attachments can take minutes to move between nodes."""


def _time(value: object) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _created(obj: Object) -> datetime | None:
    return _time(obj.get("metadata", {}).get("creationTimestamp"))


def _event_first(event: Object) -> datetime | None:
    return _time(event.get("firstTimestamp") or event.get("eventTime")) or _created(event)


def _event_last(event: Object) -> datetime | None:
    series = event.get("series") or {}
    return _time(series.get("lastObservedTime") or event.get("lastTimestamp")) or _event_first(
        event
    )


def _duration(seconds: float) -> str:
    """'45s', '10m', '1h5m': how long something has been going on, for a message."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    parts.append(f"{secs}s" if secs or not (hours or minutes) else "")
    return "".join(parts)


def _live(pod: Object) -> bool:
    """A Pod that is starting or running (not finished, not being deleted)."""
    meta, status = pod.get("metadata", {}), pod.get("status", {})
    return not meta.get("deletionTimestamp") and status.get("phase") in (None, "Pending", "Running")


def _starting(pod: Object) -> bool:
    return _live(pod) and pod.get("status", {}).get("phase") in (None, "Pending")


def _pod_condition(pod: Object, type_: str) -> Object | None:
    conditions = pod.get("status", {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), None)


def _scheduled(pod: Object) -> bool:
    scheduled = _pod_condition(pod, "PodScheduled")
    if scheduled is not None:
        return bool(scheduled.get("status") == "True")
    return bool(pod.get("spec", {}).get("nodeName"))


def _containers_started(pod: Object) -> bool:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return any(set(s.get("state") or {}) & {"running", "terminated"} for s in statuses)


def _involves(event: Object, uid: str | None) -> bool:
    return bool(uid) and (event.get("involvedObject") or {}).get("uid") == uid


def start_event_uids(job: Object | None, pods: list[Object]) -> list[str]:
    """The objects whose Warning Events say why a Job's Pod does not start: the Job itself while
    it has no live Pod (FailedCreate), and each scheduled Pod still creating its containers
    (FailedMount, FailedAttachVolume). Empty when no Event can matter (nothing to read)."""
    uids: list[str] = []
    job_uid = (job or {}).get("metadata", {}).get("uid")
    if job_uid and not any(_live(pod) for pod in pods):
        uids.append(str(job_uid))
    for pod in pods:
        uid = pod.get("metadata", {}).get("uid")
        if uid and _starting(pod) and _scheduled(pod) and not _containers_started(pod):
            uids.append(str(uid))
    return uids


def start_failure(
    job: Object | None,
    pods: list[Object],
    events: Iterable[Object],
    now: datetime,
    limits: StartLimits,
) -> tuple[str, str] | None:
    """(reason, message) when the Job's Pod has failed to start for longer than the limit of
    its kind of trouble; None while it may still start (or is not in trouble at all).

    `events` are Warning Events of the objects `start_event_uids` names; the message quotes
    Kubernetes' own words (the quota, the scheduler, the volume plugin)."""
    warnings = [e for e in events if e.get("type", "Warning") == "Warning"]
    for pod in pods:
        if not _starting(pod):
            continue
        found = _pod_start_failure(pod, warnings, now, limits)
        if found is not None:
            return found
    return _create_failure(job, pods, warnings, now, limits)


def _pod_start_failure(
    pod: Object, warnings: list[Object], now: datetime, limits: StartLimits
) -> tuple[str, str] | None:
    created = _created(pod)
    scheduled = _pod_condition(pod, "PodScheduled")
    if (
        scheduled is not None
        and scheduled.get("status") == "False"
        and scheduled.get("reason") == UNSCHEDULABLE
    ):
        since = _time(scheduled.get("lastTransitionTime")) or created
        if since is not None and (now - since).total_seconds() >= limits.unschedulable_seconds:
            detail = scheduled.get("message") or "no node can run it"
            age = _duration((now - since).total_seconds())
            return UNSCHEDULABLE, f"the worker Pod could not be scheduled for {age}: {detail}"
        return None
    uid = pod.get("metadata", {}).get("uid")
    if _scheduled(pod) and not _containers_started(pod):
        troubles = [
            e
            for e in warnings
            if _involves(e, uid)
            and e.get("reason") in VOLUME_REASONS
            and (created is None or (_event_last(e) or now) >= created)
        ]
        firsts = [t for t in (_event_first(e) for e in troubles) if t is not None]
        if troubles and firsts:
            since = min(firsts)
            if (now - since).total_seconds() >= limits.volume_seconds:
                latest = max(troubles, key=lambda e: _event_last(e) or since)
                age = _duration((now - since).total_seconds())
                return str(latest["reason"]), (
                    f"the worker Pod could not attach or mount its volumes for {age}: "
                    f"{latest.get('message') or latest['reason']}"
                )
    for container in pod.get("status", {}).get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        waited = (now - created).total_seconds() if created is not None else 0.0
        if reason in STUCK_REASONS and waited >= limits.stuck_seconds:
            detail = waiting.get("message") or reason
            return reason, f"the worker Pod cannot start: {reason}: {detail}"
    return None


def _create_failure(
    job: Object | None,
    pods: list[Object],
    warnings: list[Object],
    now: datetime,
    limits: StartLimits,
) -> tuple[str, str] | None:
    """FailedCreate: the Job controller's Pod was refused, and no Pod is live to say otherwise.
    Only refusals seen since the newest Pod count (an older one was overcome by that Pod)."""
    if job is None or any(_live(pod) for pod in pods):
        return None
    uid = job.get("metadata", {}).get("uid")
    newest_pod = max((t for t in (_created(p) for p in pods) if t is not None), default=None)
    refusals = [
        e
        for e in warnings
        if _involves(e, uid)
        and e.get("reason") == FAILED_CREATE
        and (newest_pod is None or (_event_last(e) or now) >= newest_pod)
    ]
    firsts = [t for t in (_event_first(e) for e in refusals) if t is not None]
    if not refusals or not firsts:
        return None
    since = min(firsts) if newest_pod is None else max(min(firsts), newest_pod)
    if (now - since).total_seconds() < limits.stuck_seconds:
        return None
    latest = max(refusals, key=lambda e: _event_last(e) or since)
    age = _duration((now - since).total_seconds())
    return FAILED_CREATE, (
        f"the Job could not create its Pod for {age}: {latest.get('message') or FAILED_CREATE}"
    )


def decide(
    status: Object,
    job: JobView,
    *,
    has_result: bool,
    stuck: tuple[str, str] | None = None,
    kind: str = "Backup",
    success: Verdict | None = None,
) -> Verdict:
    """The phase a resource is in, given its current status and its Job.

    `success` is the verdict for a Job that succeeded with a result, when it is not the usual
    one (a Restore's dry run completes with reason DryRunSucceeded)."""
    if job.state is JobState.MISSING:
        if status.get("jobName") and status.get("phase") not in TERMINAL_PHASES:
            return Verdict(
                Phase.FAILED,
                "JobVanished",
                f"Job {status['jobName']} disappeared before it finished (deleted by someone or "
                f"something else); create a new {kind} to try again",
            )
        return Verdict(Phase.PENDING, "CreatingJob", "creating the Job")
    if job.state is JobState.SUCCEEDED:
        if has_result:
            return success or Verdict(
                Phase.COMPLETED, "Completed", f"{kind.lower()} completed and verified"
            )
        return Verdict(
            Phase.FAILED,
            "NoResult",
            "the Job succeeded but the worker recorded no result in status "
            "(was status pruned or the worker unable to reach the API?)",
        )
    if job.state is JobState.FAILED:
        return Verdict(Phase.FAILED, job.reason or "JobFailed", job.message or "the Job failed")
    if stuck is not None:
        return Verdict(Phase.FAILED, stuck[0], stuck[1])
    if job.state is JobState.RUNNING:
        return Verdict(Phase.RUNNING, "Running", f"the {kind.lower()} Job is running")
    return Verdict(Phase.PENDING, "JobPending", "waiting for the Job's Pod to start")


def set_condition(
    conditions: list[Object],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: str,
) -> list[Object]:
    """Replace one condition; keep lastTransitionTime when its status did not change."""
    previous = next((c for c in conditions if c.get("type") == type_), None)
    transition = now
    if previous is not None and previous.get("status") == status.value:
        transition = previous.get("lastTransitionTime") or now
    updated: Object = {
        "type": type_,
        "status": status.value,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": transition,
    }
    if generation is not None:
        updated["observedGeneration"] = generation
    others = [c for c in conditions if c.get("type") != type_]
    return [*others, updated]


def status_update(
    status: Object,
    verdict: Verdict,
    job: JobView,
    *,
    job_name: str | None,
    generation: int | None,
    now: str,
) -> StatusUpdate:
    """The status patch (phase, conditions, times) and the Event for a phase change."""
    T, F = ConditionStatus.TRUE, ConditionStatus.FALSE
    phase = verdict.phase
    terminal = phase.value in TERMINAL_PHASES
    conditions = list(status.get("conditions") or [])
    failed = phase is Phase.FAILED
    for type_, value, message in (
        (ConditionType.READY, T if phase is Phase.COMPLETED else F, verdict.message),
        (ConditionType.RECONCILING, F if terminal else T, verdict.message),
        (ConditionType.STALLED, T if failed else F, verdict.message if failed else ""),
    ):
        conditions = set_condition(
            conditions,
            type_.value,
            value,
            verdict.reason,
            message,
            generation=generation,
            now=now,
        )
    patch: Object = {
        "phase": phase.value,
        "reason": verdict.reason,
        "message": verdict.message,
        "conditions": _observed(conditions, generation),
        "observedGeneration": generation,
    }
    if job_name:
        patch["jobName"] = job_name
    if job.attempts:
        patch["attempts"] = job.attempts
    if job.start_time and not status.get("startTime"):
        patch["startTime"] = job.start_time
    elif phase is not Phase.PENDING and not status.get("startTime"):
        patch["startTime"] = now
    if terminal and not status.get("completionTime"):
        patch["completionTime"] = job.completion_time or now
    update = StatusUpdate(patch={k: v for k, v in patch.items() if v is not None})
    if status.get("phase") != phase.value:
        event_type = "Warning" if phase is Phase.FAILED else "Normal"
        update.event = (event_type, verdict.reason, f"{phase.value}: {verdict.message}")
    return update


def _observed(conditions: list[Object], generation: int | None) -> list[Object]:
    """Every condition (also those this update did not decide) speaks of `generation`."""
    if generation is None:
        return conditions
    return [{**c, "observedGeneration": generation} for c in conditions]


def follow_generation(status: Object, generation: int | None) -> Object | None:
    """The status patch that makes `observedGeneration`, at the top and in every condition, say
    `generation`; None when it already does.

    For objects that are finished (or waiting) when their spec changes, such as an edit of a
    Backup's `deletionPolicy`: nothing runs again, but kstatus, Flux and Argo CD see that the
    controller has seen the edit, and stop reporting the object as in progress."""
    if generation is None:
        return None
    conditions = list(status.get("conditions") or [])
    if status.get("observedGeneration") == generation and all(
        c.get("observedGeneration") == generation for c in conditions
    ):
        return None
    patch: Object = {"observedGeneration": generation}
    if conditions:
        patch["conditions"] = _observed(conditions, generation)
    return patch
