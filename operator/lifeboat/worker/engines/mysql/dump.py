"""Backups: `mariadb-dump --single-transaction` as a stream, rows counted as the stream passes.

mariadb-dump reads every InnoDB table in one consistent snapshot and writes plain SQL without
`CREATE DATABASE`/`USE`, so a backup can be restored under another database name. Rows are
counted in the dump stream itself as the pipeline reads it (dump_stream.SqlDumpScanner): the
manifest then holds exactly what the artifact holds, even while other clients write, and no
second query can see another snapshot. The same scan lists the dump's objects and the DEFINER
accounts of its views, routines, triggers and events, for the manifest.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from lifeboat.worker.engines._process import ToolProcess
from lifeboat.worker.engines.base import DumpSummary
from lifeboat.worker.engines.mysql.connection import Connector, tool_help
from lifeboat.worker.engines.mysql.dump_stream import SqlDumpScanner
from lifeboat.worker.engines.mysql.lost_connection import lost_connection
from lifeboat.worker.errors import DatabaseRefused, DatabaseUnreachable, DumpFailed
from lifeboat.worker.progress import Progress
from lifeboat.worker.streams import block_buffered, tool_name, widen_pipe

_READING_TABLE = re.compile(r"-- Retrieving table structure for table (.+)\.\.\.$")
_ERROR_CODE = re.compile(r"\((\d{4})\)$|[Ee]rror: (\d{4}):")


def dump_argv(connector: Connector) -> list[str]:
    tool = connector.dump_tool()
    argv = [
        tool,
        *connector.connection_args(),
        "--single-transaction",  # one consistent snapshot, no locks on InnoDB
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",  # binary as 0x..: exact, and keeps the stream easy to scan
        "--verbose",  # "Retrieving table structure for table x..." feeds progress
        "--skip-dump-date",  # same data, same bytes
        "--comments",  # the scanner needs the "-- Dumping data for table" titles
        "--add-locks",  # "UNLOCK TABLES;" closes each table's data
        "--extended-insert",
        "--quick",  # stream rows instead of buffering whole tables in the tool
        "--quote-names",
        "--no-tablespaces",  # needs PROCESS otherwise (MySQL 8); a restore never wants them
    ]
    help_text = tool_help(tool)
    if "MariaDB" not in help_text:
        if "set-gtid-purged" in help_text:
            argv.append("--set-gtid-purged=OFF")  # else the dump rewrites the target's GTIDs
        if "column-statistics" in help_text:
            argv.append("--column-statistics=0")  # MySQL 8 tools against older servers
    return [*argv, "--", connector.url.database]


class MySQLDumpStream:
    """The running mariadb-dump: bytes for the pipeline, rows counted as they pass."""

    def __init__(self, tool: ToolProcess, scanner: SqlDumpScanner, connector: Connector) -> None:
        self._connector = connector
        self._tool = tool
        self._scanner = scanner
        self._at_end = False

    def read(self, n: int = -1, /) -> bytes:
        data = self._tool.stdout.read(n)
        if data:
            self._scanner.feed(data)
        else:
            self._at_end = True
        return data

    def finish(self) -> DumpSummary:
        if not self._at_end:
            raise DumpFailed("the dump was finished before it was read to its end")
        code = self._tool.wait()
        if code != 0:
            raise self._failure()
        self._scanner.close()
        if not self._scanner.completed:
            raise DumpFailed(f"{self._tool.name} exited without writing its 'Dump completed' line")
        return DumpSummary(
            row_counts=dict(self._scanner.row_counts),
            roles=sorted(self._scanner.definers),
            objects=list(self._scanner.objects),
        )

    def _failure(self) -> DumpFailed | DatabaseRefused | DatabaseUnreachable:
        """The tool's own error line (not its --verbose chatter); a refusal keeps its type, a
        session the server cut is DatabaseUnreachable."""
        lines = [line for line in self._tool.error_lines() if not line.startswith("-- ")]
        lost = lost_connection(
            self._connector,
            lines,
            doing=f"while {self._tool.name} was dumping",
            outcome="no backup was written",
        )
        if lost is not None:
            return lost
        line = lines[-1] if lines else self._tool.last_error()
        code = _ERROR_CODE.search(line)
        if code is not None:
            number = int(code.group(1) or code.group(2))
            error = self._connector.error_for(number, line, database=self._connector.url.database)
            if isinstance(error, DatabaseRefused):
                return type(error)(f"{self._tool.name} failed: {error}")
        return DumpFailed(f"{self._tool.name} failed: {line}")


@contextlib.contextmanager
def run_dump(connector: Connector, progress: Progress) -> Iterator[MySQLDumpStream]:
    """Run mariadb-dump; stderr says which table it reads, the stream which one is done."""
    reading: list[str] = []

    def on_stderr(line: str) -> None:
        match = _READING_TABLE.match(line)
        if match:
            reading[:] = [match.group(1)]
        elif line.startswith("-- Sending SELECT query") and reading:
            progress.start_item(reading[0])

    argv = dump_argv(connector)
    tool = ToolProcess(
        block_buffered(argv),
        env=connector.tool_env(),
        on_line=on_stderr,
        secrets=connector.secrets(),
    )
    tool.name = tool_name(argv)
    widen_pipe(tool.stdout)
    try:
        yield MySQLDumpStream(tool, SqlDumpScanner(on_table_done=progress.item_done), connector)
    finally:
        tool.kill()
