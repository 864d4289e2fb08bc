"""S3 server-side encryption against the real S3 test server (moto over HTTP): asked for on every
write, single PutObject and multipart upload alike, read back from S3 with HeadObject (by a plain
boto3 client, independent of the code under test), and recorded in the manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lifeboat.worker.storage import open_storage
from lifeboat.worker.storage.base import StoredEncryption
from lifeboat.worker.storage.s3 import S3Storage
from tests.support.databases import lifeboat, make_database
from tests.support.s3 import S3Bucket

MIB = 1024 * 1024
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def head(s3: S3Bucket, key: str) -> dict[str, object]:
    response = s3.client.head_object(Bucket=s3.bucket, Key=key)
    return {
        "type": response.get("ServerSideEncryption"),
        "kms": response.get("SSEKMSKeyId"),
        "size": response["ContentLength"],
    }


@pytest.mark.parametrize(
    ("sse", "kms_key"), [("aws:kms", KMS_KEY), ("AES256", None)], ids=["sse-kms", "sse-s3"]
)
def test_multipart_and_single_writes_carry_server_side_encryption(
    s3_bucket: S3Bucket, sse: str, kms_key: str | None
) -> None:
    storage = S3Storage(
        s3_bucket.bucket,
        "sse/",
        endpoint_url=s3_bucket.endpoint,
        min_part_size=5 * MIB,
        server_side_encryption=sse,
        sse_kms_key_id=kms_key,
    )
    payload = os.urandom(11 * MIB + 17)  # three parts of a multipart upload
    with storage.open_writer("big.bin", size_hint=len(payload)) as writer:
        for start in range(0, len(payload), MIB):
            writer.write(payload[start : start + MIB])
    storage.put_bytes("small.json", b"{}")

    for key, size in (("sse/big.bin", len(payload)), ("sse/small.json", 2)):
        assert head(s3_bucket, key) == {"type": sse, "kms": kms_key, "size": size}
    assert storage.stored_encryption("big.bin") == StoredEncryption(sse, kms_key)
    got = s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key="sse/big.bin")["Body"].read()
    assert got == payload


def test_without_server_side_encryption_none_is_asked_for_or_recorded(s3_bucket: S3Bucket) -> None:
    storage = S3Storage(s3_bucket.bucket, "plain/", endpoint_url=s3_bucket.endpoint)
    storage.put_bytes("x", b"x")
    assert head(s3_bucket, "plain/x")["type"] is None
    assert storage.stored_encryption("x") is None


def test_a_backup_records_what_s3_applied_and_restores(
    request: pytest.FixtureRequest, tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    db = make_database(request, "sqlite", tmp_path)
    original = db.fingerprint()
    url = s3_bucket.url("kms") + f"?sse=aws:kms&kms-key-id={KMS_KEY}"
    done = lifeboat("backup", db.url, url, "--output", "json", env=s3_bucket.env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["serverSideEncryption"] == {
        "type": "aws:kms",
        "kmsKeyId": KMS_KEY,
    }
    manifest = json.loads(
        s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key="kms/manifest.json")["Body"].read()
    )
    assert manifest["artifact"]["server_side_encryption"] == {
        "type": "aws:kms",
        "kms_key_id": KMS_KEY,
    }
    for key in ("kms/manifest.json", f"kms/{manifest['artifact']['key']}"):
        assert head(s3_bucket, key)["type"] == "aws:kms"

    db.execute("DELETE FROM orders")
    done = lifeboat(
        "restore", s3_bucket.url("kms"), db.url, "--progress", "none", env=s3_bucket.env
    )
    assert done.returncode == 0, done.stderr
    assert db.fingerprint() == original


def test_the_environment_asks_for_sse_s3_as_a_job_does(
    request: pytest.FixtureRequest, tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    db = make_database(request, "sqlite", tmp_path)
    env = {**s3_bucket.env, "LIFEBOAT_S3_SSE": "AES256"}
    done = lifeboat("backup", db.url, s3_bucket.url("s3"), "--progress", "none", env=env)
    assert done.returncode == 0, done.stderr
    manifest = json.loads(lifeboat("show", s3_bucket.url("s3"), env=s3_bucket.env).stdout)
    assert manifest["artifact"]["server_side_encryption"] == {"type": "AES256", "kms_key_id": None}


@pytest.mark.parametrize(
    ("env", "query", "says"),
    [
        ({"LIFEBOAT_S3_SSE": "aes256"}, "", "LIFEBOAT_S3_SSE (sse= in BACKUP_URL): 'aes256'"),
        ({}, "?sse=AES256&kms-key-id=alias/x", "names a KMS key"),
        ({}, "?sse=aws:kms&kms=alias/x", "unknown parameter 'kms'"),
    ],
)
def test_bad_server_side_encryption_settings_are_usage_errors(
    s3_bucket: S3Bucket, tmp_path: Path, env: dict[str, str], query: str, says: str
) -> None:
    url = s3_bucket.url("bad") + query
    done = lifeboat("backup", f"sqlite:///{tmp_path}/x.db", url, env={**s3_bucket.env, **env})
    assert done.returncode == 2, done.stderr
    assert says in done.stderr
    assert s3_bucket.keys() == []


def test_open_storage_passes_the_url_parameters(s3_bucket: S3Bucket) -> None:
    storage = open_storage(s3_bucket.url("p") + "?sse=aws:kms&kms-key-id=alias/backups")
    assert isinstance(storage, S3Storage)
    assert storage.sse_arguments() == {
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "alias/backups",
    }
