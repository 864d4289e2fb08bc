"""Reliability under faults (issue 8, faults 2 and 3): the real `lifeboat` worker, real databases,
a real S3 server, and the faults done for real.

- Killed outright (SIGKILL to the worker's process group, as when a Pod's node dies or the OOM
  killer strikes): nothing ever looks like a backup, and what the kill left (a multipart upload, a
  directory's temp file, a MySQL restore's staged tables) is found and removed by the next run for
  the same location or database, proven by asking the server itself.
- The S3 server gone mid-upload or mid-download (connections refused and reset, or the server
  hung by SIGSTOP): the worker retries with backoff and finishes; gone for good, it fails with
  StorageUnreachable within its storage timeout.

Kills and outages happen at measured points (the worker's JSON progress lines), never after a
sleep. Outages last a fixed time because their length is the fault under test. The ~30 s outage
runs with `-m faults` (`make test-faults`); the others take the 10 s the retry budget allows.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest

from lifeboat.contract import ExitCode
from tests.support import mariadb as maria
from tests.support.databases import big_postgres, damage, lifeboat, listed, make_database
from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Bucket
from tests.support.s3_outage import OutageBucket
from tests.support.worker_process import Snapshot, Worker

MIB = 2**20
BIG_ROWS = 400_000
"""About 30 MiB of plain dump: several 8 MiB parts, so a multipart upload is under way."""
PAST_TWO_PARTS = 20 * MIB
LINK = 10 * MIB
"""Bytes per second through the outage server's front: a backup of BIG_ROWS takes ~3 s."""
OUTAGE_SECONDS = 10.0


def gives_up_with_s3_down(worker: Worker, outage_bucket: OutageBucket) -> str:
    """Stop S3 for good under a worker started with `--storage-timeout 4`: it must fail with
    StorageUnreachable within the timeout plus one attempt (2 s) plus slack; its error line."""
    outage_bucket.server.stop()
    stopped = time.monotonic()
    code, _, err = worker.finish(timeout=60)
    took = time.monotonic() - stopped
    assert code == ExitCode.STORAGE, err
    line = last_line(err)
    assert line.startswith("lifeboat: error: StorageUnreachable: "), line
    assert "storage timeout of 4 s" in line
    assert took < 4 + 2 + 4, f"the worker took {took:.1f} s to give up"
    return line


def uploading(snapshot: Snapshot) -> bool:
    return bool(snapshot["stage"] == "dumping" and snapshot["bytes_done"] > PAST_TWO_PARTS)


def restoring(snapshot: Snapshot) -> bool:
    return bool(snapshot["stage"] == "restoring" and snapshot["percent"] >= 10)


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


# Killed outright


def test_a_backup_killed_mid_upload_is_no_backup_and_the_next_run_aborts_its_upload(
    request: pytest.FixtureRequest, outage_bucket: OutageBucket
) -> None:
    db = big_postgres(request, BIG_ROWS)
    s3_bucket = outage_bucket.bucket
    env = {**db.env, **s3_bucket.env}
    url = s3_bucket.url("team/run")
    client, bucket = outage_bucket.inspector(), s3_bucket.bucket
    outage_bucket.server.throttle(LINK)
    # Uploads that are not this backup's: a deeper prefix (another backup), another name here.
    foreign = [
        (key, client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])
        for key in ("team/run/nested/postgresql.dump", "team/run/notes.txt", "team/postgresql.dump")
    ]

    worker = Worker("backup", db.url, url, "--compression", "none", env=env)
    worker.wait_for(uploading)
    worker.kill()
    outage_bucket.server.throttle(None)

    # Listing and a restore say the same: there is no backup here.
    assert listed(s3_bucket.url("team"), s3_bucket.env) == []
    stored = outage_bucket.object_keys()
    assert not any(key.endswith("manifest.json") for key in stored), stored
    refused = lifeboat("restore", url, db.url, env=env)
    assert refused.returncode == ExitCode.STORAGE
    assert "BackupNotFound" in last_line(refused.stderr)
    before = sorted(
        (u["Key"], u["UploadId"])
        for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    )
    killed = [u for u in before if u[0] == "team/run/postgresql.dump"]
    assert len(killed) == 1, f"the killed worker's upload is not in the bucket: {before}"

    done = lifeboat("backup", db.url, url, "--output", "json", "--progress", "none", env=env)

    assert done.returncode == 0, done.stderr
    after = sorted(
        (u["Key"], u["UploadId"])
        for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    )
    assert after == sorted(foreign), "only the killed worker's own upload is aborted"
    assert killed[0][1] in json.loads(done.stdout)["notes"][0]
    assert "removed what an interrupted backup of this location left" in done.stderr
    assert [b["location"] for b in listed(s3_bucket.url("team"), s3_bucket.env)] == [url]


