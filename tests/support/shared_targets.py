"""Databases that live for a whole test module, for tests that must leave them unchanged.

A refused restore must change nothing, so a module of such tests can share one target per
engine: each test takes the target's fingerprint before and after, and a test that changed it
fails by itself. Sharing saves creating, seeding and backing up a database per test.

`module_database(request, engine, tmp_path, stack)` makes one seeded database reached as the
role the other tests use (a non-superuser owner, a single-database user, a file); `stack`
drops it (and its role) when the module ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from lifeboat.cli.demo import fingerprint as sqlite_fingerprint
from tests.support import databases
from tests.support import mariadb as maria
from tests.support import postgres as pg
from tests.support.databases import Database


def owned_pg_database(server: pg.PostgresServer, stack: contextlib.ExitStack) -> pg.PgDatabase:
    """An empty database on `server` owned by a login role of its own without SUPERUSER,
    CREATEDB or CREATEROLE (as managed databases are); `stack` drops both."""
    name = f"m_{uuid.uuid4().hex[:12]}"
    role = pg.PgRole(
        server=server, name=f"{name}_owner", password="pw-" + secrets.token_urlsafe(12)
    )
    with server.connect() as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE").format(
                sql.Identifier(role.name), sql.Literal(role.password)
            )
        )
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(role.name)
            )
        )

    def drop() -> None:
        with contextlib.suppress(psycopg.Error):
            server.drop_database(name)
            with server.connect() as conn:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role.name)))

    stack.callback(drop)
    return pg.PgDatabase(server=server, name=name, role=role)


def _postgres(request: pytest.FixtureRequest, stack: contextlib.ExitStack) -> Database:
    db = owned_pg_database(request.getfixturevalue("postgres_server"), stack)
    pg.seed_sample_schema(db, large_object=False)
    return Database(
        url=db.url,
        env=db.env,
        fingerprint=db.fingerprint,
        execute=db.execute,
        orders_table="shop.orders",
    )


def _mariadb(request: pytest.FixtureRequest, stack: contextlib.ExitStack) -> Database:
    factory = maria.MariaDBDatabases(request.getfixturevalue("mariadb_server"))
    stack.callback(factory.cleanup)
    db = factory.create(prefix="m")
    maria.seed_sample_schema(db, bulk_rows=500)
    return Database(
        url=db.url,
        env=db.env,
        fingerprint=lambda: maria.fingerprint(db),
        execute=lambda statement: db.execute(statement),
        orders_table="orders",
    )


def _sqlite(tmp_path: Path) -> Database:
    shop = databases._sqlite(tmp_path, seed=True)
    path = Path(shop.url.removeprefix("sqlite:///"))
    return dataclasses.replace(shop, fingerprint=lambda: sqlite_whole_fingerprint(path))


def sqlite_whole_fingerprint(path: Path) -> dict[str, Any]:
    """Every object's definition and every table's rows (not the file's bytes: a WAL database's
    file changes when its last connection checkpoints, though its content does not)."""
    with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        schema = conn.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
        ).fetchall()
    return {"schema": schema, "rows": sqlite_fingerprint(path)}


def module_database(
    request: pytest.FixtureRequest, engine: str, tmp_path: Path, stack: contextlib.ExitStack
) -> Database:
    """A seeded database of `engine` (postgresql, mariadb, sqlite) living until `stack` closes."""
    if engine == "postgresql":
        return _postgres(request, stack)
    if engine == "mariadb":
        return _mariadb(request, stack)
    return _sqlite(tmp_path)
