"""Pure functions: from a Job's state (and its Pods') to a resource's phase and conditions.

The controller is the only writer of `phase`, `conditions`, `reason`, `message`, `jobName`,
`attempts`, times and `observedGeneration`; the worker writes `progress` and its result. Keeping
the decision pure makes it table-testable: every Job state Kubernetes can report maps to exactly
one phase, and nothing maps to an endless Pending or Running.
"""

from __future__ import annotations

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
            if worker_error is not None:
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


def stuck_pod(pods: list[Object], now: datetime, grace_seconds: float) -> tuple[str, str] | None:
    """(reason, message) when a Pod has been waiting on something that won't fix itself."""
    for pod in pods:
        created = pod.get("metadata", {}).get("creationTimestamp")
        if not created:
            continue
        age = (now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
        for container in pod.get("status", {}).get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in STUCK_REASONS and age >= grace_seconds:
                detail = waiting.get("message") or reason
                return reason, f"the worker Pod cannot start: {reason}: {detail}"
    return None


def decide(
    status: Object,
    job: JobView,
    *,
    has_result: bool,
    stuck: tuple[str, str] | None = None,
    kind: str = "Backup",
) -> Verdict:
    """The phase a resource is in, given its current status and its Job."""
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
            return Verdict(Phase.COMPLETED, "Completed", f"{kind.lower()} completed and verified")
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
        "conditions": conditions,
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
