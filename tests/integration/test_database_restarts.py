"""The database server restarted under a running backup or restore (issue 8, fault 4).

The real `lifeboat` worker runs against a PostgreSQL cluster or a mariadbd of this module's own
(tests/support/restartable_servers.py: the session's shared servers are never restarted) and
the real S3 server, slowed to a 10 MiB/s link so that the work is still under way when the test
acts. When the worker's progress shows bytes flowing, the server is restarted, cleanly
(`pg_ctl restart -m fast`; mariadbd stopped with SIGTERM) or as in a crash (`-m immediate`;
mariadbd SIGKILLed, InnoDB recovering at start), on the same data directory and port:

- a backup fails cleanly: a typed error line and a non-zero exit code a Job retries, no
  manifest (`lifeboat list` finds nothing, the bucket holds no object and no upload), and the
  same backup succeeds once the server is back;
- a restore fails the same way and leaves the target as it was (its whole-database fingerprint
  is unchanged); for MariaDB, the staged tables the broken session could not drop are removed
  by the next restore, which succeeds.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lifeboat.contract import ExitCode
from tests.support import mariadb as maria
from tests.support import postgres as pg
from tests.support.databases import Database, lifeboat, listed
from tests.support.restartable_servers import RestartableMariaDB, RestartablePostgres
from tests.support.s3_outage import OutageBucket
from tests.support.shared_targets import owned_pg_database
from tests.support.worker_process import Snapshot, Worker, last_line

MIB = 2**20
ROWS = 500_000
"""About 37 MiB of plain dump."""
SLOW_LINK = 3 * MIB
"""Bytes per second through the S3 server's front for a backup: the dump tool and the upload's
buffered parts run ahead of the link by some MiB, and the server must still be streaming when it
restarts."""
LINK = 10 * MIB
"""For a restore, which the link leads: the database is always behind it."""


def dumping(snapshot: Snapshot) -> bool:
    return bool(snapshot["stage"] == "dumping" and snapshot["bytes_done"] > 0)


def restoring(snapshot: Snapshot) -> bool:
    return bool(snapshot["stage"] == "restoring" and snapshot["percent"] >= 10)


@dataclass
class Target:
    db: Database
    restart: Any
    leftovers: Any = None


@pytest.fixture(scope="module")
def big_postgres(restartable_postgres: RestartablePostgres) -> Iterator[Target]:
    with contextlib.ExitStack() as stack:
        raw: pg.PgDatabase = owned_pg_database(restartable_postgres.server, stack)
        raw.execute(
            "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload "
            f"FROM generate_series(1, {ROWS}) g"
        )
        raw.execute("ALTER TABLE big ADD PRIMARY KEY (id)")
        raw.execute("CREATE TABLE small (id int PRIMARY KEY)")
        raw.execute("INSERT INTO small VALUES (1), (2), (3)")
        db = Database(
            url=raw.url,
            env=raw.env,
            fingerprint=raw.fingerprint,
            execute=raw.execute,
            orders_table="big",
        )
        yield Target(db=db, restart=restartable_postgres.restart)


@pytest.fixture(scope="module")
def big_mariadb(restartable_mariadb: RestartableMariaDB) -> Iterator[Target]:
    factory = maria.MariaDBDatabases(restartable_mariadb.server)
    try:
        raw = factory.create()
        raw.execute(
            "CREATE TABLE big (id INT PRIMARY KEY, payload VARCHAR(64) NOT NULL)",
            f"INSERT INTO big SELECT seq, CONCAT(MD5(seq), MD5(seq * 7)) FROM seq_1_to_{ROWS}",
            "CREATE TABLE small (id INT PRIMARY KEY)",
            "INSERT INTO small VALUES (1), (2), (3)",
        )
        db = Database(
            url=raw.url,
            env=raw.env,
            fingerprint=lambda: maria.fingerprint(raw),
            execute=lambda statement: raw.execute(statement),
            orders_table="big",
        )
        yield Target(db=db, restart=restartable_mariadb.restart, leftovers=raw.leftovers)
    finally:
        factory.cleanup()


def _target(request: pytest.FixtureRequest, engine: str) -> Target:
    target: Target = request.getfixturevalue(f"big_{engine}")
    return target


def restarted_under(
    worker: Worker,
    ready: Callable[[Snapshot], bool],
    target: Target,
    bucket: OutageBucket,
    link: int,
    *,
    crash: bool,
) -> str:
    """Restart the server once `ready` holds for the worker's progress (the S3 link slowed to
    `link` bytes/s meanwhile); the worker's error line, checked to be a lost connection."""
    bucket.server.throttle(link)
    try:
        worker.wait_for(ready)
        target.restart(crash=crash)
        code, _, err = worker.finish(timeout=60)
    finally:
        bucket.server.throttle(None)
    line = last_line(err)
    assert code == ExitCode.DATABASE, err
    assert line.startswith("lifeboat: error: DatabaseUnreachable: "), line
    assert "was lost" in line, line
    assert "Traceback" not in err
    return line


