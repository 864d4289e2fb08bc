"""Every Job state maps to exactly one phase; nothing maps to an endless Pending or Running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lifeboat.api import ConditionStatus, Phase
from lifeboat.controller.transitions import (
    JobState,
    JobView,
    decide,
    set_condition,
    status_update,
    stuck_pod,
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


def test_stuck_pods_fail_after_the_grace_period_only() -> None:
    created = datetime(2026, 1, 1, tzinfo=UTC)
    pod = {
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
        "status": {
            "containerStatuses": [
                {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "no such image"}}}
            ]
        },
    }
    assert stuck_pod([pod], created + timedelta(seconds=10), grace_seconds=60) is None
    reason, message = stuck_pod([pod], created + timedelta(seconds=61), grace_seconds=60) or (
        "",
        "",
    )
    assert reason == "ImagePullBackOff"
    assert "no such image" in message
    verdict = decide({}, JobView(JobState.PENDING), has_result=False, stuck=(reason, message))
    assert verdict.phase is Phase.FAILED


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
