"""Restore drills against real servers: `lifeboat drill` as a Job runs it, with real PostgreSQL,
MariaDB and SQLite, an S3 server over HTTP, and the logins managed databases hand out (a
PostgreSQL database owner or a drill role with CREATEDB and nothing else; a MariaDB user with
privileges on its own database and the reserved drill names only), never a superuser.

What must hold: a drill of a good backup passes, reports its duration and row counts, stores its
report next to the backup, leaves no database behind and never touches the source (a fingerprint
of the whole source database before and after); a backup that restores badly in a way its checksum
cannot see (a tablespace the drill server lacks, a check that fails) fails the drill with the
database's own error and leaves nothing behind; a drill whose worker is killed leaves its
database to the next drill, which drops it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from lifeboat.api import DrillReport
from lifeboat.cli.demo import create_shop
from lifeboat.cli.demo import fingerprint as sqlite_fingerprint
from lifeboat.contract import ExitCode, drill_database_name, drill_prefix, parse_error_line
from lifeboat.worker.engines.postgres.throwaway import lock_key
from tests.support import mariadb as maria
from tests.support import postgres as pg
from tests.support.databases import lifeboat
from tests.support.s3 import S3Bucket

ORDERS = {"name": "orders", "query": "SELECT count(*) FROM shop.orders", "expect": "40"}
TAKEN_AFTER = {
    "name": "data-older-than-the-backup",
    "query": "SELECT max(created_at) <= TIMESTAMPTZ ${BACKUP_TIME} FROM shop.customers",
    "expect": "true",
}
LIKE = {  # a % in a query is the query's, not a placeholder
    "name": "customers",
    "query": "SELECT count(*) FROM shop.customers WHERE name LIKE 'customer %'",
    "expect": str(len(pg.AWKWARD_TEXTS)),
}


def new_id() -> str:
    return uuid.uuid4().hex[:8]


def error_of(done: subprocess.CompletedProcess[str]) -> tuple[str | None, str]:
    parsed = parse_error_line(done.stderr)
    assert parsed is not None, done.stderr
    return parsed


def report_of(done: subprocess.CompletedProcess[str]) -> DrillReport:
    """The report the worker printed (--output json), checked against the API model."""
    return DrillReport.model_validate(json.loads(done.stdout))


def stored_reports(bucket: S3Bucket, prefix: str) -> list[dict[str, Any]]:
    listed = bucket.keys()
    keys = [k for k in listed if k.startswith(f"{prefix}/drills/")]
    return [
        json.loads(bucket.client.get_object(Bucket=bucket.bucket, Key=key)["Body"].read())
        for key in keys
    ]


# -- PostgreSQL ---------------------------------------------------------------------------------


def pg_drill_url(db: pg.PgDatabase, drill: str, *, user: str | None = None) -> str:
    name = drill_database_name(db.name, drill)
    return f"postgresql://{user or db.user}@{db.server.host}:{db.server.port}/{name}"


def pg_leftovers(server: pg.PostgresServer, source: str) -> list[str]:
    """Databases with the source's reserved drill prefix, as the superuser sees them."""
    prefix = drill_prefix(source).replace("_", "\\_")
    with server.connect() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)
        ).fetchall()
    return sorted(str(r[0]) for r in rows)


@pytest.fixture
def pg_shop(pg_database_factory: pg.PgDatabaseFactory) -> pg.PgDatabase:
    """A seeded database whose owner may create databases (what a same-server drill needs)."""
    db = pg_database_factory(createdb=True)
    pg.seed_sample_schema(db, large_object=False)
    return db


