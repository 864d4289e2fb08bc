"""The database server's own disk fills during a restore (issue 8: a restore failing late leaves
the target exactly as before, for every engine; SQLite's full disk is in
test_late_restore_failures.py).

Each server keeps the target's data on a real tmpfs (tests/support/small_disks.py), shrunk once
the target is in place so that only a few MiB are left, less than the backup restores:

- PostgreSQL: a cluster of the module's own whose target database lives in a tablespace on the
  tmpfs (`CREATE TABLESPACE`, `ALTER DATABASE ... SET TABLESPACE`, done by the superuser as a
  managed service does); the restore runs as the database's owner, no superuser.
- MariaDB: a mariadbd of the module's own whose whole data directory is the tmpfs, started with
  small InnoDB files; the restore runs as a user with ALL on its database only.

The backup is made the normal way (`lifeboat backup`) of a bigger database. The restore fails
with DiskFull naming the database server's disk (not the worker's), the target's whole-database
fingerprint is unchanged, nothing of the failed restore is left on the volume (PostgreSQL drops
the new files at rollback; MariaDB's staged tables are dropped), and once the volume is grown,
the same restore succeeds and brings the backup's data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import sql

from lifeboat.contract import ExitCode
from tests.support import mariadb as maria
from tests.support import postgres as pg
from tests.support.databases import lifeboat
from tests.support.shared_targets import owned_pg_database
from tests.support.small_disks import MIB, leave_free, resize, tmpfs, used
from tests.support.worker_process import last_line

ROOMY = 256 * MIB
"""The volume while the server starts and the target is made."""
LEFT_FREE = 6 * MIB
"""What is left on the server's volume for the restore: less than the backup's data."""
ANOTHER_OWNER = ("--no-owner", "--no-privileges")
"""The backup is of another database, whose owner the target's owner cannot act as."""
ROWS = 200_000
"""The backup's big table: about 20 MiB of rows (and 4 MiB of index) once restored."""


def _restore(url: str, db_url: str, env: dict[str, str], *extra: str) -> tuple[int, str]:
    done = lifeboat("restore", url, db_url, "--progress", "none", *extra, env=env)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, last_line(done.stderr) if done.stderr.strip() else ""


# -- PostgreSQL ----------------------------------------------------------------------------------


@dataclass
class PgOnSmallDisk:
    server: pg.PostgresServer
    disk: Path
    stack: contextlib.ExitStack


@pytest.fixture(scope="module")
def pg_small_disk() -> Iterator[PgOnSmallDisk]:
    """A cluster of the module's own with a tablespace `small` on a tmpfs."""
    with contextlib.ExitStack() as stack:
        # Entered first, left last: the cluster is stopped before the volume is unmounted.
        disk = stack.enter_context(tmpfs(ROOMY, owner="postgres", prefix="lbpgdisk-"))
        server = stack.enter_context(pg.own_cluster())
        with server.connect() as conn:
            conn.execute(
                sql.SQL("CREATE TABLESPACE small LOCATION {}").format(sql.Literal(str(disk)))
            )
        stack.callback(_drop_tablespace, server)
        yield PgOnSmallDisk(server=server, disk=disk, stack=stack)


def _drop_tablespace(server: pg.PostgresServer) -> None:
    with contextlib.suppress(Exception), server.connect() as conn:
        conn.execute("DROP TABLESPACE IF EXISTS small")


