"""The API retry helper: which errors are sent again, how long it waits, and that it stops."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from lifeboat.kube import objects
from lifeboat.kube.objects import KubeError
from lifeboat.kube.retry import (
    RetryPolicy,
    call_with_retries,
    is_transient,
    retry_after,
)


def api_error(
    status: int, *, headers: dict[str, str] | None = None, body: Any = None
) -> ApiException:
    exc = ApiException(status=status, reason="x")
    exc.headers = headers
    exc.body = json.dumps(body) if body is not None else None
    return exc


def failing(*errors: BaseException, result: str = "ok") -> tuple[Callable[[], str], list[int]]:
    """A call that raises `errors` in turn, then returns `result`; and its call count."""
    calls = [0]

    def call() -> str:
        calls[0] += 1
        if calls[0] <= len(errors):
            raise errors[calls[0] - 1]
        return result

    return call, calls


@pytest.mark.parametrize(
    ("error", "conflicts", "expected"),
    [
        (api_error(429), False, True),
        (api_error(500), False, True),
        (api_error(502), False, True),
        (api_error(503), False, True),
        (api_error(504), False, True),
        (api_error(409), False, False),  # a create's AlreadyExists: the caller adopts
        (api_error(409), True, True),  # a merge patch's Conflict: send it again
        (api_error(404), True, False),
        (api_error(403), True, False),
        (api_error(422), True, False),
        (urllib3.exceptions.ProtocolError("Connection aborted."), False, True),
        (ConnectionResetError(), False, True),
        (ValueError("a bug"), True, False),
    ],
)
def test_which_errors_are_transient(error: BaseException, conflicts: bool, expected: bool) -> None:
    assert is_transient(error, conflicts=conflicts) is expected


def test_retry_after_from_header_then_from_status_details() -> None:
    assert retry_after(api_error(429, headers={"Retry-After": "3"})) == 3.0
    body = {"kind": "Status", "code": 429, "details": {"retryAfterSeconds": 2}}
    assert retry_after(api_error(429, body=body)) == 2.0
    assert retry_after(api_error(429)) is None
    assert retry_after(ConnectionResetError()) is None


def test_transient_errors_are_retried_with_doubling_bounded_backoff() -> None:
    slept: list[float] = []
    call, calls = failing(api_error(500), api_error(503), api_error(504))
    policy = RetryPolicy(attempts=4, first_delay=0.2, max_delay=0.5)

    assert call_with_retries(call, "reading", policy=policy, sleep=slept.append) == "ok"
    assert calls[0] == 4
    assert slept == [0.2, 0.4, 0.5]


def test_retry_after_is_honored_up_to_its_bound() -> None:
    slept: list[float] = []
    call, _ = failing(
        api_error(429, headers={"Retry-After": "3"}),
        api_error(429, headers={"Retry-After": "600"}),
    )
    policy = RetryPolicy(attempts=3, first_delay=0.1, max_retry_after=10)

    assert call_with_retries(call, "creating", policy=policy, sleep=slept.append) == "ok"
    assert slept == [3.0, 10.0]


def test_gives_up_after_the_last_attempt_with_the_last_error() -> None:
    slept: list[float] = []
    last = api_error(500)
    call, calls = failing(api_error(500), api_error(500), last)

    with pytest.raises(ApiException) as raised:
        call_with_retries(call, "x", policy=RetryPolicy(attempts=3), sleep=slept.append)
    assert raised.value is last
    assert calls[0] == 3
    assert len(slept) == 2


def test_a_lost_connection_at_the_end_becomes_an_api_exception_with_status_0() -> None:
    call, _ = failing(*[urllib3.exceptions.ProtocolError("Connection aborted.")] * 2)

    with pytest.raises(ApiException) as raised:
        call_with_retries(call, "x", policy=RetryPolicy(attempts=2), sleep=lambda _: None)
    assert raised.value.status == 0
    error = KubeError("writing status", raised.value)
    assert error.transient


@pytest.mark.parametrize("status", [400, 403, 404, 409, 410, 422])
def test_permanent_errors_are_raised_at_once(status: int) -> None:
    slept: list[float] = []
    call, calls = failing(api_error(status))

    with pytest.raises(ApiException):
        call_with_retries(call, "x", sleep=slept.append)
    assert calls[0] == 1
    assert slept == []


def test_conflicts_are_retried_only_when_asked() -> None:
    call, calls = failing(api_error(409), api_error(409))
    assert call_with_retries(call, "x", conflicts=True, sleep=lambda _: None) == "ok"
    assert calls[0] == 3


class FakeBatch:
    """BatchV1Api answering create with `create_error` and read with `existing`."""

    create_error: ApiException
    existing: dict[str, Any]

    def __init__(self, api: Any) -> None:
        self.creates = 0

    def create_namespaced_job(self, namespace: str, body: Any, **_: Any) -> Any:
        raise FakeBatch.create_error

    def read_namespaced_job(self, name: str, namespace: str, **_: Any) -> Any:
        return type("Response", (), {"data": json.dumps(FakeBatch.existing)})()


def job_owned_by(uid: str) -> dict[str, Any]:
    owner = {"kind": "Backup", "name": "b", "uid": uid, "controller": True}
    return {
        "kind": "Job",
        "metadata": {"name": "b-job", "namespace": "ns", "ownerReferences": [owner]},
    }


def test_a_job_that_exists_is_adopted_only_if_it_is_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objects.client, "BatchV1Api", FakeBatch)
    FakeBatch.create_error = api_error(409)

    FakeBatch.existing = job_owned_by("uid-1")
    job, created = objects.create_or_adopt_job(None, job_owned_by("uid-1"))  # type: ignore[arg-type]
    assert (job["metadata"]["name"], created) == ("b-job", False)

    FakeBatch.existing = job_owned_by("uid-2")
    with pytest.raises(objects.NotOurs):
        objects.create_or_adopt_job(None, job_owned_by("uid-1"))  # type: ignore[arg-type]


def test_a_failing_job_create_is_retried_then_reported_not_taken_for_exists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(objects.client, "BatchV1Api", FakeBatch)
    monkeypatch.setattr("lifeboat.kube.retry.time.sleep", lambda _: None)
    FakeBatch.create_error = api_error(503)

    with pytest.raises(objects.KubeError) as raised:
        objects.create_or_adopt_job(None, job_owned_by("uid-1"))  # type: ignore[arg-type]
    assert raised.value.status == 503
    assert raised.value.transient
