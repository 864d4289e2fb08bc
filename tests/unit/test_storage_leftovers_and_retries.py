"""The pieces behind 'bounded retries' and 'leftovers are cleaned' (docs/guarantees.md) that can be
checked without a server: which failures are retried, how long, and which leftovers are removed.
The behaviour under real outages and kills is in tests/integration/test_faults.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from lifeboat.contract import DEFAULT_STORAGE_TIMEOUT, ENV_STORAGE_TIMEOUT
from lifeboat.worker.errors import UsageError
from lifeboat.worker.pipeline import lifeboat_keys
from lifeboat.worker.storage.local import LocalStorage
from lifeboat.worker.storage.s3 import BACKOFF_MAX, S3Storage, _backoff, _transient


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "UploadPart",
    )


def test_the_storage_timeout_comes_from_the_option_then_the_environment_then_the_default() -> None:
    env = {ENV_STORAGE_TIMEOUT: "45"}
    assert S3Storage("b", environ=env, storage_timeout=7).storage_timeout == 7
    assert S3Storage("b", environ=env).storage_timeout == 45
    assert S3Storage("b", environ={}).storage_timeout == DEFAULT_STORAGE_TIMEOUT


@pytest.mark.parametrize("value", ["0", "-3", "soon"])
def test_a_storage_timeout_that_is_not_a_positive_number_is_refused(value: str) -> None:
    with pytest.raises(UsageError, match=ENV_STORAGE_TIMEOUT):
        S3Storage("b", environ={ENV_STORAGE_TIMEOUT: value})


def test_one_attempt_never_outlasts_half_the_storage_timeout() -> None:
    config = S3Storage("b", environ={}, storage_timeout=6)._client.meta.config
    assert config.connect_timeout == 3
    assert config.read_timeout == 3
    assert config.retries["total_max_attempts"] == 1  # the retries are Lifeboat's, in the budget


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="http://s3:9000"),
        ReadTimeoutError(endpoint_url="http://s3:9000"),
        client_error("SlowDown", 503),
        client_error("InternalError", 500),
        client_error("RequestTimeout", 400),
    ],
    ids=["connection", "read-timeout", "SlowDown", "InternalError", "RequestTimeout"],
)
def test_outages_and_throttling_are_retried(error: Exception) -> None:
    assert _transient(error)


@pytest.mark.parametrize(
    "error",
    [
        client_error("AccessDenied", 403),
        client_error("NoSuchBucket", 404),
        client_error("NoSuchKey", 404),
        client_error("PreconditionFailed", 412),
        client_error("InvalidAccessKeyId", 403),
    ],
    ids=lambda e: str(e.response["Error"]["Code"]),
)
def test_refusals_are_not_retried(error: ClientError) -> None:
    assert not _transient(error)


def test_backoff_doubles_up_to_a_ceiling_with_jitter() -> None:
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (40, BACKOFF_MAX)]:
        delays = {_backoff(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays)
        assert len(delays) > 1, "no jitter: workers retrying together stay together"


def test_a_directory_removes_only_the_temp_files_of_lifeboat_names_at_its_own_level(
    tmp_path: Path,
) -> None:
    location = tmp_path / "run"
    (location / "nested").mkdir(parents=True)
    ours = [".postgresql.dump.partial-0123456789ab", ".manifest.json.partial-ba9876543210"]
    others = [
        ".notes.txt.partial-0123456789ab",  # not a name Lifeboat writes
        "postgresql.dump",  # a complete object
        ".postgresql.dump.partial-xyz",  # not a temp name Lifeboat makes
    ]
    for name in ours + others:
        (location / name).write_bytes(b"x")
    (location / "nested" / ours[0]).write_bytes(b"x")  # another location's

    removed = LocalStorage(location).remove_incomplete(lifeboat_keys())

    assert sorted(removed) == sorted(f"{location.as_uri()}/{name}" for name in ours)
    assert sorted(p.name for p in location.iterdir()) == sorted([*others, "nested"])
    assert (location / "nested" / ours[0]).exists()
    assert LocalStorage(tmp_path / "missing").remove_incomplete(lifeboat_keys()) == []
