"""Loading a backup into staged tables inside the target database, and proving it there.

The `mariadb` client runs the dump with the target as its database, but every table statement
of the stream names a staged table (`__lifeboat_<token>_s<n>_...`, see reserved_names) and the
views, routines, triggers and events are held back (held_objects): nothing the target's clients
use changes while the backup loads. The client stops at the first error. Row counts are then
compared with the manifest in the staged tables; any failure up to here drops the staged tables
(and the database, if the restore created it), and the target is as it was.

A restore that was killed leaves its staged tables behind: the next restore of the database
removes them (they were never swapped in, they hold nothing the target needs) and reports any
parked tables (the target's tables from before a swap whose end was not reached: they might
hold data someone still needs, so only a person drops them).
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import pymysql

from lifeboat.worker.engines._process import ToolProcess
from lifeboat.worker.engines.mysql.connection import Connector, Session, quote
from lifeboat.worker.engines.mysql.dump_stream import SqlDumpScanner
from lifeboat.worker.engines.mysql.held_objects import HeldObjects
from lifeboat.worker.engines.mysql.lost_connection import lost_connection
from lifeboat.worker.engines.mysql.reserved_names import (
    CONSTRAINT,
    PARKED,
    RESERVED_PREFIX,
    STAGED,
    StagingNames,
    reserved_role,
)
from lifeboat.worker.errors import (
    DatabaseRefused,
    DumpFailed,
    RestoreError,
    ServerDiskFull,
    VerificationFailed,
)
from lifeboat.worker.manifest import Manifest
from lifeboat.worker.progress import Progress
from lifeboat.worker.streams import CHUNK_SIZE, Readable

_DISK_FULL = re.compile(
    r"ERROR (1114|1021) \(|No space left on device|Errcode: 28\b|error 28\b|Disk quota exceeded"
)
"""The server's volume full: 1114 `The table '...' is full` (InnoDB cannot extend the table's
file), 1021 ER_DISK_FULL, or the OS error ENOSPC (28) in another message."""


@dataclass(frozen=True)
class Leftovers:
    """What interrupted restores left in a database."""

    staged: list[str]
    parked: list[str]
    constraints: list[tuple[str, str]]
    """(table, constraint): foreign keys still carrying a staged name."""

    def notes(self, database: str) -> list[str]:
        notes = []
        if self.staged:
            notes.append(
                f"staged tables of an interrupted restore are in {database} and will be "
                f"removed (they were never swapped in): {', '.join(self.staged)}"
            )
        if self.parked:
            drop = ", ".join(quote(t) for t in self.parked)
            notes.append(
                f"parked tables of an interrupted restore are in {database}: "
                f"{', '.join(self.parked)}; they hold the tables the target had before that "
                f"restore swapped in its own, and are kept: check them, then DROP TABLE {drop}"
            )
        for table, constraint in self.constraints:
            notes.append(
                f"foreign key {constraint} of table {table} still has the name an interrupted "
                "restore staged it under; the next restore of that table replaces it"
            )
        return notes


def find_leftovers(session: Session, database: str) -> Leftovers:
    like = RESERVED_PREFIX.replace("_", "\\_") + "%"
    tables = [
        str(name)
        for (name,) in session.query(
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME LIKE %s ORDER BY TABLE_NAME",
            (database, like),
        )
    ]
    constraints = [
        (str(table), str(name))
        for table, name in session.query(
            "SELECT TABLE_NAME, CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = %s AND CONSTRAINT_NAME LIKE %s ORDER BY TABLE_NAME",
            (database, like),
        )
        if reserved_role(str(name)) == CONSTRAINT and reserved_role(str(table)) is None
    ]
    return Leftovers(
        staged=[t for t in tables if reserved_role(t) == STAGED],
        parked=[t for t in tables if reserved_role(t) == PARKED],
        constraints=constraints,
    )


def drop_tables(session: Session, database: str, tables: Sequence[str]) -> None:
    """Drop tables in one statement (foreign keys between them do not matter)."""
    if tables:
        session.execute(
            "DROP TABLE IF EXISTS " + ", ".join(f"{quote(database)}.{quote(t)}" for t in tables)
        )


@dataclass
class StagedBackup:
    """The backup, loaded under staged names, with what the swap needs to know about it."""

    names: StagingNames
    row_counts: dict[str, int]
    held: HeldObjects
    objects: list[str]
    trigger_tables: dict[str, str]

    @property
    def tables(self) -> list[str]:
        return list(self.names.staged)

    def names_of(self, kind: str) -> set[str]:
        prefix = kind + " "
        return {label[len(prefix) :] for label in self.objects if label.startswith(prefix)}


def load(
    connector: Connector,
    database: str,
    source: Readable,
    progress: Progress,
    names: StagingNames,
) -> StagedBackup:
    """Stream the dump into staged tables of `database` through the `mariadb` client."""
    argv, mariadb_client = connector.client_argv(database)
    tool = ToolProcess(
        argv,
        env=connector.tool_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        secrets=connector.secrets(),
    )
    scanner = SqlDumpScanner(
        on_table_start=progress.start_item,
        on_table_done=progress.item_done,
        sink=tool.stdin.write,
        staging=names,
        unqualify_triggers=True,
        drop_sandbox_line=not mariadb_client,
    )
    try:
        try:
            while chunk := source.read(CHUNK_SIZE):
                scanner.feed(chunk)
            scanner.close()
            tool.stdin.close()
        except BrokenPipeError:
            pass  # the client stopped at an error; its stderr says which
        except DumpFailed as exc:
            raise RestoreError(f"the backup is not a dump Lifeboat can read: {exc}") from None
        code = tool.wait()
    finally:
        tool.kill()  # at once if we are leaving early; else it only closes the pipes
    if code != 0:
        lost = lost_connection(
            connector,
            tool.error_lines(),
            doing="while loading the backup into staged tables",
            outcome="the target was not touched (the next restore removes the staged tables)",
        )
        if lost is not None:
            raise lost
        if _DISK_FULL.search(tool.last_error()):
            raise ServerDiskFull(
                f"the {connector.product} server at {connector.where} ran out of disk space (or "
                "a tablespace reached its size limit) while loading the backup into staged "
                f"tables ({connector.redact(tool.last_error())}): the target was not touched and "
                "the staged tables are dropped; free space on the server's volume (or grow it), "
                "then restore again"
            )
        what = (
            f"{tool.name} failed loading the backup into staged tables (the target was not touched)"
        )
        error = connector.tool_error(tool.last_error(), what=what)
        if isinstance(error, DatabaseRefused):
            raise error
        raise RestoreError(f"{what}: {connector.redact(tool.last_error())}")
    if not scanner.completed:
        raise RestoreError(
            "the backup ends before mariadb-dump's 'Dump completed' line: it is truncated"
        )
    return StagedBackup(
        names=names,
        row_counts=dict(scanner.row_counts),
        held=HeldObjects(scanner.held, scanner.preamble),
        objects=list(scanner.objects),
        trigger_tables=dict(scanner.trigger_tables),
    )


def verify(
    session: Session, database: str, staged: StagedBackup, manifest: Manifest
) -> dict[str, int]:
    """Count rows in the staged tables; any difference with the manifest fails the restore.
    Returns the counts, by the backup's table names."""
    restored = {
        table: int(
            session.scalar(
                f"SELECT COUNT(*) FROM {quote(database)}.{quote(staged.names.table(table))}"
            )
        )
        for table in staged.row_counts
    }
    expected = manifest.row_counts
    problems = [
        f"table {t}: backup has {n} rows, loaded {restored.get(t, 'none')}"
        for t, n in sorted(expected.items())
        if restored.get(t) != n
    ]
    problems += [f"table {t} is not in the manifest" for t in sorted(restored) if t not in expected]
    if problems:
        raise VerificationFailed(
            "the backup does not match its manifest (the target was not touched): "
            + "; ".join(problems),
            problems,
        )
    return restored


def discard(session: Session, database: str, names: StagingNames, *, created: bool) -> None:
    """Remove what a failed load left: the staged tables, or the database it created."""
    with contextlib.suppress(pymysql.MySQLError):
        if created:
            session.execute(f"DROP DATABASE IF EXISTS {quote(database)}")
        else:
            drop_tables(session, database, list(names.staged.values()))
