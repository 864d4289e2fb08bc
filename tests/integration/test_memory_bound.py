"""Memory stays bounded however large the database: a dump of a few hundred MB streams through.

The worker's peak RSS comes from the kernel (`wait4` rusage of the finished process), so the
check does not depend on timing or sampling.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import postgres as pg

RAW_DUMP_AT_LEAST = 250 * 2**20
PEAK_RSS_BOUND = 128 * 2**20  # measured ~93 MiB: Python, boto3, psycopg, two 8 MiB parts


@pytest.mark.slow
def test_worker_rss_stays_bounded_for_a_large_dump_to_s3(
    pg_database: pg.PgDatabase, s3_bucket
) -> None:
    pg_database.execute(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g + 1)::text) || "
        "md5((g + 2)::text) || md5((g + 3)::text) || md5((g + 4)::text) AS payload "
        "FROM generate_series(1, 1600000) g"
    )
    probe = (
        "import os, subprocess, sys, json\n"
        "proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)\n"
        "out = proc.stdout.read()\n"
        "_, status, usage = os.wait4(proc.pid, 0)\n"
        "print(json.dumps({'code': os.waitstatus_to_exitcode(status),"
        " 'maxrss_kib': usage.ru_maxrss, 'out': out.decode()}))\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            sys.executable,
            "-m",
            "lifeboat",
            "backup",
            pg_database.url,
            s3_bucket.url("big"),
            "--compression",
            "none",
            "--progress",
            "none",
            "--output",
            "json",
        ],
        env={**os.environ, "LIFEBOAT_DB_PASSWORD": pg_database.password, **s3_bucket.env},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    measured = json.loads(result.stdout)
    assert measured["code"] == 0, result.stderr
    manifest = json.loads(
        s3_bucket.client.get_object(Bucket=s3_bucket.bucket, Key="big/manifest.json")["Body"].read()
    )
    raw_size = manifest["artifact"]["raw_size"]
    peak = measured["maxrss_kib"] * 1024
    print(f"raw dump {raw_size / 2**20:.0f} MiB, worker peak RSS {peak / 2**20:.0f} MiB")
    assert raw_size >= RAW_DUMP_AT_LEAST
    assert peak < PEAK_RSS_BOUND
