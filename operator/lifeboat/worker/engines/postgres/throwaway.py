"""A drill's throwaway database on PostgreSQL.

The lock is a session-level advisory lock, taken in the server's maintenance database (where the
drill also creates and drops its database from) and keyed by the reserved name: the server
releases it when the session ends, also when the worker is killed. A leftover whose lock can be
taken belongs to no running drill, so it is dropped (`WITH (FORCE)`, which also ends sessions a
killed worker's psql may not have closed yet). Needs no privilege beyond CREATEDB: advisory locks
are free, and a database's creator owns it and may drop it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import psycopg
from psycopg import sql

from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.engines.postgres.connection import Connector, first_line
from lifeboat.worker.engines.throwaway import (
    CHECK_TIMEOUT_SECONDS,
    LOCK_WAIT_SECONDS,
    CheckOutcome,
    CheckSpec,
    Leftovers,
    is_sibling,
    judge,
    query_failed,
    reserved_name,
    with_backup_time,
)
from lifeboat.worker.errors import DatabaseError

_LOCK_SPACE: Final = 0x4C424452
"""The advisory locks' first key ('LBDR'): Lifeboat drill names, apart from any other use."""


def lock_key(name: str) -> int:
    """The advisory lock's second key for a reserved name (a signed 32-bit integer)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class PostgresThrowaway:
    def __init__(self, url: DatabaseURL) -> None:
        self.name, self._prefix = reserved_name(url)
        self.connector = Connector(url)
        self.where = self.connector.where
        self.server: str | None = self.where
        self.login: str | None = self.connector.user
        self._guard: psycopg.Connection[Any] | None = None

    @contextmanager
    def hold(self) -> Iterator[None]:
        conn = self.connector.connect_maintenance()
        try:
            try:
                conn.execute(f"SET lock_timeout = '{LOCK_WAIT_SECONDS}s'")
                conn.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_SPACE, lock_key(self.name)))
            except psycopg.errors.LockNotAvailable:
                raise DatabaseError(
                    f"another drill holds the name {self.name} on {self.where} (waited "
                    f"{LOCK_WAIT_SECONDS}s); one drill at a time per RestoreDrill"
                ) from None
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"cannot lock the drill's name on {self.where}: {first_line(exc)}"
                ) from None
            self._guard = conn
            yield
        finally:
            self._guard = None
            conn.close()  # ends the session: the server releases the lock

    def _session(self) -> psycopg.Connection[Any]:
        assert self._guard is not None, "inside hold() only"
        return self._guard

    def _siblings(self) -> list[str]:
        rows = (
            self._session()
            .execute(
                "SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE %s ORDER BY 1",
                (_like(self._prefix),),
            )
            .fetchall()
        )
        return [str(r[0]) for r in rows if is_sibling(str(r[0]), self._prefix)]

    def remove_leftovers(self) -> Leftovers:
        found = Leftovers()
        conn = self._session()
        for name in self._siblings():
            if name == self.name:
                self._drop(name)
                found.removed.append(name)
                continue
            key = lock_key(name)
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_LOCK_SPACE, key)).fetchone()
            if not (row and row[0]):
                found.notes.append(f"{name} belongs to a drill still running: left in place")
                continue
            try:
                self._drop(name)
                found.removed.append(name)
            except DatabaseError as exc:
                found.notes.append(f"could not drop the leftover {name}: {exc}")
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_SPACE, key))
        return found

    def _drop(self, name: str) -> None:
        conn = self._session()
        force = " WITH (FORCE)" if conn.info.server_version >= 130000 else ""
        try:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}" + force).format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise DatabaseError(
                f"dropping the drill's database {name} on {self.where} failed: {first_line(exc)}"
            ) from None

    def drop(self) -> None:
        self._drop(self.name)

    def exists(self) -> bool:
        with self.connector.connect_maintenance() as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_catalog.pg_database WHERE datname = %s", (self.name,)
            ).fetchone()
        return row is not None

    def run_checks(self, checks: Sequence[CheckSpec], taken_at: dt.datetime) -> list[CheckOutcome]:
        """Each check in a READ ONLY transaction of its own, in UTC, with a statement timeout;
        a failing query is reported with the server's own error and the next check runs."""
        outcomes = []
        with self.connector.connect() as conn:
            for check in checks:
                try:
                    conn.execute("BEGIN READ ONLY")
                    conn.execute(f"SET LOCAL statement_timeout = '{CHECK_TIMEOUT_SECONDS}s'")
                    conn.execute("SET LOCAL TIME ZONE 'UTC'")
                    cursor = conn.execute(with_backup_time(check.query, taken_at).encode())
                    columns = len(cursor.description or ())
                    rows = cursor.fetchmany(2) if cursor.description else []
                    outcomes.append(judge(check, rows, columns))
                except psycopg.Error as exc:
                    outcomes.append(query_failed(check, first_line(exc)))
                finally:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
        return outcomes