def back_up(db_url: str, location: str, env: dict[str, str]) -> dict[str, Any]:
    done = lifeboat("backup", db_url, location, "--progress", "none", "--output", "json", env=env)
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def drill(
    location: str, target: str, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    return lifeboat(
        "drill", location, target, "--output", "json", "--progress", "none", *extra, env=env
    )


def test_a_postgres_drill_passes_reports_its_evidence_and_leaves_nothing(
    pg_shop: pg.PgDatabase, s3_bucket: S3Bucket
) -> None:
    location = s3_bucket.url("team/shop-db")
    env = {**pg_shop.env, **s3_bucket.env}
    summary = back_up(pg_shop.url, location, env)
    before = pg_shop.fingerprint()
    counts = pg_shop.row_counts()
    drill_id = new_id()
    checks = json.dumps([ORDERS, TAKEN_AFTER, LIKE])

    done = drill(
        location, pg_drill_url(pg_shop, drill_id), env, "--checks", checks,
        "--requested-by", "RestoreDrill shop/shop-db-drill",
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    report = report_of(done)
    assert (report.passed, report.reason) == (True, "DrillPassed")
    assert report.restore_seconds is not None
    assert report.restore_seconds > 0
    assert report.total_seconds is not None
    assert report.total_seconds >= report.restore_seconds
    assert report.checksum_verified is True
    assert report.row_counts_matched is True
    assert report.tables_verified == len(counts)
    assert report.rows_verified == sum(counts.values())
    assert [(c.name, c.passed, c.actual) for c in report.checks or ()] == [
        ("orders", True, "40"),
        ("data-older-than-the-backup", True, "true"),
        ("customers", True, str(len(pg.AWKWARD_TEXTS))),
    ]
    assert report.drill_database == drill_database_name(pg_shop.name, drill_id)
    assert report.server == f"{pg_shop.server.host}:{pg_shop.server.port}"
    assert report.login == pg_shop.user
    assert report.cleaned_up is True
    assert report.backup_sha256 == summary["sha256"]
    assert report.source_database == pg_shop.name
    # Nothing is left, and the source was never touched.
    assert pg_leftovers(pg_shop.server, pg_shop.name) == []
    assert pg_shop.fingerprint() == before
    # The evidence is in the bucket, next to the backup, and parses.
    [stored] = stored_reports(s3_bucket, "team/shop-db")
    assert stored["kind"] == "LifeboatDrillReport"
    assert stored["reportUri"] == report.report_uri
    assert stored["requestedBy"] == "RestoreDrill shop/shop-db-drill"
    assert stored["manifest"] == f"{location}manifest.json"
    assert DrillReport.model_validate(stored).model_dump() == report.model_dump()
    assert pg_shop.password not in done.stdout + done.stderr + json.dumps(stored)


def test_a_check_that_fails_fails_the_drill_with_the_databases_answer_and_leaves_nothing(
    pg_shop: pg.PgDatabase, s3_bucket: S3Bucket
) -> None:
    location = s3_bucket.url("team/shop-db")
    env = {**pg_shop.env, **s3_bucket.env}
    back_up(pg_shop.url, location, env)
    before = pg_shop.fingerprint()
    stale = {  # the newest customer is years older than the backup
        "name": "fresh-customers",
        "query": "SELECT max(created_at) > TIMESTAMPTZ ${BACKUP_TIME} - interval '1 day' "
        "FROM shop.customers",
        "expect": "true",
    }
    missing = {"name": "invoices", "query": "SELECT count(*) FROM shop.invoices", "expect": "0"}

    done = drill(
        location, pg_drill_url(pg_shop, new_id()), env,
        "--checks", json.dumps([stale, missing, ORDERS]),
    )  # fmt: skip

    assert done.returncode == ExitCode.VERIFICATION, done.stderr
    reason, message = error_of(done)
    assert reason == "DrillCheckFailed"
    assert "check 'fresh-customers' returned 'false', expected 'true'" in message
    assert "check 'invoices' failed: relation \"shop.invoices\" does not exist" in message
    assert "(1 of 3 checks passed)" in message
    report = report_of(done)
    assert (report.passed, report.reason, report.failed_check) == (
        False,
        "DrillCheckFailed",
        "fresh-customers",
    )
    assert report.row_counts_matched is True  # the restore itself was proven
    assert [c.passed for c in report.checks or ()] == [False, False, True]
    assert report.cleaned_up is True
    assert pg_leftovers(pg_shop.server, pg_shop.name) == []
    assert pg_shop.fingerprint() == before
    [stored] = stored_reports(s3_bucket, "team/shop-db")
    assert (stored["passed"], stored["failedCheck"]) == (False, "fresh-customers")


def test_a_drill_refuses_a_database_that_is_not_reserved(
    pg_shop: pg.PgDatabase, s3_bucket: S3Bucket
) -> None:
    location = s3_bucket.url("team/shop-db")
    env = {**pg_shop.env, **s3_bucket.env}
    back_up(pg_shop.url, location, env)
    before = pg_shop.fingerprint()

    done = drill(location, pg_shop.url, env)  # the source itself: never

    assert done.returncode == ExitCode.USAGE
    reason, message = error_of(done)
    assert reason == "InvalidArgument"
    assert "a drill only creates and drops databases named" in message
    assert pg_shop.fingerprint() == before
    listed = s3_bucket.keys()
    assert not [k for k in listed if "/drills/" in k]


def test_a_postgres_drill_with_drill_credentials_of_its_own_needs_createdb_only(
    pg_database_factory: pg.PgDatabaseFactory,
    pg_role_factory: pg.PgRoleFactory,
    s3_bucket: S3Bucket,
) -> None:
    shop = pg_database_factory()  # the application's owner: no CREATEDB, and none given
    pg.seed_sample_schema(shop, large_object=False)
    location = s3_bucket.url("team/shop")
    back_up(shop.url, location, {**shop.env, **s3_bucket.env})
    before = shop.fingerprint()
    drills = pg_role_factory("lifeboat_drill")
    with shop.server.connect() as conn:  # CREATE ROLE lifeboat_drill LOGIN CREATEDB, nothing else
        conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(drills.name)))
    env = {**drills.env, **s3_bucket.env}
    url = pg_drill_url(shop, new_id(), user=drills.name)

    owned = drill(location, url, env)  # without noOwner it would give objects to the owner role
    assert owned.returncode == ExitCode.REFUSED, owned.stderr
    assert error_of(owned)[0] in ("InsufficientPrivilege", "RoleMissing")
    assert "--no-owner" in error_of(owned)[1]
    assert pg_leftovers(shop.server, shop.name) == []

    done = drill(location, url, env, "--no-owner", "--checks", json.dumps([ORDERS]))

    assert done.returncode == 0, done.stderr
    report = report_of(done)
    assert report.passed is True
    assert report.login == drills.name
    assert pg_leftovers(shop.server, shop.name) == []
    assert shop.fingerprint() == before


