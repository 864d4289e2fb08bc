"""A drill's throwaway database on MySQL/MariaDB.

The lock is `GET_LOCK(<reserved name>)`, held by one session for the drill's whole life; the
server releases it when that session ends, also when the worker is killed. A leftover whose lock
can be taken belongs to no running drill and is dropped. A login needs no privilege for named
locks, and `ALL PRIVILEGES ON <db>\\_\\_lifeboat\\_drill\\_%.*` for the rest: to create the
throwaway database, restore into it (the twelve privileges a restore uses) and drop it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence

import pymysql

from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.engines.mysql.connection import Connector, Session, quote
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


def _like(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class MySQLThrowaway:
    def __init__(self, url: DatabaseURL, product: str) -> None:
        self.name, self._prefix = reserved_name(url)
        self.connector = Connector(url, product)
        self.where = self.connector.where
        self.server: str | None = self.where
        self.login: str | None = self.connector.user
        self._guard: Session | None = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self.connector.session(None) as session:
            got = session.scalar("SELECT GET_LOCK(%s, %s)", (self.name, LOCK_WAIT_SECONDS))
            if got != 1:
                raise DatabaseError(
                    f"another drill holds the name {self.name} on {self.where} (waited "
                    f"{LOCK_WAIT_SECONDS}s); one drill at a time per RestoreDrill"
                )
            self._guard = session
            try:
                yield
            finally:
                self._guard = None
        # the session is closed: the server released the lock

    def _session(self) -> Session:
        assert self._guard is not None, "inside hold() only"
        return self._guard

    def remove_leftovers(self) -> Leftovers:
        found = Leftovers()
        session = self._session()
        rows = session.query(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s "
            "ORDER BY SCHEMA_NAME",
            (_like(self._prefix),),
        )
        for name in (str(r[0]) for r in rows if is_sibling(str(r[0]), self._prefix)):
            if name == self.name:
                self._drop(name)
                found.removed.append(name)
                continue
            if session.scalar("SELECT GET_LOCK(%s, 0)", (name,)) != 1:
                found.notes.append(f"{name} belongs to a drill still running: left in place")
                continue
            try:
                self._drop(name)
                found.removed.append(name)
            except DatabaseError as exc:
                found.notes.append(f"could not drop the leftover {name}: {exc}")
            finally:
                session.scalar("SELECT RELEASE_LOCK(%s)", (name,))
        return found

    def _drop(self, name: str) -> None:
        try:
            self._session().execute(f"DROP DATABASE IF EXISTS {quote(name)}")
        except pymysql.MySQLError as exc:
            pattern = quote(_like(self._prefix))
            raise self.connector.error(
                exc, database=name, fix=f"GRANT ALL PRIVILEGES ON {pattern}.* to the drill's login"
            ) from None

    def drop(self) -> None:
        self._drop(self.name)

    def exists(self) -> bool:
        with self.connector.session(None) as session:
            return session.database_exists(self.name)

    def run_checks(self, checks: Sequence[CheckSpec], taken_at: dt.datetime) -> list[CheckOutcome]:
        """Each check in a READ ONLY transaction, in UTC, with a statement time limit where the
        server has one; a failing query is reported with the server's own error."""
        outcomes = []
        with self.connector.session(self.name) as session:
            session.execute("SET SESSION time_zone = '+00:00'")
            mariadb = "mariadb" in session.version().lower()
            limit = (
                f"SET SESSION max_statement_time = {CHECK_TIMEOUT_SECONDS}"
                if mariadb
                else f"SET SESSION max_execution_time = {CHECK_TIMEOUT_SECONDS * 1000}"
            )
            with contextlib.suppress(pymysql.MySQLError):
                session.execute(limit)
            for check in checks:
                try:
                    session.execute("START TRANSACTION READ ONLY")
                    with session.conn.cursor() as cursor:
                        cursor.execute(with_backup_time(check.query, taken_at))
                        columns = len(cursor.description or ())
                        rows = list(cursor.fetchmany(2)) if cursor.description else []
                    outcomes.append(judge(check, rows, columns))
                except pymysql.MySQLError as exc:
                    code = exc.args[0] if exc.args else "?"
                    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
                    outcomes.append(query_failed(check, f"{text} (error {code})"))
                finally:
                    with contextlib.suppress(pymysql.MySQLError):
                        session.execute("ROLLBACK")
        return outcomes
