"""BackupStore checks as pure decisions: when a check is due, what names it, what its Job's end
means, what status says meanwhile, and that Events follow Ready's changes, not every check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lifeboat.api import BackupStoreStatus
from lifeboat.controller.store import (
    CHECK_FAILED,
    CHECKING,
    REACHABLE,
    CheckResult,
    check_due,
    check_id,
    check_result,
    checking_patch,
    result_update,
)
from lifeboat.controller.transitions import JobState, JobView

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
NOW_ISO = "2026-03-01T12:00:00Z"
URI = "s3://team-backups/nightly/"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ready(status: str, reason: str, generation: int = 1) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": "m",
        "lastTransitionTime": "2026-03-01T00:00:00Z",
        "observedGeneration": generation,
    }


@pytest.mark.parametrize(
    ("status", "generation", "due"),
    [
        pytest.param({}, 1, True, id="never-checked"),
        pytest.param(
            {"observedGeneration": 1, "lastCheckTime": iso(NOW - timedelta(seconds=299))},
            1,
            False,
            id="checked-recently",
        ),
        pytest.param(
            {"observedGeneration": 1, "lastCheckTime": iso(NOW - timedelta(seconds=300))},
            1,
            True,
            id="interval-passed",
        ),
        pytest.param(
            {"observedGeneration": 1, "lastCheckTime": iso(NOW)},
            2,
            True,
            id="spec-edited-is-checked-at-once",
        ),
        pytest.param({"observedGeneration": 1}, 1, True, id="no-check-time"),
    ],
)
def test_when_a_check_is_due(status: dict[str, Any], generation: int, due: bool) -> None:
    assert check_due(status, generation, NOW, 300.0) is due


def test_a_check_keeps_its_id_until_its_result_is_recorded() -> None:
    first = check_id({}, 1)
    assert check_id({"uri": URI, "checkJobName": "x"}, 1) == first  # while it runs
    recorded = check_id({"lastCheckTime": NOW_ISO, "observedGeneration": 1}, 1)
    assert recorded != first
    assert check_id({"lastCheckTime": NOW_ISO, "observedGeneration": 1}, 2) != recorded


@pytest.mark.parametrize(
    ("view", "stuck", "expected"),
    [
        pytest.param(JobView(JobState.PENDING), None, None, id="pending"),
        pytest.param(JobView(JobState.RUNNING), None, None, id="running"),
        pytest.param(
            JobView(JobState.SUCCEEDED, reason="Completed"),
            None,
            CheckResult(True, REACHABLE, f"{URI} is reachable with the store's settings"),
            id="succeeded",
        ),
        pytest.param(
            JobView(JobState.FAILED, reason="BucketNotFound", message="bucket 'x' does not exist"),
            None,
            CheckResult(False, "BucketNotFound", "bucket 'x' does not exist"),
            id="worker-reason",
        ),
        pytest.param(
            JobView(JobState.FAILED, reason="BackoffLimitExceeded", message="backoff limit"),
            None,
            CheckResult(False, CHECK_FAILED, "backoff limit"),
            id="worker-died-without-a-reason",
        ),
        pytest.param(
            JobView(JobState.FAILED, reason="DeadlineExceeded", message="too long"),
            None,
            CheckResult(False, "DeadlineExceeded", "too long"),
            id="deadline",
        ),
        pytest.param(
            JobView(JobState.PENDING),
            ("ImagePullBackOff", "the worker Pod cannot start: ImagePullBackOff: x"),
            CheckResult(
                False, "ImagePullBackOff", "the worker Pod cannot start: ImagePullBackOff: x"
            ),
            id="stuck-pod",
        ),
    ],
)
def test_what_a_check_jobs_end_means(
    view: JobView, stuck: tuple[str, str] | None, expected: CheckResult | None
) -> None:
    assert check_result(view, stuck, uri=URI) == expected


def test_the_first_check_says_checking_with_ready_unknown() -> None:
    patch = checking_patch({}, generation=1, uri=URI, job_name="backups-check-1", now=NOW_ISO)
    assert patch["uri"] == URI
    assert patch["checkJobName"] == "backups-check-1"
    assert patch["reason"] == CHECKING
    [condition] = patch["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "Ready",
        "Unknown",
        CHECKING,
    )
    assert condition["observedGeneration"] == 1
    assert "observedGeneration" not in patch  # only a result observes the spec
    BackupStoreStatus.model_validate(patch)


def test_a_periodic_check_keeps_the_last_result_while_it_runs() -> None:
    status = {"uri": URI, "observedGeneration": 1, "conditions": [ready("False", "AccessDenied")]}
    patch = checking_patch(status, generation=1, uri=URI, job_name="backups-check-2", now=NOW_ISO)
    assert patch == {"checkJobName": "backups-check-2"}
    running = {**status, "checkJobName": "backups-check-2"}
    assert (
        checking_patch(running, generation=1, uri=URI, job_name="backups-check-2", now=NOW_ISO)
        == {}
    )


def test_an_edited_spec_is_unknown_until_its_own_result() -> None:
    status = {"uri": URI, "observedGeneration": 1, "conditions": [ready("True", REACHABLE)]}
    patch = checking_patch(
        status, generation=2, uri="s3://other/", job_name="backups-check-3", now=NOW_ISO
    )
    assert patch["uri"] == "s3://other/"
    assert patch["conditions"][0]["status"] == "Unknown"
    assert patch["conditions"][0]["observedGeneration"] == 2


def test_a_success_records_times_generation_and_a_ready_event_once() -> None:
    update = result_update(
        {"conditions": [ready("Unknown", CHECKING)]},
        CheckResult(True, REACHABLE, f"{URI} is reachable"),
        generation=1,
        uri=URI,
        job_name="backups-check-1",
        now=NOW_ISO,
    )
    patch = update.patch
    assert patch["lastCheckTime"] == patch["lastSuccessTime"] == NOW_ISO
    assert (patch["reason"], patch["observedGeneration"], patch["uri"]) == (REACHABLE, 1, URI)
    assert patch["conditions"][0]["status"] == "True"
    assert update.event == ("Normal", REACHABLE, f"Ready: {URI} is reachable")
    BackupStoreStatus.model_validate(patch)

    again = result_update(
        patch,
        CheckResult(True, REACHABLE, f"{URI} is reachable"),
        generation=1,
        uri=URI,
        job_name="backups-check-2",
        now="2026-03-01T12:05:00Z",
    )
    assert again.event is None  # five minutes later, the same answer: no Event
    assert again.patch["lastSuccessTime"] == "2026-03-01T12:05:00Z"
    assert again.patch["conditions"][0]["lastTransitionTime"] == NOW_ISO


def test_a_failure_keeps_the_last_success_and_warns_on_each_new_reason_only() -> None:
    healthy = {
        "lastSuccessTime": "2026-03-01T11:55:00Z",
        "conditions": [ready("True", REACHABLE)],
    }
    failed = result_update(
        healthy,
        CheckResult(False, "BucketNotFound", "bucket 'x' does not exist"),
        generation=1,
        uri=URI,
        job_name="j",
        now=NOW_ISO,
    )
    assert "lastSuccessTime" not in failed.patch  # merge patch: the old one stays
    assert failed.patch["conditions"][0]["status"] == "False"
    assert failed.event == ("Warning", "BucketNotFound", "not Ready: bucket 'x' does not exist")
    same = result_update(
        failed.patch,
        CheckResult(False, "BucketNotFound", "bucket 'x' does not exist"),
        generation=1,
        uri=URI,
        job_name="j2",
        now="2026-03-01T12:05:00Z",
    )
    assert same.event is None
    other = result_update(
        same.patch,
        CheckResult(False, "AccessDenied", "refused"),
        generation=1,
        uri=URI,
        job_name="j3",
        now="2026-03-01T12:10:00Z",
    )
    assert other.event == ("Warning", "AccessDenied", "not Ready: refused")
    back = result_update(
        other.patch,
        CheckResult(True, REACHABLE, "ok"),
        generation=1,
        uri=URI,
        job_name="j4",
        now="2026-03-01T12:15:00Z",
    )
    assert back.event == ("Normal", REACHABLE, "Ready: ok")
