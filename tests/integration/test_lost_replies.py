"""A lost answer to CompleteMultipartUpload: the S3 server completed the upload, the connection
broke before its reply reached the worker.

The real `lifeboat` worker backs up a real PostgreSQL database (two 8 MiB parts) through the outage
server's front, which forwards the worker's CompleteMultipartUpload to the server and then resets
the connection instead of relaying the reply. The worker retries; the retry is answered the way
MinIO and Ceph RGW answer a completed upload, NoSuchUpload (the front relays that instead of
moto's reply, as moto completes an upload again), or by the server itself (moto, like AWS,
answers a repeated completion with success). Either way the backup completes, is listed and
restores the same database; and when the object at the key is not the upload's, the backup fails
saying so and publishes nothing.
"""

from __future__ import annotations

import pytest

from lifeboat.contract import ExitCode
from tests.support.databases import big_postgres, damage, lifeboat, listed
from tests.support.s3_outage import OutageBucket, no_such_upload_reply

ROWS = 150_000
"""About 11 MiB of plain dump: two parts, so the backup is a multipart upload."""
ARTIFACT = "postgresql.dump"


def completion(line: bytes) -> bool:
    """CompleteMultipartUpload: `POST /bucket/key?uploadId=...` (CreateMultipartUpload is
    `POST ...?uploads`)."""
    return line.startswith(b"POST ") and b"uploadId=" in line


@pytest.mark.parametrize("retry_answer", ["NoSuchUpload", "success"])
def test_a_backup_completes_when_the_answer_to_complete_multipart_upload_is_lost(
    request: pytest.FixtureRequest, outage_bucket: OutageBucket, retry_answer: str
) -> None:
    db = big_postgres(request, ROWS)
    server, s3 = outage_bucket.server, outage_bucket.bucket
    env = {**db.env, **s3.env}
    url = s3.url("lost")
    server.lose_reply_to(completion)
    if retry_answer == "NoSuchUpload":
        server.replace_reply_to(completion, no_such_upload_reply())

    done = lifeboat("backup", db.url, url, "--compression", "none", "--progress", "none", env=env)

    assert done.returncode == 0, done.stderr
    fired = server.fired
    expected = ["lost", "replaced"] if retry_answer == "NoSuchUpload" else ["lost"]
    assert [kind for kind, _ in fired] == expected, fired
    assert all(completion(line) for _, line in fired), fired
    assert len({line for _, line in fired}) == 1, "the retry completes the same upload"
    assert outage_bucket.uploads() == []
    assert outage_bucket.object_keys() == ["lost/manifest.json", f"lost/{ARTIFACT}"]
    assert [b["location"] for b in listed(s3.url(), s3.env)] == [url]
    original = db.fingerprint()
    damage(db)

    restored = lifeboat("restore", url, db.url, "--progress", "none", env=env)

    assert restored.returncode == 0, restored.stderr
    assert db.fingerprint() == original


def test_a_backup_fails_clearly_when_the_object_left_by_a_lost_completion_is_not_its_own(
    request: pytest.FixtureRequest, outage_bucket: OutageBucket
) -> None:
    """The upload completed, then something else replaced the object before the worker's retry:
    NoSuchUpload must not be taken for success."""
    db = big_postgres(request, ROWS)
    server, s3 = outage_bucket.server, outage_bucket.bucket
    env = {**db.env, **s3.env}
    url = s3.url("replaced")
    key = f"replaced/{ARTIFACT}"
    inspector = outage_bucket.inspector()

    def replace_object() -> None:
        inspector.put_object(Bucket=s3.bucket, Key=key, Body=b"someone else's bytes")

    server.lose_reply_to(completion, then=replace_object)
    server.replace_reply_to(completion, no_such_upload_reply())

    done = lifeboat("backup", db.url, url, "--compression", "none", "--progress", "none", env=env)

    assert done.returncode == ExitCode.STORAGE, done.stderr
    assert [kind for kind, _ in server.fired] == ["lost", "replaced"]
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("lifeboat: error: StorageError: "), line
    assert "vanished" in line
    assert "NoSuchUpload" in line
    assert "the object at the key is not this upload's (found: 20 bytes" in line
    # Nothing published, nothing left to abort, and the other writer's object is untouched.
    assert outage_bucket.object_keys() == [key]
    assert inspector.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == (
        b"someone else's bytes"
    )
    assert outage_bucket.uploads() == []
    assert listed(s3.url(), s3.env) == []
