"""S3 over https with a private CA: the worker trusts the CA bundle it is given, and refuses at
once (no retries through the storage timeout) an endpoint whose certificate it cannot verify."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lifeboat.contract import ExitCode, parse_error_line
from tests.support.databases import lifeboat, make_database
from tests.support.s3 import S3Bucket
from tests.support.tls import Pki


def _https_env(bucket: S3Bucket, endpoint: str) -> dict[str, str]:
    return {**bucket.env, "AWS_ENDPOINT_URL": endpoint}


def test_backup_and_restore_through_an_https_endpoint_with_a_private_ca(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    s3_bucket: S3Bucket,
    tls_s3_server: str,
    tls_pki: Pki,
) -> None:
    db = make_database(request, "sqlite", tmp_path)
    original = db.fingerprint()
    url = s3_bucket.url("tls")
    env = _https_env(s3_bucket, tls_s3_server)

    done = lifeboat(
        "backup", db.url, url, "--progress", "none", "--storage-ca-bundle", str(tls_pki.ca), env=env
    )
    assert done.returncode == 0, done.stderr
    stored = s3_bucket.keys()
    assert any(key.startswith("tls/") for key in stored)

    db.execute("DELETE FROM orders")
    # The Job's way: the bundle's path in LIFEBOAT_S3_CA_BUNDLE.
    done = lifeboat(
        "restore",
        url,
        db.url,
        "--progress",
        "none",
        env={**env, "LIFEBOAT_S3_CA_BUNDLE": str(tls_pki.ca)},
    )
    assert done.returncode == 0, done.stderr
    assert db.fingerprint() == original


@pytest.mark.parametrize("bundle", ["none", "other"])
def test_an_endpoint_certificate_that_does_not_verify_fails_at_once(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    s3_bucket: S3Bucket,
    tls_s3_server: str,
    tls_pki: Pki,
    bundle: str,
) -> None:
    db = make_database(request, "sqlite", tmp_path)
    env = _https_env(s3_bucket, tls_s3_server)
    if bundle == "other":
        env["LIFEBOAT_S3_CA_BUNDLE"] = str(tls_pki.other_ca)

    started = time.monotonic()
    done = lifeboat("backup", db.url, s3_bucket.url("tls"), "--progress", "none", env=env)

    assert done.returncode == ExitCode.STORAGE, done.stderr
    parsed = parse_error_line(done.stderr)
    assert parsed is not None, done.stderr
    reason, message = parsed
    assert reason == "StorageTlsVerificationFailed"
    assert "caSecretRef" in message
    assert time.monotonic() - started < 30  # not retried through the 120 s storage timeout
    assert s3_bucket.keys() == []