def test_a_backup_goes_on_when_its_credentials_may_not_list_leftover_uploads(
    request: pytest.FixtureRequest, tmp_path: Path, s3_bucket: S3Bucket
) -> None:
    """Cleaning up is a courtesy: a policy without s3:ListBucketMultipartUploads still backs up."""
    iam = boto3.client(
        "iam",
        endpoint_url=s3_bucket.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )
    user = f"lifeboat-no-uploads-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    statements = [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": "s3:ListBucketMultipartUploads", "Resource": "*"},
    ]
    iam.put_user_policy(
        UserName=user,
        PolicyName="s3-without-upload-listing",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    key = iam.create_access_key(UserName=user)["AccessKey"]
    request.getfixturevalue("s3_enforced_auth")
    db = make_database(request, "sqlite", tmp_path)
    env = {
        **db.env,
        **s3_bucket.env,
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }

    done = lifeboat("backup", db.url, s3_bucket.url("limited"), "--progress", "none", env=env)

    assert done.returncode == 0, done.stderr
    assert "leftovers of interrupted backups were not looked for" in done.stderr
    assert "s3:ListBucketMultipartUploads" in done.stderr
    assert [b["path"] for b in listed(s3_bucket.url(), env)] == ["limited/"]


def test_a_directory_backup_killed_mid_write_leaves_only_a_temp_file_the_next_run_removes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = big_postgres(request, BIG_ROWS)
    location = tmp_path / "backups" / "run"

    worker = Worker("backup", db.url, str(location), "--compression", "none", env=db.env)
    # A local disk takes the dump faster than the worker reports progress: watch the file itself.
    deadline = time.monotonic() + 120
    while not _growing_temp_file(location, 4 * MIB):
        assert worker.proc.poll() is None, "the backup ended before it could be killed"
        assert time.monotonic() < deadline, "the backup never wrote 4 MiB"
        time.sleep(0.005)
    worker.kill()

    left = sorted(p.name for p in location.iterdir())
    assert len(left) == 1, left
    assert re.fullmatch(r"\.postgresql\.dump\.partial-[0-9a-f]{12}", left[0]), left
    assert (location / left[0]).stat().st_size >= 4 * MIB
    assert listed(str(tmp_path / "backups"), {}) == []
    refused = lifeboat("restore", str(location), db.url, env=db.env)
    assert "BackupNotFound" in last_line(refused.stderr)

    done = lifeboat("backup", db.url, str(location), "--progress", "none", env=db.env)

    assert done.returncode == 0, done.stderr
    assert (
        f"removed what an interrupted backup of this location left: {location.as_uri()}/{left[0]}"
        in (done.stderr)
    )
    assert sorted(p.name for p in location.iterdir()) == ["manifest.json", "postgresql.dump.zst"]


def _growing_temp_file(location: Path, size: int) -> bool:
    """Whether a write in flight (a hidden `.partial-` file) holds at least `size` bytes."""
    with contextlib.suppress(FileNotFoundError):  # not created yet, or renamed meanwhile
        return any(p.stat().st_size >= size for p in location.glob(".*.partial-*"))
    return False


def _tables(raw: maria.MariaDBDatabase) -> list[str]:
    """The server's own table list of the database, as root."""
    with contextlib.closing(raw.server.root(raw.name)) as conn, conn.cursor() as cur:
        cur.execute("SHOW FULL TABLES")
        return sorted(str(row[0]) for row in cur.fetchall())


def _wait_until_no_sessions(raw: maria.MariaDBDatabase, deadline_s: float = 60) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with contextlib.closing(raw.server.root()) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.processlist "
                "WHERE db = %s AND id <> CONNECTION_ID()",
                (raw.name,),
            )
            row = cur.fetchone()
        if row is not None and row[0] == 0:
            return
        time.sleep(0.1)
    raise AssertionError("the killed restore's client is still connected")