def test_postgres_server_disk_full_mid_restore_fails_with_disk_full_and_the_target_is_unchanged(
    pg_small_disk: PgOnSmallDisk, tmp_path: Path
) -> None:
    server, disk, stack = pg_small_disk.server, pg_small_disk.disk, pg_small_disk.stack
    source = owned_pg_database(server, stack)  # on the cluster's main volume
    source.execute(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload "
        f"FROM generate_series(1, {ROWS}) g"
    )
    source.execute("ALTER TABLE big ADD PRIMARY KEY (id)")
    source.execute("CREATE TABLE small (id int PRIMARY KEY)")
    source.execute("INSERT INTO small VALUES (1), (2), (3)")
    url = f"file://{tmp_path}/backups/run/"
    done = lifeboat("backup", source.url, url, "--progress", "none", env=source.env)
    assert done.returncode == 0, done.stderr

    # The target: a database of its owner (no superuser), all of it in the tablespace on the
    # tmpfs; the superuser moves it there, and lets the owner create in it as well.
    target = owned_pg_database(server, stack)
    with server.connect() as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET TABLESPACE small").format(sql.Identifier(target.name))
        )
        conn.execute(
            sql.SQL("GRANT CREATE ON TABLESPACE small TO {}").format(sql.Identifier(target.user))
        )
    pg.seed_sample_schema(target, large_object=False)
    target.execute(
        "CREATE TABLE public.late_table AS SELECT g AS id FROM generate_series(1, 500) g"
    )
    before = target.fingerprint()
    leave_free(disk, LEFT_FREE)
    held = used(disk)

    code, line = _restore(url, target.url, target.env, *ANOTHER_OWNER)

    assert code == ExitCode.DATABASE, line
    assert line.startswith("lifeboat: error: DiskFull: "), line
    assert f"PostgreSQL server at {server.host}:{server.port} ran out of disk space" in line, line
    assert f"restoring into '{target.name}'" in line, line
    assert "No space left on device" in line, line
    assert "the target is unchanged" in line, line
    assert target.fingerprint() == before
    # The rollback removed every file the restore had written: the volume holds what it held.
    assert used(disk) <= held + MIB, f"the failed restore left {used(disk) - held} bytes"

    resize(disk, ROOMY)  # the volume is grown: the same restore now succeeds
    code, line = _restore(url, target.url, target.env, *ANOTHER_OWNER)

    assert code == 0, line
    assert target.fingerprint()["rows"] == source.fingerprint()["rows"]


# -- MariaDB -------------------------------------------------------------------------------------

SMALL_INNODB = (
    "--innodb-log-file-size=4M",
    "--innodb-data-file-path=ibdata1:10M:autoextend",
    "--innodb-temp-data-file-path=ibtmp1:4M:autoextend",
    "--innodb-buffer-pool-size=16M",
    "--innodb-undo-tablespaces=0",
)


@pytest.fixture(scope="module")
def mariadb_small_disk() -> Iterator[tuple[maria.MariaDBServer, Path]]:
    """A mariadbd of the module's own whose data directory is a tmpfs."""
    with tmpfs(ROOMY, prefix="lbmdisk-") as disk:
        server = maria._start_server(disk, SMALL_INNODB)
        try:
            yield server, disk
        finally:
            maria._stop(server.process)


def test_mariadb_server_disk_full_while_staging_fails_with_disk_full_and_the_target_is_unchanged(
    mariadb_small_disk: tuple[maria.MariaDBServer, Path],
    mariadb_databases: maria.MariaDBDatabases,
    tmp_path: Path,
) -> None:
    server, disk = mariadb_small_disk
    # The backup's source: a bigger database on the session's server.
    source = mariadb_databases.create()
    source.execute(
        "CREATE TABLE big (id INT PRIMARY KEY, payload VARCHAR(64) NOT NULL)",
        f"INSERT INTO big SELECT seq, CONCAT(MD5(seq), MD5(seq * 7)) FROM seq_1_to_{ROWS}",
        "CREATE TABLE small (id INT PRIMARY KEY)",
        "INSERT INTO small VALUES (1), (2), (3)",
    )
    url = f"file://{tmp_path}/backups/run/"
    done = lifeboat("backup", source.url, url, "--progress", "none", env=source.env)
    assert done.returncode == 0, done.stderr

    factory = maria.MariaDBDatabases(server)
    try:
        target = factory.create()
        maria.seed_sample_schema(target, bulk_rows=500)
        target.execute("CREATE TABLE late (id INT)", "INSERT INTO late VALUES (1), (2)")
        before = maria.fingerprint(target)
        leave_free(disk, LEFT_FREE)

        code, line = _restore(url, target.url, target.env)

        assert code == ExitCode.DATABASE, line
        assert line.startswith("lifeboat: error: DiskFull: "), line
        assert f"MariaDB server at {server.host}:{server.port} ran out of disk space" in line
        assert "the target was not touched" in line, line
        assert maria.fingerprint(target) == before
        assert target.leftovers() == []

        resize(disk, ROOMY)
        code, line = _restore(url, target.url, target.env)

        assert code == 0, line
        assert target.leftovers() == []
        assert maria.fingerprint(target) == maria.fingerprint(source)
    finally:
        factory.cleanup()
