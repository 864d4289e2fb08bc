"""Any engine's real database, seen the same way: for tests that run once per engine.

`make_database(request, engine, tmp_path)` gives a seeded PostgreSQL, MariaDB (as `mariadb` or
`mysql`) or SQLite database, each reached as the role the tests use (a non-superuser owner, a
single-database user), with its URL, the environment holding its password, a fingerprint of
everything a restore could change, and a way to run a statement. `lifeboat(...)` runs the
command as a Job would.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lifeboat.cli.demo import create_shop
from lifeboat.cli.demo import fingerprint as sqlite_fingerprint
from tests.support import mariadb as maria
from tests.support import postgres as pg


@dataclass
class Database:
    """One real database, seen the same way whatever the engine."""

    url: str
    env: dict[str, str]
    fingerprint: Callable[[], Any]
    execute: Callable[[str], None]
    orders_table: str


def lifeboat(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lifeboat", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )


def listed(location: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """The backups `lifeboat list` finds at `location`, as its JSON gives them."""
    done = lifeboat("list", location, "--output", "json", env=env)
    assert done.returncode == 0, done.stderr
    backups: list[dict[str, Any]] = json.loads(done.stdout)["backups"]
    return backups


def big_postgres(request: pytest.FixtureRequest, rows: int) -> Database:
    """A PostgreSQL database (of a non-superuser owner) with one table `big` of `rows` rows of
    ~70 bytes each: large enough for a multipart upload to be under way."""
    raw: pg.PgDatabase = request.getfixturevalue("pg_database_factory")()
    raw.execute(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload "
        f"FROM generate_series(1, {rows}) g"
    )
    raw.execute("ALTER TABLE big ADD PRIMARY KEY (id)")
    return Database(
        url=raw.url,
        env={"LIFEBOAT_DB_PASSWORD": raw.password},
        fingerprint=raw.fingerprint,
        execute=raw.execute,
        orders_table="big",
    )


def _postgres(request: pytest.FixtureRequest, seed: bool) -> Database:
    db: pg.PgDatabase = request.getfixturevalue("pg_database_factory")()
    if seed:
        pg.seed_sample_schema(db, large_object=False)
    return Database(
        url=db.url,
        env={"LIFEBOAT_DB_PASSWORD": db.password},
        fingerprint=db.fingerprint,
        execute=db.execute,
        orders_table="shop.orders",
    )


def _mariadb(request: pytest.FixtureRequest, scheme: str, seed: bool) -> Database:
    db: maria.MariaDBDatabase = request.getfixturevalue("mariadb_databases").create()
    if seed:
        maria.seed_sample_schema(db, bulk_rows=500)
    return Database(
        url=db.url_for(scheme),
        env=db.env,
        fingerprint=lambda: maria.fingerprint(db),
        execute=lambda statement: db.execute(statement),
        orders_table="orders",
    )


def _sqlite(tmp_path: Path, seed: bool) -> Database:
    path = tmp_path / "db" / "shop.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    if seed:
        create_shop(path, orders=500)

    def execute(statement: str) -> None:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.executescript(statement)

    return Database(
        url=f"sqlite:///{path}",
        env={},
        fingerprint=lambda: sqlite_fingerprint(path),
        execute=execute,
        orders_table="orders",
    )


def make_database(
    request: pytest.FixtureRequest, engine: str, tmp_path: Path, seed: bool = True
) -> Database:
    if engine == "postgresql":
        return _postgres(request, seed)
    if engine in ("mariadb", "mysql"):
        return _mariadb(request, engine, seed)
    return _sqlite(tmp_path, seed)


def damage(db: Database) -> None:
    db.execute(f"DELETE FROM {db.orders_table} WHERE id % 2 = 0")
    db.execute("CREATE TABLE late_table (id INT)")
