"""The dump: pg_dump inside one exported snapshot, with row counts, objects and roles read in that
same snapshot.

A psycopg session opens a REPEATABLE READ transaction, exports its snapshot, and takes ACCESS
SHARE locks on every user table before pg_dump starts with `--snapshot`. pg_dump and the exact
`count(*)` per table therefore read the same data, and no TRUNCATE or table rewrite can slip in
between the two reads. The session stays open until pg_dump has exited.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from lifeboat.worker.engines._process import ToolProcess
from lifeboat.worker.engines.base import DumpSummary
from lifeboat.worker.engines.postgres import catalog
from lifeboat.worker.engines.postgres.connection import Connector, first_line
from lifeboat.worker.engines.postgres.tools import (
    DUMPING_TABLE,
    ItemTracker,
    lost_connection,
    tool_error,
)
from lifeboat.worker.errors import DatabaseUnreachable, DumpFailed
from lifeboat.worker.progress import Progress
from lifeboat.worker.streams import block_buffered, tool_name, widen_pipe

# pg_dump can only wait on a lock behind a DDL statement that itself waits for our snapshot
# session's locks: a cycle the server cannot see. A bounded wait turns it into a clear failure.
LOCK_WAIT_TIMEOUT = "60s"

Table = tuple[str, str, str]  # schema, table, "schema.table" as the manifest names it


class PostgresDump:
    """A running pg_dump plus the snapshot session that counts rows (and lists the objects and
    roles the dump holds) in the same snapshot."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        tool: ToolProcess,
        tables: list[Table],
        items: ItemTracker,
        *,
        where: str = "the server",
    ) -> None:
        self._conn = conn
        self._where = where
        self._tool = tool
        self._tables = tables
        self._items = items
        self._counts: dict[str, int] = {}
        self._objects: list[str] = []
        self._roles: list[str] = []
        self._count_error: str | None = None
        self._counted = False
        self._counter = threading.Thread(target=self._read_snapshot, name="pg-row-counts")
        self._counter.daemon = True
        self._counter.start()

    def _read_snapshot(self) -> None:
        try:
            for schema, table, name in self._tables:
                query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
                row = self._conn.execute(query).fetchone()
                self._counts[name] = int(row[0]) if row else 0
            self._objects = catalog.object_labels(self._conn)
            self._roles = catalog.named_roles(self._conn)
            self._counted = True
        except psycopg.Error as exc:
            self._count_error = first_line(exc)

    def read(self, n: int = -1, /) -> bytes:
        return self._tool.stdout.read(n)

    def finish(self) -> DumpSummary:
        code = self._tool.wait()
        if code != 0:
            lost = lost_connection(self._tool)
            if lost is not None:
                said = re.sub(r"^(pg_dump: )?(detail: )?(Error message from server: )?", "", lost)
                raise DatabaseUnreachable(
                    f"the connection of pg_dump to PostgreSQL at {self._where} was lost "
                    f"mid-dump ({said}): the server restarted or the network failed; no backup "
                    "was written; a retry may succeed"
                )
            line = tool_error(self._tool).removeprefix("pg_dump: ")
            if "statement timeout" in line or "could not obtain lock" in line:
                # pg_dump sets statement_timeout only while it locks tables (--lock-wait-timeout).
                raise DumpFailed(
                    f"pg_dump could not lock every table within {LOCK_WAIT_TIMEOUT}: a DDL "
                    "statement (ALTER, DROP, TRUNCATE...) was waiting on a table as the backup "
                    f"started; retry the backup ({line})"
                )
            raise DumpFailed(f"pg_dump failed: {line}")
        self._items.finish()
        self._counter.join()
        if not self._counted:
            reason = self._count_error or "the counting thread stopped"
            raise DumpFailed(f"counting rows in the dump's snapshot failed: {reason}")
        with contextlib.suppress(psycopg.Error):
            self._conn.execute("COMMIT")
        return DumpSummary(
            row_counts=dict(self._counts), roles=list(self._roles), objects=list(self._objects)
        )

    def close(self) -> None:
        """Stop whatever still runs: pg_dump first, then the counting queries."""
        self._tool.kill()
        if self._counter.is_alive():
            with contextlib.suppress(psycopg.Error):
                self._conn.cancel_safe(timeout=10)
            self._counter.join(timeout=30)


def dump_argv(connector: Connector, snapshot: str) -> list[str]:
    """pg_dump's custom format, uncompressed (the pipeline compresses), in our snapshot.

    The archive keeps everything a database-level backup can hold: owners, privileges,
    comments, large objects, publications, subscriptions. Leaving things out is a choice
    for restore time (pg_restore can skip items of an archive, never add missing ones).
    """
    return [
        "pg_dump",
        "--format=custom",
        "--compress=0",
        f"--snapshot={snapshot}",
        f"--lock-wait-timeout={LOCK_WAIT_TIMEOUT}",
        "--verbose",
        "--no-password",
        f"--dbname={connector.conninfo(application='lifeboat-pg_dump')}",
    ]


def open_snapshot(conn: psycopg.Connection[Any]) -> tuple[str, list[Table]]:
    """Export a snapshot and lock every table in it, so a table can't change under us."""
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
        conn.execute(
            "SET LOCAL statement_timeout = 0; SET LOCAL row_security = off; "
            "SET LOCAL idle_in_transaction_session_timeout = 0"
        )
        tables = catalog.user_tables(conn)
        if tables:
            conn.execute(
                sql.SQL("LOCK TABLE {} IN ACCESS SHARE MODE").format(
                    sql.SQL(", ").join(
                        sql.SQL("ONLY {}.{}").format(sql.Identifier(s), sql.Identifier(t))
                        for s, t, _ in tables
                    )
                )
            )
    except psycopg.Error as exc:
        raise DumpFailed(f"could not open a consistent snapshot: {first_line(exc)}") from None
    assert row is not None
    return str(row[0]), tables


@contextlib.contextmanager
def start_dump(connector: Connector, progress: Progress) -> Iterator[PostgresDump]:
    """pg_dump running in a snapshot that our session holds open until the dump is left."""
    with connector.connect() as conn:
        snapshot, tables = open_snapshot(conn)
        items = ItemTracker(progress, DUMPING_TABLE)
        argv = dump_argv(connector, snapshot)
        tool = ToolProcess(
            block_buffered(argv),
            env=connector.tool_env(),
            on_line=items.on_line,
            secrets=connector.secrets(),
        )
        tool.name = tool_name(argv)
        widen_pipe(tool.stdout)
        stream = PostgresDump(conn, tool, tables, items, where=connector.where)
        try:
            yield stream
        finally:
            stream.close()