def test_a_postgres_drill_without_createdb_is_refused_naming_the_grant(
    pg_database_factory: pg.PgDatabaseFactory,
    pg_role_factory: pg.PgRoleFactory,
    s3_bucket: S3Bucket,
) -> None:
    shop = pg_database_factory()
    pg.seed_sample_schema(shop, large_object=False)
    location = s3_bucket.url("team/shop")
    back_up(shop.url, location, {**shop.env, **s3_bucket.env})
    nobody = pg_role_factory("nobody")

    done = drill(location, pg_drill_url(shop, new_id(), user=nobody.name),
                 {**nobody.env, **s3_bucket.env}, "--no-owner")  # fmt: skip

    assert done.returncode == ExitCode.REFUSED
    reason, message = error_of(done)
    assert reason == "InsufficientPrivilege"
    assert f"ALTER ROLE {nobody.name} CREATEDB" in message
    assert pg_leftovers(shop.server, shop.name) == []
    assert report_of(done).cleaned_up is True


@pytest.fixture(scope="module")
def drill_server() -> Iterator[pg.PostgresServer]:
    """A second PostgreSQL cluster: a separate drill server, without the source's tablespaces
    and roles."""
    with pg.own_cluster() as server:
        yield server


@pytest.fixture
def tablespace(pg_shop: pg.PgDatabase) -> Iterator[str]:
    """A tablespace on the source server (made by its superuser) that the shop's owner may use;
    dropped after the test, with the shop database first (a tablespace in use cannot go)."""
    name = f"fast_{new_id()}"
    directory = Path(tempfile.mkdtemp(prefix="lifeboat-tablespace-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    with pg_shop.server.connect() as conn:
        conn.execute(
            sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(
                sql.Identifier(name), sql.Literal(str(directory))
            )
        )
        conn.execute(
            sql.SQL("GRANT CREATE ON TABLESPACE {} TO {}").format(
                sql.Identifier(name), sql.Identifier(pg_shop.user)
            )
        )
    try:
        yield name
    finally:
        pg_shop.server.drop_database(pg_shop.name)
        with pg_shop.server.connect() as conn, contextlib.suppress(psycopg.Error):
            conn.execute(sql.SQL("DROP TABLESPACE IF EXISTS {}").format(sql.Identifier(name)))
        shutil.rmtree(directory, ignore_errors=True)


def test_a_backup_needing_a_tablespace_the_drill_server_lacks_fails_with_the_servers_error(
    pg_shop: pg.PgDatabase, drill_server: pg.PostgresServer, tablespace: str, s3_bucket: S3Bucket
) -> None:
    """The checksum is right and the dump is whole: only restoring it elsewhere shows that it
    needs what the production server has and the recovery server does not."""
    pg_shop.execute(
        sql.SQL("CREATE TABLE shop.hot (id int) TABLESPACE {}").format(sql.Identifier(tablespace))
    )
    pg_shop.execute("INSERT INTO shop.hot SELECT generate_series(1, 10)")
    location = s3_bucket.url("team/shop-db")
    back_up(pg_shop.url, location, {**pg_shop.env, **s3_bucket.env})
    before = pg_shop.fingerprint()
    password, login = "pw-" + uuid.uuid4().hex, f"lifeboat_drill_{new_id()}"
    with drill_server.connect() as conn:  # the drill server's own login: CREATEDB, nothing else
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                sql.Identifier(login), sql.Literal(password)
            )
        )
    name = drill_database_name(pg_shop.name, new_id())
    url = f"postgresql://{login}@{drill_server.host}:{drill_server.port}/{name}"

    done = drill(
        location, url, {"LIFEBOAT_DB_PASSWORD": password, **s3_bucket.env},
        "--no-owner", "--no-privileges",
    )  # fmt: skip

    assert done.returncode == ExitCode.VERIFICATION, done.stderr
    reason, message = error_of(done)
    assert reason == "RestoreFailed"
    assert "the transaction was rolled back" in message
    assert f'"{tablespace}"' in message  # the server's own words name the missing tablespace
    report = report_of(done)
    assert (report.passed, report.checksum_verified, report.cleaned_up) == (False, None, True)
    assert report.server == f"{drill_server.host}:{drill_server.port}"
    assert pg_leftovers(drill_server, pg_shop.name) == []
    assert pg_leftovers(pg_shop.server, pg_shop.name) == []
    assert pg_shop.fingerprint() == before
    [stored] = stored_reports(s3_bucket, "team/shop-db")
    assert stored["reason"] == "RestoreFailed"
    assert " ".join(stored["message"].split()) == message  # the error line is one line


