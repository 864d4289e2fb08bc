"""Every Job state maps to exactly one phase; nothing maps to an endless Pending or Running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lifeboat.api import ConditionStatus, Phase
from lifeboat.controller.transitions import (
    JobState,
    JobView,
    StartLimits,
    Verdict,
    decide,
    follow_generation,
    set_condition,
    start_event_uids,
    start_failure,
    status_update,
    view_job,
    worker_error_from_pods,
)


def job(status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "j"}, "status": status}


def cond(type_: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": type_, "status": "True", "reason": reason, "message": message}


@pytest.mark.parametrize(
    ("job_body", "state"),
    [
        (None, JobState.MISSING),
        (job({}), JobState.PENDING),
        (job({"active": 1}), JobState.RUNNING),
        (job({"succeeded": 1, "conditions": [cond("SuccessCriteriaMet")]}), JobState.SUCCEEDED),
        (job({"succeeded": 1, "conditions": [cond("Complete")]}), JobState.SUCCEEDED),
        (
            job({"failed": 1, "conditions": [cond("FailureTarget", "BackoffLimitExceeded")]}),
            JobState.FAILED,
        ),
        (job({"failed": 3, "conditions": [cond("Failed", "DeadlineExceeded")]}), JobState.FAILED),
    ],
)
def test_job_states(job_body: dict[str, Any] | None, state: JobState) -> None:
    assert view_job(job_body).state is state


@pytest.mark.parametrize(
    ("status", "state", "has_result", "phase", "reason"),
    [
        ({}, JobState.MISSING, False, Phase.PENDING, "CreatingJob"),
        (
            {"jobName": "j", "phase": "Running"},
            JobState.MISSING,
            False,
            Phase.FAILED,
            "JobVanished",
        ),
        ({"jobName": "j"}, JobState.PENDING, False, Phase.PENDING, "JobPending"),
        ({"jobName": "j"}, JobState.RUNNING, False, Phase.RUNNING, "Running"),
        ({"jobName": "j"}, JobState.SUCCEEDED, True, Phase.COMPLETED, "Completed"),
        ({"jobName": "j"}, JobState.SUCCEEDED, False, Phase.FAILED, "NoResult"),
    ],
)
def test_decide(
    status: dict[str, Any], state: JobState, has_result: bool, phase: Phase, reason: str
) -> None:
    verdict = decide(status, JobView(state), has_result=has_result)
    assert (verdict.phase, verdict.reason) == (phase, reason)


def test_failed_job_takes_the_workers_own_reason_and_message() -> None:
    pods = [
        {
            "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {
                "containerStatuses": [
                    {
                        "state": {
                            "terminated": {
                                "exitCode": 5,
                                "message": "some log\nlifeboat: error: ChecksumMismatch: bad sha",
                            }
                        }
                    }
                ]
            },
        }
    ]
    view = view_job(job({"failed": 1, "conditions": [cond("Failed", "PodFailurePolicy")]}), pods)
    verdict = decide({}, view, has_result=False)
    assert verdict.phase is Phase.FAILED
    assert verdict.reason == "ChecksumMismatch"  # the worker's cause, not the Job's mechanism
    assert verdict.message == "bad sha"
    assert worker_error_from_pods([]) is None


def test_an_error_line_without_a_reason_keeps_the_jobs_reason() -> None:
    pods = [
        {
            "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {
                "containerStatuses": [
                    {"state": {"terminated": {"message": "lifeboat: error: something broke"}}}
                ]
            },
        }
    ]
    view = view_job(
        job({"failed": 1, "conditions": [cond("Failed", "BackoffLimitExceeded")]}), pods
    )
    verdict = decide({}, view, has_result=False)
    assert verdict.reason == "BackoffLimitExceeded"
    assert verdict.message == "something broke"


T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = StartLimits(stuck_seconds=120, unschedulable_seconds=600, volume_seconds=300)
JOB = {"metadata": {"name": "j", "uid": "job-uid"}, "status": {"startTime": "2026-01-01T00:00:00Z"}}


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    *,
    uid: str = "pod-uid",
    created: float = 0,
    phase: str = "Pending",
    conditions: list[dict[str, Any]] | None = None,
    container: dict[str, Any] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if container is not None:
        status["containerStatuses"] = [{"name": "worker", "state": container}]
    return {"metadata": {"uid": uid, "creationTimestamp": at(created)}, "status": status}


def scheduled(
    ok: bool = True, reason: str = "", message: str = "", since: float = 0
) -> dict[str, Any]:
    condition = {"type": "PodScheduled", "status": "True" if ok else "False"}
    if not ok:
        condition |= {"reason": reason, "message": message, "lastTransitionTime": at(since)}
    return condition


def warning(
    uid: str, reason: str, message: str, first: float, last: float | None = None
) -> dict[str, Any]:
    return {
        "type": "Warning",
        "reason": reason,
        "message": message,
        "involvedObject": {"uid": uid},
        "firstTimestamp": at(first),
        "lastTimestamp": at(first if last is None else last),
        "count": 3,
    }


QUOTA = (
    'Error creating: pods "j-x" is forbidden: exceeded quota: q, requested: pods=1, '
    "used: pods=1, limited: pods=1"
)
NO_NODE = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
ATTACH = 'Multi-Attach error for volume "pvc-1" Volume is already exclusively attached to one node'
WAITING_MOUNT = {"waiting": {"reason": "ContainerCreating"}}
PULL = {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "x"'}}


@pytest.mark.parametrize(
    ("pods", "events", "now", "expected"),
    [
        # FailedCreate: the Job controller's Pod is refused; no Pod exists.
        ([], [warning("job-uid", "FailedCreate", QUOTA, 0, 110)], 119, None),
        ([], [warning("job-uid", "FailedCreate", QUOTA, 0, 110)], 120, ("FailedCreate", QUOTA)),
        # ... an older refusal, overcome by a Pod created since, does not count ...
        (
            [pod(phase="Failed", created=200, container={"terminated": {"exitCode": 1}})],
            [warning("job-uid", "FailedCreate", QUOTA, 0, 100)],
            900,
            None,
        ),
        # ... a refusal after that Pod failed counts from that Pod's creation at the earliest ...
        (
            [pod(phase="Failed", created=200, container={"terminated": {"exitCode": 1}})],
            [warning("job-uid", "FailedCreate", QUOTA, 0, 310)],
            319,
            None,
        ),
        (
            [pod(phase="Failed", created=200, container={"terminated": {"exitCode": 1}})],
            [warning("job-uid", "FailedCreate", QUOTA, 0, 310)],
            320,
            ("FailedCreate", QUOTA),
        ),
        # ... and a live Pod means the Pod was created after all.
        (
            [pod(created=10, conditions=[scheduled()], container={"running": {}}, phase="Running")],
            [warning("job-uid", "FailedCreate", QUOTA, 0, 5)],
            900,
            None,
        ),
        # Unschedulable: from the PodScheduled condition, after its own (longer) limit.
        ([pod(conditions=[scheduled(False, "Unschedulable", NO_NODE, since=5)])], [], 604, None),
        (
            [pod(conditions=[scheduled(False, "Unschedulable", NO_NODE, since=5)])],
            [],
            605,
            ("Unschedulable", NO_NODE),
        ),
        # A scheduling gate is not a failure.
        ([pod(conditions=[scheduled(False, "SchedulingGated", "gated")])], [], 9999, None),
        # Volumes: a scheduled Pod in ContainerCreating with FailedAttachVolume/FailedMount Events.
        (
            [pod(conditions=[scheduled()], container=WAITING_MOUNT)],
            [warning("pod-uid", "FailedAttachVolume", ATTACH, 10)],
            309,
            None,
        ),
        (
            [pod(conditions=[scheduled()], container=WAITING_MOUNT)],
            [
                warning("pod-uid", "FailedMount", "MountVolume.SetUp failed: old", 10, 20),
                warning("pod-uid", "FailedAttachVolume", ATTACH, 15, 300),
            ],
            310,
            ("FailedAttachVolume", ATTACH),
        ),
        # ... Events of another Pod, or of a Pod whose container runs, do not count.
        (
            [pod(conditions=[scheduled()], container=WAITING_MOUNT)],
            [warning("other-pod", "FailedMount", "x", 0)],
            9999,
            None,
        ),
        (
            [pod(conditions=[scheduled()], container={"running": {}}, phase="Running")],
            [warning("pod-uid", "FailedMount", "x", 0)],
            9999,
            None,
        ),
        # Image pulls and missing Secrets: from the Pod's creation.
        ([pod(created=0, conditions=[scheduled()], container=PULL)], [], 119, None),
        (
            [pod(created=0, conditions=[scheduled()], container=PULL)],
            [],
            120,
            ("ImagePullBackOff", 'Back-off pulling image "x"'),
        ),
        # A Pod that is simply starting is fine for ever (the Job's deadline bounds it).
        ([pod(conditions=[scheduled()], container=WAITING_MOUNT)], [], 99999, None),
    ],
    ids=[
        "refused-within-limit",
        "refused-past-limit",
        "refusal-overcome-by-a-pod",
        "refused-again-within-limit",
        "refused-again-past-limit",
        "refusal-overcome-by-a-live-pod",
        "unschedulable-within-limit",
        "unschedulable-past-limit",
        "scheduling-gated",
        "volume-within-limit",
        "volume-past-limit-latest-reason",
        "volume-events-of-another-pod",
        "volume-events-of-a-running-pod",
        "image-pull-within-limit",
        "image-pull-past-limit",
        "slow-but-no-trouble",
    ],
)
def test_a_pod_that_does_not_start_fails_after_the_limit_of_its_trouble(
    pods: list[dict[str, Any]],
    events: list[dict[str, Any]],
    now: float,
    expected: tuple[str, str] | None,
) -> None:
    found = start_failure(JOB, pods, events, T0 + timedelta(seconds=now), LIMITS)
    if expected is None:
        assert found is None
        return
    assert found is not None
    reason, message = found
    assert reason == expected[0]
    assert message.endswith(expected[1])  # Kubernetes' own words, after how long it lasted
    verdict = decide({}, JobView(JobState.PENDING), has_result=False, stuck=found)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, reason)


def test_the_failure_message_says_how_long_the_trouble_lasted() -> None:
    events = [warning("job-uid", "FailedCreate", QUOTA, 0, 700)]
    found = start_failure(JOB, [], events, T0 + timedelta(seconds=725), LIMITS)
    assert found == ("FailedCreate", f"the Job could not create its Pod for 12m5s: {QUOTA}")


def test_events_are_read_only_for_what_can_be_in_trouble() -> None:
    """The Job's Events while no Pod of it is live (FailedCreate); a Pod's while it is scheduled
    and its containers are not started (FailedMount). Nothing else costs an API call."""
    creating = pod(uid="p1", conditions=[scheduled()], container=WAITING_MOUNT)
    running = pod(uid="p2", conditions=[scheduled()], container={"running": {}}, phase="Running")
    unscheduled = pod(uid="p3", conditions=[scheduled(False, "Unschedulable", NO_NODE)])
    failed = pod(uid="p4", phase="Failed", container={"terminated": {"exitCode": 1}})
    assert start_event_uids(None, []) == []
    assert start_event_uids(JOB, []) == ["job-uid"]
    assert start_event_uids(JOB, [failed]) == ["job-uid"]
    assert start_event_uids(JOB, [failed, creating]) == ["p1"]
    assert start_event_uids(JOB, [running]) == []
    assert start_event_uids(JOB, [unscheduled]) == []


def test_deadline_exceeded_keeps_kubernetes_reason_over_the_interrupted_worker() -> None:
    """The kubelet kills the worker at the deadline; its last line ('Interrupted') is what
    happened to it, not why: DeadlineExceeded stays."""
    killed = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "containerStatuses": [
                {
                    "state": {
                        "terminated": {
                            "exitCode": 130,
                            "message": "lifeboat: error: Interrupted: stopped by SIGTERM",
                        }
                    }
                }
            ]
        },
    }
    failed = job(
        {
            "failed": 1,
            "conditions": [
                cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
            ],
        }
    )
    verdict = decide({}, view_job(failed, [killed]), has_result=False)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, "DeadlineExceeded")
    assert verdict.message == "Job was active longer than specified deadline"


def test_conditions_keep_their_transition_time_while_status_holds() -> None:
    first = set_condition(
        [], "Ready", ConditionStatus.FALSE, "Running", "m", generation=1, now="t1"
    )
    second = set_condition(
        first, "Ready", ConditionStatus.FALSE, "Running", "m2", generation=1, now="t2"
    )
    assert second[0]["lastTransitionTime"] == "t1"
    third = set_condition(
        second, "Ready", ConditionStatus.TRUE, "Completed", "", generation=1, now="t3"
    )
    assert third[0]["lastTransitionTime"] == "t3"


def test_status_update_is_kstatus_shaped_and_emits_one_event_per_phase_change() -> None:
    view = JobView(JobState.SUCCEEDED, attempts=1, completion_time="2026-01-01T00:01:00Z")
    verdict = decide({"jobName": "j"}, view, has_result=True)
    update = status_update({"phase": "Running"}, verdict, view, job_name="j", generation=1, now="t")
    by_type = {c["type"]: c for c in update.patch["conditions"]}
    assert by_type["Ready"]["status"] == "True"
    assert by_type["Reconciling"]["status"] == "False"
    assert by_type["Stalled"]["status"] == "False"
    assert by_type["Ready"]["observedGeneration"] == 1
    assert update.patch["phase"] == "Completed"
    assert update.patch["completionTime"] == "2026-01-01T00:01:00Z"
    assert update.event == ("Normal", "Completed", "Completed: backup completed and verified")
    again = status_update(
        {"phase": "Completed"}, verdict, view, job_name="j", generation=1, now="t"
    )
    assert again.event is None


def test_every_condition_observes_the_generation_of_each_write() -> None:
    status = {
        "phase": "Running",
        "conditions": [
            {
                "type": "StorageCleanup",
                "status": "Unknown",
                "reason": "Deleting",
                "message": "",
                "observedGeneration": 1,
                "lastTransitionTime": "t0",
            },
        ],
    }
    view = JobView(JobState.RUNNING, attempts=1)
    update = status_update(
        status,
        decide({"jobName": "j"}, view, has_result=False),
        view,
        job_name="j",
        generation=3,
        now="t",
    )
    assert update.patch["observedGeneration"] == 3
    assert {c["type"]: c["observedGeneration"] for c in update.patch["conditions"]} == {
        "StorageCleanup": 3,
        "Ready": 3,
        "Reconciling": 3,
        "Stalled": 3,
    }


@pytest.mark.parametrize("phase", ["Completed", "Failed"])
def test_a_finished_object_follows_a_spec_edit_without_anything_else_changing(phase: str) -> None:
    conditions = [
        {
            "type": t,
            "status": s,
            "reason": "Completed",
            "message": "m",
            "observedGeneration": 1,
            "lastTransitionTime": "t0",
        }
        for t, s in (("Ready", "True"), ("Reconciling", "False"), ("Stalled", "False"))
    ]
    status = {"phase": phase, "observedGeneration": 1, "conditions": conditions}
    patch = follow_generation(status, 2)
    assert patch is not None
    assert set(patch) == {"observedGeneration", "conditions"}
    assert patch["observedGeneration"] == 2
    assert [c["observedGeneration"] for c in patch["conditions"]] == [2, 2, 2]
    assert [{**c, "observedGeneration": 1} for c in patch["conditions"]] == conditions
    assert follow_generation({**status, **patch}, 2) is None  # once is enough: no write storms
    assert follow_generation(status, None) is None
    assert follow_generation({"phase": phase}, 2) == {"observedGeneration": 2}


def test_a_succeeded_job_takes_the_callers_success_verdict() -> None:
    dry_run = Verdict(Phase.COMPLETED, "DryRunSucceeded", "nothing was changed")
    done = view_job(job({"succeeded": 1, "conditions": [cond("Complete", "")]}))
    assert decide({}, done, has_result=True, success=dry_run) == dry_run
    assert decide({}, done, has_result=True).reason == "Completed"
    assert decide({}, done, has_result=False, success=dry_run).reason == "NoResult"