def test_a_mysql_restore_killed_midway_leaves_staged_tables_the_next_restore_removes(
    request: pytest.FixtureRequest, s3_bucket: S3Bucket
) -> None:
    raw: maria.MariaDBDatabase = request.getfixturevalue("mariadb_databases").create()
    raw.execute(
        "CREATE TABLE big (id INT PRIMARY KEY, payload VARCHAR(64) NOT NULL)",
        "INSERT INTO big SELECT seq, CONCAT(MD5(seq), MD5(seq * 7)) FROM seq_1_to_300000",
        "CREATE TABLE small (id INT PRIMARY KEY)",
        "INSERT INTO small VALUES (1), (2), (3)",
    )
    env = {**raw.env, **s3_bucket.env}
    url = s3_bucket.url("maria")
    backup = lifeboat("backup", raw.url, url, "--progress", "none", env=env)
    assert backup.returncode == 0, backup.stderr
    raw.execute("DELETE FROM big WHERE id % 2 = 0")
    before = maria.fingerprint(raw)
    assert _tables(raw) == ["big", "small"]

    worker = Worker("restore", url, raw.url, "--no-verify-first", env=env)
    worker.wait_for(restoring)
    worker.kill()
    _wait_until_no_sessions(raw)

    staged = [t for t in _tables(raw) if t.startswith(maria.RESERVED_PREFIX)]
    assert staged, "the killed restore staged nothing: the kill came too late"
    assert all(re.fullmatch(r"__lifeboat_[0-9a-z]+_s\d+_\w+", t) for t in staged), staged
    assert maria.fingerprint(raw) == before, "the target's own tables changed"

    done = lifeboat("restore", url, raw.url, "--progress", "none", env=env)

    assert done.returncode == 0, done.stderr
    assert _tables(raw) == ["big", "small"]
    assert raw.row_counts() == {"big": 300_000, "small": 3}


# S3 gone for a while, or for good


def _backup_through_outage(
    outage_bucket: OutageBucket,
    request: pytest.FixtureRequest,
    fault: str,
    seconds: float,
    *extra: str,
) -> None:
    """Back up, take S3 away mid-upload for `seconds`, and prove the backup completes whole."""
    db = big_postgres(request, BIG_ROWS)
    server, s3 = outage_bucket.server, outage_bucket.bucket
    env = {**db.env, **s3.env}
    url = s3.url("outage")
    alive_when_back: list[bool] = []

    server.throttle(LINK)
    worker = Worker("backup", db.url, url, "--compression", "none", *extra, env=env)
    worker.wait_for(uploading)
    if fault == "stop":
        server.stop()
    else:
        server.freeze()

    def back() -> None:
        alive_when_back.append(worker.proc.poll() is None)
        server.start() if fault == "stop" else server.thaw()

    timer = threading.Timer(seconds, back)
    timer.start()
    try:
        code, _, err = worker.finish()
    finally:
        timer.cancel()
    assert alive_when_back == [True], "the worker ended during the outage"
    assert code == 0, err
    assert outage_bucket.uploads() == []
    assert outage_bucket.object_keys() == ["outage/manifest.json", "outage/postgresql.dump"]
    # The stored artifact is whole: its size and SHA-256 are checked against the manifest.
    server.throttle(None)
    check = lifeboat("restore", url, db.url, "--dry-run", "--progress", "none", env=env)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("fault", ["stop", "freeze"])