@pytest.mark.faults
@pytest.mark.parametrize("engine", ["postgres", "mariadb"])
@pytest.mark.parametrize("how", ["clean", "crash"])
def test_a_server_restarted_mid_dump_fails_the_backup_cleanly_and_leaves_no_backup(
    request: pytest.FixtureRequest, outage_bucket: OutageBucket, engine: str, how: str
) -> None:
    target = _target(request, engine)
    db, s3 = target.db, outage_bucket.bucket
    env = {**db.env, **s3.env}
    url = s3.url("restarted/run")

    worker = Worker("backup", db.url, url, "--compression", "none", env=env)
    line = restarted_under(worker, dumping, target, outage_bucket, SLOW_LINK, crash=how == "crash")
    assert "no backup was written" in line, line
    assert listed(s3.url("restarted"), s3.env) == []
    assert outage_bucket.object_keys() == [], "a failed backup left objects behind"
    assert outage_bucket.uploads() == [], "a failed backup left its upload open"


@pytest.mark.faults
@pytest.mark.parametrize("engine", ["postgres", "mariadb"])
@pytest.mark.parametrize("how", ["clean", "crash"])
def test_a_server_restarted_mid_restore_fails_it_cleanly_and_the_target_is_unchanged(
    request: pytest.FixtureRequest, outage_bucket: OutageBucket, engine: str, how: str
) -> None:
    target = _target(request, engine)
    db, s3 = target.db, outage_bucket.bucket
    env = {**db.env, **s3.env}
    url = s3.url(f"restore-source-{how}")
    # The database is the module's: start from the same state whatever ran before.
    db.execute("DROP TABLE IF EXISTS late_table")
    db.execute("DELETE FROM small WHERE id = 2")
    db.execute("INSERT INTO small VALUES (2)")
    backup = lifeboat("backup", db.url, url, "--compression", "none", "--progress", "none", env=env)
    assert backup.returncode == 0, backup.stderr
    original = db.fingerprint()
    db.execute("DELETE FROM small WHERE id = 2")
    db.execute("CREATE TABLE late_table (id INT)")
    before = db.fingerprint()

    worker = Worker("restore", url, db.url, "--no-verify-first", env=env)
    line = restarted_under(worker, restoring, target, outage_bucket, LINK, crash=how == "crash")
    assert "the target" in line, line
    assert "a retry may succeed" in line, line
    assert db.fingerprint() == before, "the interrupted restore changed the target"

    if target.leftovers is None:
        return
    # MariaDB: the staged tables the cut session could not drop are removed by the next restore
    # (a Job's retry), which completes now that the server is back.
    left = target.leftovers()
    assert left, "the restore was cut before it staged anything: the restart came too early"
    again = lifeboat("restore", url, db.url, "--output", "json", "--progress", "none", env=env)
    assert again.returncode == 0, again.stderr
    notes = json.loads(again.stdout)["notes"]
    assert any(n.startswith("removed the staged tables an interrupted restore left") for n in notes)
    assert "lifeboat: note: removed the staged tables" in again.stderr
    assert target.leftovers() == []
    assert db.fingerprint() == original
