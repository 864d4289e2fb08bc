"""A restore drill's throwaway database, behind one small Protocol per engine.

The drill restores with the engine's ordinary restore into a database that does not exist yet,
under a reserved name (`<db>__lifeboat_drill_<id>`, see `lifeboat.contract`). What only a drill
needs is here: a lock on that name for the drill's whole life, held by a session the server
ends when the worker dies (PostgreSQL's advisory lock, MySQL's GET_LOCK, an flock for SQLite);
finding and dropping the throwaway databases of earlier drills whose lock nobody holds any more
(a worker killed mid-drill); the user's checks, read-only; and the drop.

Nothing here ever names a database that is not reserved: `reserved_name` refuses any other name,
so a drill cannot drop the source, whatever its URL says.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Final, Protocol

from lifeboat.contract import DRILL_MARKER, parse_drill_database_name
from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.errors import UsageError

BACKUP_TIME_PLACEHOLDER: Final = "${BACKUP_TIME}"
CHECK_TIMEOUT_SECONDS: Final = 300
"""A check that runs longer is cancelled by the server and fails."""
LOCK_WAIT_SECONDS: Final = 30
"""How long a drill waits for its own name's lock (an earlier attempt's session still closing)."""
VALUE_LIMIT: Final = 1024


@dataclass(frozen=True)
class CheckSpec:
    """One user check: a query that must return `expect` (as text)."""

    name: str
    query: str
    expect: str


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    expected: str
    actual: str | None = None
    message: str | None = None


@dataclass
class Leftovers:
    """What `remove_leftovers` found: dropped, and in use by a running drill (or not ours)."""

    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def reserved_name(url: DatabaseURL) -> tuple[str, str]:
    """(name, prefix) of the throwaway database the URL names; UsageError for any name that is
    not reserved for drills."""
    name = url.path.name if url.engine == "sqlite" and url.path is not None else url.database
    parsed = parse_drill_database_name(name)
    if parsed is None:
        raise UsageError(
            f"DATABASE_URL: a drill only creates and drops databases named "
            f"<database>{DRILL_MARKER}<8 hex digits>, not {name!r} (the operator names it; "
            "run by hand, choose such a name)"
        )
    return name, parsed[0]


def is_sibling(candidate: str, prefix: str) -> bool:
    """A reserved drill name of the same source (the same prefix)."""
    parsed = parse_drill_database_name(candidate)
    return parsed is not None and parsed[0] == prefix


def with_backup_time(query: str, taken_at: dt.datetime) -> str:
    """The query with ${BACKUP_TIME} as an SQL string literal in UTC."""
    literal = taken_at.astimezone(dt.UTC).strftime("'%Y-%m-%d %H:%M:%S'")
    return query.replace(BACKUP_TIME_PLACEHOLDER, literal)


def render_value(value: object) -> str:
    """A query's value as text, as `expect` spells it."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    return str(value)


def judge(check: CheckSpec, rows: Sequence[Sequence[object]], columns: int) -> CheckOutcome:
    """Passed when the query returned one row of one column equal to `expect`."""
    if columns != 1 or len(rows) != 1:
        shape = f"{len(rows)}{'+' if len(rows) > 1 else ''} rows of {columns} columns"
        return CheckOutcome(
            check.name,
            False,
            check.expect,
            message=f"check {check.name!r} returned {shape}; a check returns one value",
        )
    actual = render_value(rows[0][0])[:VALUE_LIMIT]
    if actual == check.expect:
        return CheckOutcome(check.name, True, check.expect, actual)
    return CheckOutcome(
        check.name,
        False,
        check.expect,
        actual,
        f"check {check.name!r} returned {actual!r}, expected {check.expect!r}",
    )


def query_failed(check: CheckSpec, error: str) -> CheckOutcome:
    return CheckOutcome(
        check.name, False, check.expect, message=f"check {check.name!r} failed: {error}"
    )


class Throwaway(Protocol):
    """The throwaway database of one drill on its server."""

    name: str
    """The reserved name (a SQLite drill: the file's name)."""

    where: str
    """The server (host:port), or the directory of a SQLite drill's file."""

    server: str | None
    """host:port of the server; None for SQLite."""

    login: str | None
    """The login the drill runs as; None for SQLite."""

    def hold(self) -> AbstractContextManager[None]:
        """Lock the reserved name until the block ends (or the worker dies)."""
        ...

    def remove_leftovers(self) -> Leftovers:
        """Drop every throwaway database of the same source whose lock nobody holds: those of
        killed drills, and this drill's own from an earlier attempt. Inside `hold()`."""
        ...

    def run_checks(self, checks: Sequence[CheckSpec], taken_at: dt.datetime) -> list[CheckOutcome]:
        """Run every check, read-only, in the throwaway database."""
        ...

    def drop(self) -> None:
        """Drop the throwaway database if it exists. Inside `hold()`."""
        ...

    def exists(self) -> bool: ...


def open_throwaway(url: DatabaseURL) -> Throwaway:
    """The throwaway database the URL names (a reserved name, else UsageError)."""
    if url.engine == "postgresql":
        from lifeboat.worker.engines.postgres.throwaway import PostgresThrowaway

        return PostgresThrowaway(url)
    if url.engine in ("mysql", "mariadb"):
        from lifeboat.worker.engines.mysql.throwaway import MySQLThrowaway

        return MySQLThrowaway(url, "MariaDB" if url.engine == "mariadb" else "MySQL")
    from lifeboat.worker.engines.sqlite_throwaway import SQLiteThrowaway

    return SQLiteThrowaway(url)