# -- a killed worker ---------------------------------------------------------------------------

_KILLED_DRILL = """
import sys, threading
from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.drill import DrillRequest, run_drill
from lifeboat.worker.pipeline import load_manifest
from lifeboat.worker.progress import Progress
from lifeboat.worker.storage import open_storage

storage = open_storage(sys.argv[1])
artifact = load_manifest(storage).artifact

class Hangs:
    '''The artifact's reader stops for good halfway through, as a worker would that is about
    to be killed: the throwaway database exists and is half loaded.'''
    def __init__(self, inner):
        self.inner, self.done = inner, 0
    def read(self, n=-1):
        if self.done >= artifact.size // 2:
            print("halfway", flush=True)
            threading.Event().wait()
        data = self.inner.read(min(n if n > 0 else 65536, 65536))
        self.done += len(data)
        return data

class HangingStorage:
    def __init__(self, inner):
        self.inner = inner
    def __getattr__(self, name):
        return getattr(self.inner, name)
    def open_reader(self, key):
        import contextlib
        @contextlib.contextmanager
        def reader():
            with self.inner.open_reader(key) as inner:
                yield Hangs(inner) if key == artifact.key else inner
        return reader()

run_drill(HangingStorage(storage), parse_database_url(sys.argv[2]), Progress("drill"),
          DrillRequest(verify_first=False))
"""


def noise_postgres(db: pg.PgDatabase) -> None:
    """Incompressible rows, so that half the artifact is well past the archive's header."""
    db.execute(
        "CREATE TABLE public.noise AS SELECT g AS id, md5(random()::text) || md5(g::text) AS v "
        "FROM generate_series(1, 40000) g"
    )


def noise_mariadb(db: maria.MariaDBDatabase) -> None:
    db.execute(
        "CREATE TABLE noise (id INT PRIMARY KEY, v VARCHAR(64))",
        "INSERT INTO noise SELECT seq, CONCAT(MD5(RAND()), MD5(seq)) FROM seq_1_to_40000",
    )


