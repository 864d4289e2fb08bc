"""The worker end to end, as a Job runs it: the `lifeboat` command against real servers.

Every engine x every storage: back up, damage the data, restore, and compare the database row for
row with what it was. Then the ways it must fail safely: a flipped byte in the stored artifact, a
restore killed midway, a backup interrupted mid-upload, and bad credentials or addresses.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lifeboat.contract import ExitCode
from tests.support import mariadb as maria
from tests.support import postgres as pg
from tests.support.databases import Database, damage, lifeboat, make_database

ENGINES = ["postgresql", "mariadb", "mysql", "sqlite"]
STORAGES = ["local", "s3"]


@pytest.fixture
def backup_location(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    """(BACKUP_URL, env) for the storage named by the test's `storage` parameter."""
    storage = request.node.callspec.params["storage"]
    if storage == "local":
        yield f"file://{tmp_path}/backups/run/", {}
    else:
        bucket = request.getfixturevalue("s3_bucket")
        yield bucket.url("team/run"), bucket.env


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("engine", ENGINES)
def test_round_trip_restores_the_exact_database(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine: str,
    storage: str,
    backup_location: tuple[str, dict[str, str]],
) -> None:
    db = make_database(request, engine, tmp_path)
    url, storage_env = backup_location
    env = {**db.env, **storage_env}
    original = db.fingerprint()

    done = lifeboat("backup", db.url, url, "--output", "json", "--progress", "none", env=env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows"] > 0

    damage(db)
    assert db.fingerprint() != original

    done = lifeboat("restore", url, db.url, "--output", "json", "--json-progress", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rowCountsMatched"] is True
    assert db.fingerprint() == original
    progress = [json.loads(line)["progress"] for line in done.stderr.splitlines()]
    percents = [p["percent"] for p in progress]
    assert percents == sorted(percents)
    assert percents[-1] == 100.0
    assert progress[-1]["items_done"] == progress[-1]["items_total"] > 0


def _flip_one_byte_of_the_artifact(url: str, storage_env: dict[str, str], s3: Any) -> None:
    manifest = json.loads(lifeboat("show", url, env=storage_env).stdout)
    key = manifest["artifact"]["key"]
    if s3 is None:
        path = Path(url.removeprefix("file://")) / key
        blob = bytearray(path.read_bytes())
        blob[len(blob) // 2] ^= 0x01
        path.write_bytes(bytes(blob))
        return
    object_key = url.removeprefix(f"s3://{s3.bucket}/") + key
    blob = bytearray(s3.client.get_object(Bucket=s3.bucket, Key=object_key)["Body"].read())
    blob[len(blob) // 2] ^= 0x01
    s3.client.put_object(Bucket=s3.bucket, Key=object_key, Body=bytes(blob))


@pytest.mark.parametrize("verify_first", [True, False])
@pytest.mark.parametrize("storage", ["s3"])
@pytest.mark.parametrize("engine", ["postgresql", "mariadb", "sqlite"])
def test_flipped_byte_is_refused_and_the_target_is_unchanged(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine: str,
    storage: str,
    verify_first: bool,
    backup_location: tuple[str, dict[str, str]],
) -> None:
    db = make_database(request, engine, tmp_path)
    url, storage_env = backup_location
    env = {**db.env, **storage_env}
    assert lifeboat("backup", db.url, url, "--progress", "none", env=env).returncode == 0
    _flip_one_byte_of_the_artifact(url, storage_env, request.getfixturevalue("s3_bucket"))
    damage(db)
    before = db.fingerprint()

    flags = [] if verify_first else ["--no-verify-first"]
    done = lifeboat("restore", url, db.url, "--progress", "none", *flags, env=env)

    assert done.returncode == 5, done.stderr
    assert "ChecksumMismatch" in done.stderr
    assert db.fingerprint() == before


def _big_postgres(request: pytest.FixtureRequest, rows: int) -> tuple[Database, pg.PgDatabase]:
    raw: pg.PgDatabase = request.getfixturevalue("pg_database_factory")()
    raw.execute(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload "
        f"FROM generate_series(1, {rows}) g"
    )
    raw.execute("ALTER TABLE big ADD PRIMARY KEY (id)")
    db = Database(
        url=raw.url,
        env={"LIFEBOAT_DB_PASSWORD": raw.password},
        fingerprint=raw.fingerprint,
        execute=raw.execute,
        orders_table="big",
    )
    return db, raw


def _big_mariadb(request: pytest.FixtureRequest, rows: int) -> tuple[Database, Any]:
    raw: maria.MariaDBDatabase = request.getfixturevalue("mariadb_databases").create()
    raw.execute(
        "CREATE TABLE big (id INT PRIMARY KEY, payload VARCHAR(64) NOT NULL)",
        f"INSERT INTO big SELECT seq, CONCAT(MD5(seq), MD5(seq * 7)) FROM seq_1_to_{rows}",
    )
    db = Database(
        url=raw.url,
        env=raw.env,
        fingerprint=lambda: maria.fingerprint(raw),
        execute=lambda statement: raw.execute(statement),
        orders_table="big",
    )
    return db, raw


def _wait_until_no_sessions_on(db_kind: str, raw: Any, deadline_s: float = 60) -> None:
    """The killed worker's tool processes notice the closed pipe and exit; wait for that."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if db_kind == "postgresql":
            with raw.server.connect() as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                    "pg_backend_pid()",
                    (raw.name,),
                ).fetchone()
        else:
            with contextlib.closing(raw.server.root()) as conn, conn.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM information_schema.processlist "
                    "WHERE db LIKE %s AND id <> CONNECTION_ID()",
                    (raw.name + "%",),
                )
                row = cur.fetchone()
        if row is not None and row[0] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the killed restore's sessions did not end")


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_restore_killed_midway_leaves_the_target_unchanged(
    request: pytest.FixtureRequest, tmp_path: Path, engine: str
) -> None:
    maker = _big_postgres if engine == "postgresql" else _big_mariadb
    db, raw = maker(request, 1_000_000)
    url = f"file://{tmp_path}/backups/big/"
    assert lifeboat("backup", db.url, url, "--progress", "none", env=db.env).returncode == 0
    damage(db)
    before = db.fingerprint()

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lifeboat",
            "restore",
            url,
            db.url,
            "--json-progress",
            "--no-verify-first",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **db.env},
    )
    assert proc.stderr is not None
    killed_at = None
    for line in proc.stderr:
        snapshot = json.loads(line)["progress"] if line.startswith("{") else None
        if snapshot and snapshot["stage"] == "restoring" and snapshot["percent"] >= 10:
            proc.send_signal(signal.SIGKILL)
            killed_at = snapshot["percent"]
            break
    assert killed_at is not None, "the restore finished before the kill"
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the restore exited before the kill landed"

    _wait_until_no_sessions_on(engine, raw)
    assert db.fingerprint() == before


def test_interrupted_upload_leaves_nothing_in_the_bucket(
    request: pytest.FixtureRequest,
) -> None:
    s3 = request.getfixturevalue("s3_bucket")
    db, _ = _big_postgres(request, 1_500_000)
    url = s3.url("interrupted")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lifeboat",
            "backup",
            db.url,
            url,
            "--json-progress",
            "--compression",
            "none",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, **db.env, **s3.env},
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        snapshot = json.loads(line)["progress"] if line.startswith("{") else None
        # Past two 8 MiB parts: a multipart upload is under way.
        if snapshot and snapshot["bytes_done"] > 24 * 2**20:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, rest
    assert "Interrupted" in rest
    listing = s3.client.list_objects_v2(Bucket=s3.bucket)
    assert listing.get("KeyCount", 0) == 0
    assert not s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads")


def test_clear_errors_for_bad_password_unreachable_host_and_missing_bucket(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = make_database(request, "postgresql", tmp_path, seed=False)
    s3 = request.getfixturevalue("s3_bucket")
    secret = "wrong-" + "password-123"

    wrong = lifeboat("backup", db.url, str(tmp_path / "b"), env={"LIFEBOAT_DB_PASSWORD": secret})
    assert wrong.returncode == ExitCode.REFUSED  # a retry cannot fix a wrong password
    assert "AuthenticationFailed" in wrong.stderr.splitlines()[-1]
    assert secret not in wrong.stderr + wrong.stdout

    unreachable = lifeboat(
        "backup",
        "postgresql://nobody@127.0.0.1:1/db",
        str(tmp_path / "b"),
        env={"LIFEBOAT_DB_PASSWORD": secret},
    )
    assert unreachable.returncode == 3
    assert "DatabaseUnreachable" in unreachable.stderr.splitlines()[-1]
    assert secret not in unreachable.stderr

    maria_db = make_database(request, "mariadb", tmp_path, seed=False)
    wrong = lifeboat(
        "backup", maria_db.url, str(tmp_path / "b"), env={"LIFEBOAT_DB_PASSWORD": secret}
    )
    assert "AuthenticationFailed" in wrong.stderr.splitlines()[-1]
    assert wrong.returncode == ExitCode.REFUSED
    assert secret not in wrong.stderr

    missing = lifeboat(
        "backup", db.url, f"s3://no-such-bucket-{os.getpid()}/x/", env={**db.env, **s3.env}
    )
    assert missing.returncode == 4
    assert "BucketNotFound" in missing.stderr.splitlines()[-1]
    assert "Traceback" not in missing.stderr