def test_a_backup_survives_s3_going_away_for_10_s_mid_upload(
    request: pytest.FixtureRequest, outage_bucket: OutageBucket, fault: str
) -> None:
    """stop: connections refused and reset (a restart); freeze: a hung server (SIGSTOP)."""
    _backup_through_outage(outage_bucket, request, fault, OUTAGE_SECONDS, "--storage-timeout", "30")


@pytest.mark.faults
@pytest.mark.parametrize("fault", ["stop", "freeze"])
def test_a_backup_survives_a_30_s_s3_outage_with_the_default_storage_timeout(
    request: pytest.FixtureRequest, outage_bucket: OutageBucket, fault: str
) -> None:
    _backup_through_outage(outage_bucket, request, fault, 30.0)


def test_a_backup_fails_with_storage_unreachable_within_its_timeout_when_s3_stays_down(
    request: pytest.FixtureRequest, outage_bucket: OutageBucket
) -> None:
    db = big_postgres(request, BIG_ROWS)
    s3 = outage_bucket.bucket
    url = s3.url("down")
    outage_bucket.server.throttle(LINK)
    worker = Worker(
        "backup",
        db.url,
        url,
        "--compression",
        "none",
        "--storage-timeout",
        "4",
        env={**db.env, **s3.env},
    )
    worker.wait_for(uploading)
    line = gives_up_with_s3_down(worker, outage_bucket)
    assert "--storage-timeout" in line
    outage_bucket.server.start()
    assert outage_bucket.object_keys() == []


def test_a_restore_download_survives_s3_refusing_connections_for_10_s(
    request: pytest.FixtureRequest, outage_bucket: OutageBucket
) -> None:
    db = big_postgres(request, BIG_ROWS)
    s3 = outage_bucket.bucket
    env = {**db.env, **s3.env}
    url = s3.url("restore")
    backup = lifeboat("backup", db.url, url, "--compression", "none", "--progress", "none", env=env)
    assert backup.returncode == 0, backup.stderr
    original = db.fingerprint()
    damage(db)
    alive_when_back: list[bool] = []

    outage_bucket.server.throttle(LINK)
    worker = Worker("restore", url, db.url, "--no-verify-first", "--storage-timeout", "30", env=env)
    worker.wait_for(restoring)
    outage_bucket.server.stop()

    def back() -> None:
        alive_when_back.append(worker.proc.poll() is None)
        outage_bucket.server.start()

    timer = threading.Timer(OUTAGE_SECONDS, back)
    timer.start()
    try:
        code, _, err = worker.finish()
    finally:
        timer.cancel()
    assert alive_when_back == [True], "the restore ended during the outage"
    assert code == 0, err
    assert db.fingerprint() == original


def test_a_restore_fails_within_its_timeout_when_s3_stays_down_and_the_target_is_unchanged(
    request: pytest.FixtureRequest, outage_bucket: OutageBucket
) -> None:
    db = big_postgres(request, BIG_ROWS)
    s3 = outage_bucket.bucket
    env = {**db.env, **s3.env}
    url = s3.url("restore")
    backup = lifeboat("backup", db.url, url, "--compression", "none", "--progress", "none", env=env)
    assert backup.returncode == 0, backup.stderr
    damage(db)
    before = db.fingerprint()

    outage_bucket.server.throttle(LINK)
    worker = Worker("restore", url, db.url, "--no-verify-first", "--storage-timeout", "4", env=env)
    worker.wait_for(restoring)
    gives_up_with_s3_down(worker, outage_bucket)
    assert db.fingerprint() == before
