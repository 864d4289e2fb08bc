"""S3 for tests: a real S3 HTTP endpoint (moto's server) on 127.0.0.1, and a fresh bucket per test.

Everything talks to it over HTTP with an endpoint URL, exactly as production talks to AWS S3 or
MinIO; moto's in-process `mock_aws` is never used. moto enforces S3's 5 MiB minimum for non-last
parts, so multipart tests use real-sized parts.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from tests.support.e2e import E2E_SETTINGS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
# Variables that could point boto3 at something other than the test server.
_AMBIENT_AWS_VARIABLES = (
    "AWS_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "LIFEBOAT_S3_ADDRESSING_STYLE",
)


@dataclass
class S3Bucket:
    """One empty bucket on the test server, and the environment that reaches it."""

    endpoint: str
    bucket: str
    client: S3Client = field(repr=False)
    env: dict[str, str]

    def url(self, prefix: str = "") -> str:
        """BACKUP_URL for `prefix` in this bucket: s3://bucket/prefix/."""
        prefix = prefix.strip("/")
        return f"s3://{self.bucket}/{prefix}/" if prefix else f"s3://{self.bucket}/"

    def keys(self) -> list[str]:
        """Every object key in the bucket, for assertions."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def uploads(self) -> list[str]:
        """Keys of multipart uploads still in progress (should be none after any write)."""
        response = self.client.list_multipart_uploads(Bucket=self.bucket)
        return [u["Key"] for u in response.get("Uploads", [])]


@dataclass(frozen=True)
class Credentials:
    """An access key pair known to the test server's IAM."""

    access_key_id: str
    secret_access_key: str = field(repr=False)


@dataclass(frozen=True)
class EnforcedAuth:
    """Users that exist while the test server checks signatures and IAM policies."""

    allowed: Credentials
    """May do anything on S3."""
    without_policy: Credentials
    """Authenticates, but no policy allows it anything."""
    read_only: Credentials
    """May list and read (HeadBucket, GetObject), not write: a restore's role, not a backup's."""


def plain_client(endpoint: str) -> S3Client:
    """A plain boto3 client for the test server, independent of the code under test."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 and a free port; yields its endpoint URL."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address=E2E_SETTINGS.bind_address, port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Bucket]:
    """A new, uniquely named bucket; AWS_* in os.environ point at it for the test."""
    env = {
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }
    for name in _AMBIENT_AWS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = plain_client(s3_server)
    name = f"lifeboat-test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    bucket = S3Bucket(endpoint=s3_server, bucket=name, client=client, env=env)
    yield bucket
    for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
        client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    keys = bucket.keys()
    for start in range(0, len(keys), 1000):
        client.delete_objects(
            Bucket=name, Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]]}
        )
    client.delete_bucket(Bucket=name)


@pytest.fixture
def s3_enforced_auth(s3_bucket: S3Bucket) -> Iterator[EnforcedAuth]:
    """Make the test server check credentials and IAM policies, as AWS does, for one test.

    moto accepts any credentials by default. Its `/moto-api/reset-auth` switch (the server form
    of INITIAL_NO_AUTH_ACTION_COUNT) turns on signature and policy checks for the whole process,
    so it is switched back off when the test ends.
    """
    iam = boto3.client(
        "iam",
        endpoint_url=s3_bucket.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    suffix = uuid.uuid4().hex[:8]
    allowed, without_policy = f"lifeboat-allowed-{suffix}", f"lifeboat-nothing-{suffix}"
    read_only = f"lifeboat-read-only-{suffix}"
    iam.create_user(UserName=allowed)
    iam.put_user_policy(
        UserName=allowed,
        PolicyName="s3",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
            }
        ),
    )
    iam.create_user(UserName=without_policy)
    iam.create_user(UserName=read_only)
    iam.put_user_policy(
        UserName=read_only,
        PolicyName="s3-read",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:ListBucket", "s3:GetObject"],
                        "Resource": "*",
                    }
                ],
            }
        ),
    )
    keys = [
        iam.create_access_key(UserName=u)["AccessKey"] for u in (allowed, without_policy, read_only)
    ]
    previous = _set_auth_threshold(s3_bucket.endpoint, "0")
    try:
        yield EnforcedAuth(
            allowed=Credentials(keys[0]["AccessKeyId"], keys[0]["SecretAccessKey"]),
            without_policy=Credentials(keys[1]["AccessKeyId"], keys[1]["SecretAccessKey"]),
            read_only=Credentials(keys[2]["AccessKeyId"], keys[2]["SecretAccessKey"]),
        )
    finally:
        _set_auth_threshold(s3_bucket.endpoint, previous)


def _set_auth_threshold(endpoint: str, count: str) -> str:
    """Set how many requests moto lets through unauthenticated; returns the previous value."""
    request = urllib.request.Request(  # noqa: S310  # the test server's own http:// URL
        f"{endpoint}/moto-api/reset-auth",
        data=count.encode(),
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return str(json.load(response)["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"])
