"""A lost answer to CompleteMultipartUpload, without a server: how a completed multipart object is
recognised (its multipart ETag and composite SHA-256), and what the writer decides when a retried
completion gets NoSuchUpload. The real fault is in tests/integration/test_lost_replies.py."""

from __future__ import annotations

import base64
import hashlib
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError

from lifeboat.worker.errors import StorageError
from lifeboat.worker.storage import s3
from lifeboat.worker.storage.s3 import (
    S3Storage,
    completed_from,
    composite_sha256,
    multipart_etag,
)

MIB = 2**20
# A known answer: what moto 5.2 reports for parts b"a" * 5 MiB and b"tail" uploaded with SHA-256.
KNOWN_PARTS = [b"a" * 5 * MIB, b"tail"]
KNOWN_ETAG = "30dcfd3901d1c613b7fb532281748544-2"
KNOWN_SHA256 = "02fcpk5/QKJNsvzEdkeBlFeIWeYNwKJOAWPjbe9fHIs="


def md5_etag(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


def sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def completed_parts(datas: list[bytes]) -> list[Any]:
    return [
        {"PartNumber": n, "ETag": md5_etag(data), "ChecksumSHA256": sha256(data)}
        for n, data in enumerate(datas, 1)
    ]


def no_such_upload() -> ClientError:
    return ClientError(
        {
            "Error": {"Code": "NoSuchUpload", "Message": "The specified upload does not exist."},
            "ResponseMetadata": {"HTTPStatusCode": 404},
        },
        "CompleteMultipartUpload",
    )


def test_the_multipart_etag_is_the_md5_of_the_parts_md5s_and_their_count() -> None:
    assert multipart_etag([md5_etag(p) for p in KNOWN_PARTS]) == KNOWN_ETAG


def test_the_composite_sha256_is_the_sha256_of_the_parts_sha256s() -> None:
    assert composite_sha256([sha256(p) for p in KNOWN_PARTS]) == KNOWN_SHA256


def test_part_etags_that_are_not_md5s_give_no_multipart_etag() -> None:
    """SSE-KMS and SSE-C parts: their ETags are not the MD5 of the bytes."""
    assert multipart_etag(['"a1b2c3"', md5_etag(b"x")]) is None


SIZE = sum(len(p) for p in KNOWN_PARTS)


@pytest.mark.parametrize(
    ("head", "ours"),
    [
        ({"ContentLength": SIZE, "ETag": f'"{KNOWN_ETAG}"', "ChecksumSHA256": KNOWN_SHA256}, True),
        ({"ContentLength": SIZE, "ETag": '"opaque"', "ChecksumSHA256": f"{KNOWN_SHA256}-2"}, True),
        ({"ContentLength": SIZE, "ETag": f'"{KNOWN_ETAG}"'}, True),
        ({"ContentLength": SIZE - 1, "ETag": f'"{KNOWN_ETAG}"'}, False),
        ({"ContentLength": SIZE, "ETag": f'"{KNOWN_ETAG}"', "ChecksumSHA256": sha256(b"x")}, False),
        ({"ContentLength": SIZE, "ChecksumSHA256": f"{KNOWN_SHA256}-3"}, False),
        ({"ContentLength": SIZE, "ETag": md5_etag(b"".join(KNOWN_PARTS))}, False),
        ({"ContentLength": SIZE}, False),
    ],
    ids=[
        "etag-and-checksum",
        "checksum-with-part-count",
        "etag-only",
        "wrong-size",
        "checksum-differs",
        "wrong-part-count",
        "a-single-put-of-the-same-bytes",
        "nothing-to-prove-it",
    ],
)
def test_only_an_object_proven_to_be_the_upload_is_taken_for_it(
    head: dict[str, Any], ours: bool
) -> None:
    decided, found = completed_from(head, completed_parts(KNOWN_PARTS), SIZE)
    assert decided is ours
    assert f"{head['ContentLength']} bytes" in found


class FakeS3:
    """Just enough of a boto3 S3 client for one multipart write; `on_complete` says what each
    CompleteMultipartUpload does: "complete" (and answer), "lost" (complete, then the connection
    breaks), "replaced" (complete, something else overwrites the key, the connection breaks),
    "gone" (NoSuchUpload)."""

    meta = SimpleNamespace(endpoint_url="http://s3.test")

    def __init__(self, *on_complete: str) -> None:
        self.on_complete = list(on_complete)
        self.parts: dict[int, bytes] = {}
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []

    def create_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("CreateMultipartUpload")
        return {"UploadId": "upload-1"}

    def upload_part(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("UploadPart")
        data = bytes(kwargs["Body"])
        self.parts[kwargs["PartNumber"]] = data
        return {"ETag": md5_etag(data), "ChecksumSHA256": sha256(data)}

    def complete_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("CompleteMultipartUpload")
        action = self.on_complete.pop(0)
        if action == "gone":
            raise no_such_upload()
        datas = [self.parts[n] for n in sorted(self.parts)]
        self.objects[kwargs["Key"]] = {
            "ContentLength": sum(len(d) for d in datas),
            "ETag": f'"{multipart_etag([md5_etag(d) for d in datas])}"',
            "ChecksumSHA256": f"{composite_sha256([sha256(d) for d in datas])}-{len(datas)}",
        }
        if action == "replaced":
            self.objects[kwargs["Key"]] = {"ContentLength": 7, "ETag": md5_etag(b"foreign")}
        if action in ("lost", "replaced"):
            raise ConnectionClosedError(endpoint_url="http://s3.test/b/run/postgresql.dump")
        return {"ETag": self.objects[kwargs["Key"]]["ETag"]}

    def head_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("HeadObject")
        found = self.objects.get(kwargs["Key"])
        if found is None:
            raise ClientError(
                {"Error": {"Code": "404"}, "ResponseMetadata": {"HTTPStatusCode": 404}},
                "HeadObject",
            )
        if kwargs.get("ChecksumMode") != "ENABLED":
            found = {k: v for k, v in found.items() if k != "ChecksumSHA256"}
        return found

    def head_bucket(self, **kwargs: Any) -> dict[str, Any]:
        return {}

    def abort_multipart_upload(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("AbortMultipartUpload")
        raise no_such_upload()

    def delete_objects(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("DeleteObjects")
        return {}


def write_two_parts(fake: FakeS3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3, "_backoff", lambda attempt: 0.0)
    storage = S3Storage("b", "run", environ={}, storage_timeout=30, min_part_size=5 * MIB)
    storage._client = fake  # type: ignore[assignment]
    storage._reached = True
    with storage.open_writer("postgresql.dump") as writer:
        writer.write(KNOWN_PARTS[0])
        writer.write(KNOWN_PARTS[1])


def test_a_retried_completion_that_finds_no_upload_accepts_the_object_it_had_completed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeS3("lost", "gone")

    write_two_parts(fake, monkeypatch)

    assert fake.calls.count("CompleteMultipartUpload") == 2
    assert "AbortMultipartUpload" not in fake.calls
    assert "DeleteObjects" not in fake.calls
    assert fake.objects["run/postgresql.dump"]["ContentLength"] == SIZE


def test_a_retried_completion_that_finds_another_object_fails_and_leaves_it_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeS3("replaced", "gone")

    with pytest.raises(StorageError) as raised:
        write_two_parts(fake, monkeypatch)

    message = str(raised.value)
    assert "s3://b/run/postgresql.dump: multipart upload upload-1 vanished" in message
    assert "found: 7 bytes" in message
    assert f"this upload: {SIZE} bytes, ETag {KNOWN_ETAG}, SHA-256 {KNOWN_SHA256}-2" in message
    assert "AbortMultipartUpload" not in fake.calls, "the upload is gone: nothing to abort"
    assert "DeleteObjects" not in fake.calls, "the object is not this writer's to remove"
    assert not getattr(raised.value, "__notes__", []), "no failed abort to report"


def test_a_first_completion_that_finds_no_upload_fails_without_looking_further(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing was sent before: the upload was removed by something else, never completed."""
    fake = FakeS3("gone")

    with pytest.raises(StorageError, match="was removed before it could be completed"):
        write_two_parts(fake, monkeypatch)

    assert fake.calls.count("CompleteMultipartUpload") == 1
    assert "HeadObject" not in fake.calls
    assert "AbortMultipartUpload" not in fake.calls
