"""Encryption keeps memory bounded: an encrypted backup of a few hundred MB to S3 and its restore
stream through in chunks. Peak RSS comes from the kernel (`wait4` rusage of the finished worker),
as in test_memory_bound.py, so the check does not depend on timing or sampling."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.support import postgres as pg
from tests.support.s3 import S3Bucket

RAW_DUMP_AT_LEAST = 250 * 2**20
PEAK_RSS_BOUND = 128 * 2**20
"""As for an unencrypted backup (test_memory_bound.py). Measured: backup ~113 MiB (~97 MiB
without encryption, plus ~8 MiB for cryptography's OpenSSL, imported only when a key is used,
and ~7 MiB of chunk buffers), restore ~98 MiB."""
PROBE = (
    "import os, subprocess, sys, json\n"
    "proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)\n"
    "out = proc.stdout.read()\n"
    "_, status, usage = os.wait4(proc.pid, 0)\n"
    "print(json.dumps({'code': os.waitstatus_to_exitcode(status),"
    " 'maxrss_kib': usage.ru_maxrss, 'out': out.decode()}))\n"
)


def measured(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, sys.executable, "-m", "lifeboat", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    found: dict[str, Any] = json.loads(result.stdout)
    assert found["code"] == 0, result.stderr
    return found


@pytest.mark.slow
def test_encrypted_backup_and_restore_keep_rss_bounded(
    pg_database: pg.PgDatabase, s3_bucket: S3Bucket
) -> None:
    pg_database.execute(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) || "
        "md5((g + 2)::text) || md5((g + 3)::text) || md5((g + 4)::text) AS payload "
        "FROM generate_series(1, 1600000) g"
    )
    original = pg_database.row_counts()
    env = {
        "LIFEBOAT_DB_PASSWORD": pg_database.password,
        "LIFEBOAT_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        **s3_bucket.env,
    }
    common = ["--progress", "none", "--output", "json"]
    where = s3_bucket.url("big")

    backup = measured(["backup", pg_database.url, where, "--compression", "none", *common], env)
    manifest = json.loads(
        s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key="big/manifest.json")["Body"].read()
    )
    assert manifest["artifact"]["encryption"]["algorithm"] == "AES-256-GCM"
    raw_size = manifest["artifact"]["raw_size"]
    assert raw_size >= RAW_DUMP_AT_LEAST

    pg_database.execute("DELETE FROM big WHERE id % 2 = 0")
    restore = measured(["restore", where, pg_database.url, *common], env)
    assert json.loads(restore["out"])["rowCountsMatched"] is True
    assert pg_database.row_counts() == original

    for name, found in (("backup", backup), ("restore", restore)):
        peak = found["maxrss_kib"] * 1024
        print(f"encrypted {name} of {raw_size / 2**20:.0f} MiB: peak RSS {peak / 2**20:.0f} MiB")
        assert peak < PEAK_RSS_BOUND, name