def start_killable(location: str, url: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    worker = subprocess.Popen(
        [sys.executable, "-c", _KILLED_DRILL, location, url],
        stdout=subprocess.PIPE,
        env={**os.environ, **env},
        start_new_session=True,  # its pg_restore, psql or mariadb die with it, as in a Pod
    )
    assert worker.stdout is not None
    assert worker.stdout.readline() == b"halfway\n"
    return worker


def kill(worker: subprocess.Popen[bytes]) -> None:
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)


def pg_lock_released(db: pg.PgDatabase, name: str) -> bool:
    """The killed worker's session is gone: nobody holds its name's advisory lock."""
    with db.server.connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
            "AND objid::text::bigint = %s",
            (lock_key(name) & 0xFFFFFFFF,),
        ).fetchone()
    return row is not None and row[0] == 0


def test_a_killed_postgres_drill_leaves_its_database_to_the_next_drill_which_drops_it(
    pg_shop: pg.PgDatabase, s3_bucket: S3Bucket, wait_for: Any
) -> None:
    noise_postgres(pg_shop)
    location = s3_bucket.url("team/shop-db")
    env = {**pg_shop.env, **s3_bucket.env}
    back_up(pg_shop.url, location, env)
    before = pg_shop.fingerprint()
    killed_id = new_id()
    killed = drill_database_name(pg_shop.name, killed_id)

    worker = start_killable(location, pg_drill_url(pg_shop, killed_id), env)
    try:
        assert pg_leftovers(pg_shop.server, pg_shop.name) == [killed]  # created, half loaded
    finally:
        kill(worker)
    wait_for(lambda: pg_lock_released(pg_shop, killed), message="the killed session ended")
    assert pg_leftovers(pg_shop.server, pg_shop.name) == [killed]  # nobody dropped it

    done = drill(location, pg_drill_url(pg_shop, new_id()), env)

    assert done.returncode == 0, done.stderr
    assert report_of(done).leftovers_removed == [killed]
    assert pg_leftovers(pg_shop.server, pg_shop.name) == []
    assert pg_shop.fingerprint() == before


# -- MariaDB --------------------------------------------------------------------------------------


def grant_reserved_names(db: maria.MariaDBDatabase) -> None:
    """ALL PRIVILEGES on `<db>__lifeboat_drill_%`, the underscores escaped: what docs say."""
    pattern = drill_prefix(db.name).replace("_", "\\_") + "%"
    db.server.root_execute(f"GRANT ALL PRIVILEGES ON `{pattern}`.* TO {db.user.account}")


def maria_drill_url(db: maria.MariaDBDatabase, drill: str) -> str:
    name = drill_database_name(db.name, drill)
    return f"mariadb://{db.user.name}@{db.server.host}:{db.server.port}/{name}"


def maria_leftovers(db: maria.MariaDBDatabase) -> list[str]:
    prefix = drill_prefix(db.name)
    return sorted(d for d in db.server.databases() if d.startswith(prefix))


def test_a_mariadb_drill_with_all_privileges_on_the_reserved_names_passes(
    mariadb_databases: maria.MariaDBDatabases, s3_bucket: S3Bucket
) -> None:
    shop = mariadb_databases.create()
    counts = maria.seed_sample_schema(shop, bulk_rows=300)
    grant_reserved_names(shop)
    location = s3_bucket.url("team/orders")
    env = {**shop.env, **s3_bucket.env}
    back_up(shop.url, location, env)
    before = maria.fingerprint(shop)
    checks = [
        {"name": "orders", "query": "SELECT COUNT(*) FROM orders", "expect": "40"},
        {"name": "paid", "query": "SELECT COUNT(*) > 0 FROM orders WHERE status = 'paid'",
         "expect": "1"},
        {"name": "view", "query": "SELECT COUNT(*) FROM customer_totals", "expect": str(
            counts["customers"])},
    ]  # fmt: skip

    done = drill(location, maria_drill_url(shop, new_id()), env, "--checks", json.dumps(checks))

    assert done.returncode == 0, done.stderr
    report = report_of(done)
    assert report.passed is True
    assert report.tables_verified == len(counts)
    assert report.rows_verified == sum(counts.values())
    assert [c.actual for c in report.checks or ()] == ["40", "1", str(counts["customers"])]
    assert maria_leftovers(shop) == []
    assert maria.fingerprint(shop) == before
    assert shop.leftovers() == []
    [stored] = stored_reports(s3_bucket, "team/orders")
    assert stored["passed"] is True


