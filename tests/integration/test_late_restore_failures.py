"""Restores that fail late, after the target has started to change: the target ends exactly as it
was, for every engine (issue 8, fault 6).

- An SQL error near the end of the restore stream, from backups made the normal way of databases
  holding an object that cannot be recreated where the backup is restored: PostgreSQL, an index
  on a function that reads another table without naming its schema (pg_dump restores with an
  empty search_path, so the index fails to build after all the data was loaded); MariaDB, a view
  on a table of another database that the target server no longer has (views are created after
  the swap, the very last step); SQLite (keeping extra objects, which merges the backup in one
  transaction), a view of the backup whose name is a table in the target.
- The disk full: the SQLite target lives on a small tmpfs with room for the staged copy but not
  for the journal of the replacement, the last write of the restore.
- The worker killed mid-restore, for SQLite (PostgreSQL and MariaDB are in test_round_trips.py and
  test_faults.py): the target is untouched and the next restore removes the staged copy.

Each compares a whole-database fingerprint of the target before and after.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lifeboat.cli.demo import create_shop
from lifeboat.contract import ExitCode
from tests.support import mariadb as maria
from tests.support import postgres as pg
from tests.support.databases import lifeboat
from tests.support.shared_targets import sqlite_whole_fingerprint
from tests.support.worker_process import Worker, last_line

MIB = 2**20


def _restore_fails(url: str, db_url: str, env: dict[str, str], *extra: str) -> tuple[int, str]:
    done = lifeboat("restore", url, db_url, "--progress", "none", *extra, env=env)
    assert "Traceback" not in done.stderr
    return done.returncode, last_line(done.stderr)


# -- an SQL error near the end -------------------------------------------------------------------


def test_postgres_an_index_that_fails_to_build_after_the_data_leaves_the_target_unchanged(
    pg_database: pg.PgDatabase, tmp_path: Path
) -> None:
    db = pg_database
    pg.seed_sample_schema(db, large_object=False)
    # Works where it was made (search_path finds `lookup`); pg_dump's restore empties the
    # search_path, so building the index, in post-data after every row is loaded, fails.
    db.execute(
        "CREATE TABLE public.lookup (id int PRIMARY KEY);"
        "INSERT INTO public.lookup VALUES (1), (2);"
        "CREATE FUNCTION public.bucket(x int) RETURNS int LANGUAGE sql IMMUTABLE "
        "AS $$ SELECT x % (SELECT count(*)::int FROM lookup) $$;"
        "CREATE INDEX orders_bucket ON shop.orders (public.bucket(id::int))"
    )
    url = f"file://{tmp_path}/backups/run/"
    done = lifeboat("backup", db.url, url, "--progress", "none", env=db.env)
    assert done.returncode == 0, done.stderr
    db.execute("DELETE FROM shop.orders WHERE id % 2 = 0")
    db.execute("CREATE TABLE public.late_table (id int)")
    before = db.fingerprint()

    code, line = _restore_fails(url, db.url, db.env)

    assert code == ExitCode.VERIFICATION, line
    assert line.startswith("lifeboat: error: RestoreFailed: "), line
    assert "rolled back and the target is unchanged" in line, line
    assert 'relation "lookup" does not exist' in line, line
    assert db.fingerprint() == before


def test_mariadb_a_view_that_fails_after_the_swap_leaves_the_target_unchanged(
    mariadb_databases: maria.MariaDBDatabases, tmp_path: Path
) -> None:
    db = mariadb_databases.create()
    maria.seed_sample_schema(db, bulk_rows=500)
    reference = mariadb_databases.create(prefix="ref")
    reference.execute("CREATE TABLE codes (id INT PRIMARY KEY)", "INSERT INTO codes VALUES (1)")
    db.server.root_execute(f"GRANT SELECT ON {maria.quote(reference.name)}.* TO {db.user.account}")
    # `zz_codes` sorts last: created after every other held-back object, at the very end.
    db.execute(f"CREATE VIEW zz_codes AS SELECT id FROM {maria.quote(reference.name)}.codes")
    url = f"file://{tmp_path}/backups/run/"
    done = lifeboat("backup", db.url, url, "--progress", "none", env=db.env)
    assert done.returncode == 0, done.stderr
    db.execute(
        "DROP VIEW zz_codes", "DELETE FROM orders WHERE id % 2 = 0", "CREATE TABLE late (id INT)"
    )
    db.server.root_execute(f"DROP DATABASE {maria.quote(reference.name)}")
    before = maria.fingerprint(db)

    code, line = _restore_fails(url, db.url, db.env)

    assert code == ExitCode.DATABASE, line
    assert f"Table '{reference.name}.codes' doesn't exist" in line, line
    assert line.endswith("rolled back, the target is as it was"), line
    assert maria.fingerprint(db) == before
    assert db.leftovers() == []


def _sqlite_target(directory: Path, orders: int) -> Path:
    path = directory / "shop.db"
    directory.mkdir(parents=True, exist_ok=True)
    create_shop(path, orders=orders)
    return path


def test_sqlite_a_merge_failing_on_its_last_object_leaves_the_target_unchanged(
    tmp_path: Path,
) -> None:
    path = _sqlite_target(tmp_path / "db", 2000)
    db_url = f"sqlite:///{path}"
    url = f"file://{tmp_path}/backups/run/"
    done = lifeboat("backup", db_url, url, "--progress", "none", env={})
    assert done.returncode == 0, done.stderr
    # The backup's view `revenue` is a table here now: merging drops and recreates objects in
    # one transaction, tables first, views last, and `DROP VIEW revenue` fails on a table.
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            "DROP VIEW revenue; CREATE TABLE revenue (id INTEGER PRIMARY KEY, cents INTEGER);"
            "INSERT INTO revenue VALUES (1, 100); DELETE FROM orders WHERE id % 2 = 0;"
        )
    before = sqlite_whole_fingerprint(path)

    code, line = _restore_fails(url, db_url, {}, "--keep-extra-objects")

    assert code == ExitCode.VERIFICATION, line
    assert line.startswith("lifeboat: error: RestoreFailed: "), line
    assert "rolled back and the target is unchanged" in line, line
    assert "revenue" in line, line
    assert sqlite_whole_fingerprint(path) == before


# -- the disk full -------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """`small_disk(bytes)`: a directory on a tmpfs of that size, unmounted at teardown."""
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        directory = tmp_path / f"disk{len(mounted)}"
        directory.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        mounted.append(directory)
        return directory

    yield mount
    for directory in reversed(mounted):
        subprocess.run(["umount", str(directory)], capture_output=True, check=False)


def test_sqlite_a_disk_full_while_replacing_the_target_leaves_it_unchanged(
    tmp_path: Path, small_disk: Callable[[int], Path]
) -> None:
    source = _sqlite_target(tmp_path / "source", 60_000)
    url = f"file://{tmp_path}/backups/run/"
    done = lifeboat("backup", f"sqlite:///{source}", url, "--progress", "none", env={})
    assert done.returncode == 0, done.stderr
    backup_size = source.stat().st_size
    made = _sqlite_target(tmp_path / "made", 20_000)
    # Room for the target and the staged copy, not for the replacement's journal as well.
    disk = small_disk(made.stat().st_size + backup_size + backup_size // 2)
    path = disk / "shop.db"
    shutil.copyfile(made, path)
    db_url = f"sqlite:///{path}"
    before = sqlite_whole_fingerprint(path)

    code, line = _restore_fails(url, db_url, {})

    assert code == ExitCode.STORAGE, line
    assert line.startswith("lifeboat: error: DiskFull: "), line
    assert f"no space left on the device of {path} while replacing" in line, line
    assert "the target is unchanged" in line, line
    assert sqlite_whole_fingerprint(path) == before
    assert sorted(p.name for p in disk.iterdir() if "lifeboat" in p.name) == []


def test_sqlite_a_full_temp_dir_fails_the_backup_with_disk_full_and_leaves_no_backup(
    tmp_path: Path, small_disk: Callable[[int], Path]
) -> None:
    """The one scratch file of any engine: SQLite's backup snapshot, in TMPDIR."""
    source = _sqlite_target(tmp_path / "source", 20_000)
    scratch = small_disk(source.stat().st_size // 2)
    location = tmp_path / "backups" / "run"
    env = {"TMPDIR": str(scratch)}

    done = lifeboat("backup", f"sqlite:///{source}", str(location), "--progress", "none", env=env)

    line = last_line(done.stderr)
    assert done.returncode == ExitCode.STORAGE, done.stderr
    assert line.startswith(f"lifeboat: error: DiskFull: no space left in {scratch} "), line
    assert "TMPDIR" in line, line
    assert list(scratch.iterdir()) == []
    assert not (location / "manifest.json").exists()


# -- killed --------------------------------------------------------------------------------------


def test_sqlite_a_restore_killed_while_staging_leaves_the_target_and_the_next_run_cleans_up(
    tmp_path: Path,
) -> None:
    source = _sqlite_target(tmp_path / "source", 150_000)
    url = f"file://{tmp_path}/backups/run/"
    done = lifeboat("backup", f"sqlite:///{source}", url, "--progress", "none", env={})
    assert done.returncode == 0, done.stderr
    path = _sqlite_target(tmp_path / "db", 2_000)
    db_url = f"sqlite:///{path}"
    before = sqlite_whole_fingerprint(path)

    worker = Worker("restore", url, db_url, "--no-verify-first", env={})
    deadline = time.monotonic() + 60
    while not _staged(path, 4 * MIB):  # the staged copy is growing: the worker is mid-restore
        assert worker.proc.poll() is None, "the restore ended before it could be killed"
        assert time.monotonic() < deadline, "the restore never staged 4 MiB"
        time.sleep(0.005)
    worker.kill()

    assert sqlite_whole_fingerprint(path) == before
    left = [p.name for p in path.parent.iterdir() if ".lifeboat-restore-" in p.name]
    assert len(left) == 1, left

    again = lifeboat("restore", url, db_url, "--progress", "none", env={})

    assert again.returncode == 0, again.stderr
    assert (
        f"lifeboat: note: removed the staged copy an interrupted restore left: {path.parent}/"
        f"{left[0]}" in again.stderr
    )
    assert [p.name for p in path.parent.iterdir() if ".lifeboat-restore-" in p.name] == []
    assert sqlite_whole_fingerprint(path) == sqlite_whole_fingerprint(source)


def _staged(path: Path, size: int) -> bool:
    with contextlib.suppress(FileNotFoundError):
        return any(
            p.stat().st_size >= size for p in path.parent.glob(f".{path.name}.lifeboat-restore-*")
        )
    return False