def test_a_mariadb_drill_without_a_grant_on_the_reserved_names_is_refused(
    mariadb_databases: maria.MariaDBDatabases, s3_bucket: S3Bucket
) -> None:
    shop = mariadb_databases.create()
    maria.seed_sample_schema(shop, bulk_rows=50)
    location = s3_bucket.url("team/orders")
    env = {**shop.env, **s3_bucket.env}
    back_up(shop.url, location, env)
    before = maria.fingerprint(shop)

    done = drill(location, maria_drill_url(shop, new_id()), env)

    assert done.returncode == ExitCode.REFUSED, done.stderr
    reason, message = error_of(done)
    assert reason == "InsufficientPrivilege"
    assert "CREATE" in message
    assert "GRANT" in message
    assert maria_leftovers(shop) == []
    assert maria.fingerprint(shop) == before


def maria_lock_free(db: maria.MariaDBDatabase, name: str) -> bool:
    with contextlib.closing(db.server.root()) as conn, conn.cursor() as cur:
        cur.execute("SELECT IS_FREE_LOCK(%s)", (name,))
        row = cur.fetchone()
    return row is not None and row[0] == 1


def test_a_killed_mariadb_drill_leaves_its_database_to_the_next_drill_which_drops_it(
    mariadb_databases: maria.MariaDBDatabases, s3_bucket: S3Bucket, wait_for: Any
) -> None:
    shop = mariadb_databases.create()
    maria.seed_sample_schema(shop, bulk_rows=50)
    noise_mariadb(shop)
    grant_reserved_names(shop)
    location = s3_bucket.url("team/orders")
    env = {**shop.env, **s3_bucket.env}
    back_up(shop.url, location, env)
    before = maria.fingerprint(shop)
    killed_id = new_id()
    killed = drill_database_name(shop.name, killed_id)

    worker = start_killable(location, maria_drill_url(shop, killed_id), env)
    try:
        assert maria_leftovers(shop) == [killed]
    finally:
        kill(worker)
    wait_for(lambda: maria_lock_free(shop, killed), message="the killed session ended")

    done = drill(location, maria_drill_url(shop, new_id()), env)

    assert done.returncode == 0, done.stderr
    assert report_of(done).leftovers_removed == [killed]
    assert maria_leftovers(shop) == []
    assert maria.fingerprint(shop) == before


# -- SQLite ---------------------------------------------------------------------------------------


def test_a_sqlite_drill_restores_into_a_scratch_file_and_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "app" / "shop.db"
    source.parent.mkdir()
    create_shop(source, orders=200)
    location = f"file://{tmp_path}/backups/shop/"
    back_up(f"sqlite:///{source}", location, {})
    before = sqlite_fingerprint(source)
    scratch = tmp_path / "scratch"
    name = drill_database_name(source.name, new_id())
    checks = [{"name": "orders", "query": "SELECT count(*) FROM orders", "expect": "200"}]

    done = drill(location, f"sqlite:///{scratch}/{name}", {}, "--checks", json.dumps(checks))

    assert done.returncode == 0, done.stderr
    report = report_of(done)
    assert (report.passed, report.server, report.cleaned_up) == (True, None, True)
    assert report.rows_verified is not None
    assert report.rows_verified > 200
    assert list(scratch.iterdir()) == []
    assert sqlite_fingerprint(source) == before
    [stored] = list((tmp_path / "backups" / "shop" / "drills").glob("*.json"))
    assert json.loads(stored.read_text())["passed"] is True


def test_a_sqlite_drill_removes_what_an_earlier_killed_drill_left(tmp_path: Path) -> None:
    source = tmp_path / "shop.db"
    create_shop(source, orders=50)
    location = f"file://{tmp_path}/backups/shop/"
    back_up(f"sqlite:///{source}", location, {})
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    killed = drill_database_name(source.name, new_id())
    for leftover in (killed, f"{killed}-journal", f".{killed}.lifeboat-restore-x1y2"):
        (scratch / leftover).write_bytes(b"half a database")
    (scratch / "unrelated.db").write_bytes(b"not ours")

    done = drill(location, f"sqlite:///{scratch}/{drill_database_name(source.name, new_id())}", {})

    assert done.returncode == 0, done.stderr
    assert report_of(done).leftovers_removed == [killed]
    assert [p.name for p in scratch.iterdir()] == ["unrelated.db"]
