"""MySQL and MariaDB: `mariadb-dump` for backups; a shadow database and one RENAME for restores.

Backup
    `mariadb-dump --single-transaction` reads every InnoDB table in one consistent snapshot and
    writes plain SQL without `CREATE DATABASE`/`USE`, so a backup can be restored under another
    database name. Rows are counted in the dump stream itself as the pipeline reads it
    (`SqlDumpScanner`): the manifest then holds exactly what the artifact holds, even while other
    clients write, and no second query can see a different snapshot.

Restore
    DDL is not transactional in MySQL, so a restore never writes into the target directly:

    1. The dump is loaded into a fresh shadow database `<db>__lifeboat_<id>_new` by the `mariadb`
       client, which stops at the first error. Events are held back (an event created in the
       shadow could fire and change rows after they were counted); trigger names the dump
       qualified with the old database are made relative, so nothing lands outside the shadow.
    2. Rows are counted in the shadow and compared with the manifest. A mismatch, a failing
       statement, or `source.read` raising (ChecksumMismatch at its end) drops the shadow: up to
       here the target has not been touched.
    3. The swap. MySQL refuses to move a table that has triggers to another database, and views
       and routines cannot be moved at all, so only tables move and the rest is re-created:
         a. drop the shadow's triggers (nobody uses the shadow), then the target's triggers on the
            tables about to be replaced (and target views named like a backup table);
         b. one `RENAME TABLE target.t TO parking.t, ..., shadow.t TO target.t, ...` statement
            parks the target's tables in `<db>__lifeboat_<id>_old` and moves the backup's in: it
            is atomic (and crash-safe since MariaDB 10.6), readers see all old or all new tables;
         c. re-create the backup's triggers on the new tables, then its routines and views
            (`CREATE OR REPLACE`, so they never disappear) and its events (the held-back part of
            the dump, replayed by the client); with `keep_extra_objects=False` drop the views,
            routines and events the backup does not have. Extra tables were parked in (b).
       Every step of (a)-(c) is journaled; if one fails, the journal is undone in reverse order
       (the reverse RENAME puts the old tables back) and the target is as before.
    4. Only after success are the parking and shadow databases dropped.

    Non-atomic windows (milliseconds, one statement per object):
      * between (a) and (b) the old tables have no triggers: writes in that window skip them,
        but those rows are being replaced by the backup anyway;
      * between (b) and the end of (c) the new tables exist but some of their triggers do not
        yet, and views, routines and events still have their old definitions (views resolve
        tables by name, so they already read the restored tables).

Limits
    Privileges: SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES for a backup; for a restore also
    CREATE and DROP of databases (shadow, parking), ALTER, INSERT, CREATE VIEW, CREATE ROUTINE,
    ALTER ROUTINE, and SUPER or SET USER when objects have another DEFINER. Users and grants are
    not in a backup (they are server-wide): definers must exist where the backup is restored.
    mariadb-dump makes view definitions relative to the dumped database, but routine and trigger
    bodies that name it explicitly (`shop.orders`) keep naming it. Triggers travel with their
    table: a replaced table carries only the backup's triggers. On a name clash the backup's
    object wins. A foreign key that points at a replaced table from a table that stays (kept with
    `keep_extra_objects=True`, or in another database) would follow the old table into parking;
    such a restore is refused before anything changes. The swap waits at most 60 s for metadata
    locks (a long transaction on the target), then fails and rolls back. One restore at a time
    per target database.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import pymysql

from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.engines._process import ToolProcess
from lifeboat.worker.engines.base import (
    DumpSummary,
    RestoreOptions,
    RestoreResult,
    ServerInfo,
)
from lifeboat.worker.errors import (
    AuthenticationFailed,
    DatabaseError,
    DatabaseUnreachable,
    DumpFailed,
    LifeboatError,
    RestoreError,
    UsageError,
    VerificationFailed,
)
from lifeboat.worker.manifest import Manifest
from lifeboat.worker.progress import Progress
from lifeboat.worker.streams import CHUNK_SIZE, Readable

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

    _Connection = Connection[Cursor]

# Table types that hold rows we count, and those RENAME moves (MariaDB sequences are tables too).
_COUNTED_TYPES = ("BASE TABLE", "SYSTEM VERSIONED")
_MOVABLE_TYPES = (*_COUNTED_TYPES, "SEQUENCE")
_UNREACHABLE_CODES = {2002, 2003, 2005, 2006, 2013}
_LOCK_WAIT_SECONDS = 60
_MAX_PACKET = "1G"


def _q(identifier: str) -> str:
    """A MySQL identifier in backquotes, safe for any name."""
    return "`" + identifier.replace("`", "``") + "`"


# -- reading the dump stream -------------------------------------------------------------------

_IDENT = rb"`((?:[^`]|``)+)`"
_DATA_TITLE = re.compile(rb"-- Dumping data for table " + _IDENT)
_INSERT_HEAD = re.compile(rb"INSERT INTO " + _IDENT + rb" VALUES ?")
# One row of an extended INSERT: parentheses around numbers, NULL, 0x.. and quoted strings (with
# backslash escapes). Possessive quantifiers keep a malformed row from backtracking for ever.
_ROW = re.compile(rb"\((?:[^'()]++|'(?:[^'\\]++|\\.)*+')*+\)", re.DOTALL)
_ROW_SEPARATORS = b" ,\t\r\n"
_SECTION_TITLE = re.compile(
    rb"-- (?:Table structure|Sequence structure|Temporary (?:table|view) structure|Dumping"
    rb"|Final view structure|Dump completed)"
)
_EVENTS_TITLE = b"-- Dumping events for database "
_AFTER_EVENTS = (
    b"-- Dumping routines for database ",
    b"-- Final view structure for view ",
    b"-- Dump completed",
    b"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE",
)
_SANDBOX_LINE = b"/*M!999999\\-"
_NAME = rb"(?:`(?:[^`]|``)+`|[0-9A-Za-z_$\x80-\xff]+)"
_TRIGGER_HEAD = re.compile(
    rb"(?P<head>/\*!50003 CREATE\*/ (?:/\*!50017 DEFINER=.*?\*/ )?/\*!50003 TRIGGER )"
    rb"(?:" + _NAME + rb"\.)?(?P<name>" + _NAME + rb")"
    rb"(?P<mid>\s+(?:BEFORE|AFTER)\s+(?:INSERT|UPDATE|DELETE)\s+ON\s+)"
    rb"(?:" + _NAME + rb"\.)?(?P<table>" + _NAME + rb")",
    re.IGNORECASE,
)
_HELD_EVENT = re.compile(rb"DROP EVENT IF EXISTS " + _IDENT)

_OUTSIDE, _DATA, _INSERT = "outside", "data", "insert"


def _name(raw: bytes) -> str:
    return raw.replace(b"``", b"`").decode("utf-8", "replace")


class SqlDumpScanner:
    """Reads a mariadb-dump stream as it flows: exact row counts and table boundaries.

    Works on whole lines and keeps only the unfinished last line. This relies on how mysqldump
    writes data: strings are escaped (a newline is `\\n`), binary is hex (`--hex-blob`), so a raw
    newline never occurs inside a value, and an INSERT ends with `;` at the end of a line. Rows of
    an INSERT are counted in bulk by one compiled regex (C speed); a row that does not parse stops
    the scan with an error rather than letting the manifest lie.

    For a restore, it also forwards the stream to `sink` while holding back the events section
    (`held`) and making the dump's database-qualified trigger names relative.
    """

    def __init__(
        self,
        *,
        on_table_start: Callable[[str], None] | None = None,
        on_table_done: Callable[[str], None] | None = None,
        sink: Callable[[bytes], object] | None = None,
        hold_events: bool = False,
        unqualify_triggers: bool = False,
        drop_sandbox_line: bool = False,
    ) -> None:
        self.row_counts: dict[str, int] = {}
        self.completed = False
        """True once mariadb-dump's final `-- Dump completed` line went by."""
        self.preamble: list[bytes] = []
        """The session settings at the top of the dump, to replay held-back parts with."""
        self.held: list[bytes] = []
        self._on_table_start = on_table_start
        self._on_table_done = on_table_done
        self._sink = sink
        self._hold_events = hold_events
        self._unqualify_triggers = unqualify_triggers
        self._drop_sandbox_line = drop_sandbox_line
        self._partial: list[bytes] = []
        self._state = _OUTSIDE
        self._table = ""
        self._in_delimiter_block = False
        self._holding = False
        self._before_first_section = True

    @property
    def held_event_names(self) -> list[str]:
        return [_name(m.group(1)) for m in _HELD_EVENT.finditer(b"".join(self.held))]

    def feed(self, data: bytes) -> None:
        end = data.rfind(b"\n") + 1
        if end == 0:
            self._partial.append(data)
            return
        if self._partial:
            self._partial.append(data)
            data = b"".join(self._partial)
            end = data.rfind(b"\n") + 1
            self._partial = []
        if end < len(data):
            self._partial.append(data[end:])
        self._scan(data, end)

    def close(self) -> None:
        """The stream ended: scan the last line if it had no newline; it must not cut a row."""
        if self._partial:
            rest = b"".join(self._partial) + b"\n"
            self._partial = []
            self._scan(rest, len(rest))
        if self._state == _INSERT:
            raise DumpFailed(f"the dump ends inside an INSERT into table {self._table}")

    def _scan(self, buf: bytes, end: int) -> None:
        out: list[bytes] = []
        forward_from = 0
        pos = 0
        while pos < end:
            if self._state == _INSERT:
                stop = buf.find(b";\n", pos, end)
                rows_end = end if stop < 0 else stop
                self._count_rows(buf[pos:rows_end])
                pos = end if stop < 0 else stop + 2
                if stop >= 0:
                    self._state = _DATA
                continue
            if self._state == _DATA and buf.startswith(b"INSERT INTO ", pos):
                head = _INSERT_HEAD.match(buf, pos)
                if head is None:
                    line = buf[pos : buf.find(b"\n", pos)][:80]
                    raise DumpFailed(f"cannot count rows of an unexpected statement: {line!r}")
                self._table = _name(head.group(1))
                self.row_counts.setdefault(self._table, 0)
                self._state = _INSERT
                pos = head.end()
                continue
            nl = buf.index(b"\n", pos)
            line = buf[pos:nl]
            replacement = self._line(line)
            if replacement is not None and self._sink is not None:
                out.append(buf[forward_from:pos])
                out.append(replacement)
                forward_from = nl + 1
            pos = nl + 1
        if self._sink is not None:
            out.append(buf[forward_from:end])
            chunk = b"".join(out)
            if chunk:
                self._sink(chunk)

    def _count_rows(self, rows: bytes) -> None:
        rest, n = _ROW.subn(b"", rows)
        if rest.translate(None, _ROW_SEPARATORS):
            raise DumpFailed(
                f"cannot count rows of table {self._table}: unexpected text in its INSERT "
                f"({rest.translate(None, _ROW_SEPARATORS)[:60]!r})"
            )
        self.row_counts[self._table] += n

    def _line(self, line: bytes) -> bytes | None:
        """Track sections; return what to forward instead of the line (b"" drops it), or None."""
        if line.startswith(b"DELIMITER "):
            self._in_delimiter_block = line.strip() != b"DELIMITER ;"
            if self._state == _DATA:
                self._state = _OUTSIDE
            return self._route(line)
        if self._in_delimiter_block:
            if self._unqualify_triggers and line.startswith(b"/*!50003 CREATE*/"):
                relative = _TRIGGER_HEAD.sub(rb"\g<head>\g<name>\g<mid>\g<table>", line, count=1)
                if relative != line:
                    return self._route(relative, changed=True)
            return self._route(line)
        if self._state == _DATA:
            if line == b"UNLOCK TABLES;":
                self._state = _OUTSIDE
                if self._on_table_done is not None:
                    self._on_table_done(self._table)
                return self._route(line)
            if not line.startswith(b"-- "):
                return self._route(line)
            self._state = _OUTSIDE
        if self._before_first_section:
            if _SECTION_TITLE.match(line):
                self._before_first_section = False
            elif line.startswith(b"/*"):
                self.preamble.append(line + b"\n")
                if self._drop_sandbox_line and line.startswith(_SANDBOX_LINE):
                    return b""
        title = _DATA_TITLE.match(line)
        if title is not None:
            self._table = _name(title.group(1))
            self.row_counts.setdefault(self._table, 0)
            self._state = _DATA
            if self._on_table_start is not None:
                self._on_table_start(self._table)
        elif line.startswith(_EVENTS_TITLE):
            self._holding = self._hold_events
        elif self._holding and line.startswith(_AFTER_EVENTS):
            self._holding = False
        if line.startswith(b"-- Dump completed"):
            self.completed = True
        return self._route(line)

    def _route(self, line: bytes, *, changed: bool = False) -> bytes | None:
        if self._holding:
            self.held.append(line + b"\n")
            return b""
        return line + b"\n" if changed else None


# -- the engine ---------------------------------------------------------------------------------


@functools.cache
def _tool_help(tool: str) -> str:
    """`tool --help` text (it starts with the version), to adapt flags to MariaDB or MySQL."""
    try:
        done = subprocess.run(
            [tool, "--no-defaults", "--help", "--verbose"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


def _login_name() -> str:
    """Who the MySQL tools connect as when the URL names no user: the login name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container uid without a passwd entry
        return "root"


def _pick_tool(preferred: str, fallback: str) -> str:
    return preferred if shutil.which(preferred) else fallback


class _DumpStream:
    """The running mariadb-dump: bytes for the pipeline, rows counted as they pass."""

    def __init__(self, tool: ToolProcess, scanner: SqlDumpScanner) -> None:
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
            raise DumpFailed(f"{self._tool.name} failed: {self._tool.last_error()}")
        self._scanner.close()
        if not self._scanner.completed:
            raise DumpFailed(f"{self._tool.name} exited without writing its 'Dump completed' line")
        return DumpSummary(row_counts=dict(self._scanner.row_counts))


class MySQLEngine:
    """A MySQL or MariaDB database, reached over TCP; tools preferred: mariadb-dump, mariadb."""

    name: ClassVar[str] = "mysql"
    dump_format: ClassVar[str] = "mysql-sql"
    product: ClassVar[str] = "MySQL"

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url
        self.host = url.host or "localhost"
        self.port = url.port or 3306
        self.user = url.user or _login_name()
        timeout = url.options.get("connect_timeout", "10")
        if not timeout.isdigit() or int(timeout) < 1:
            raise UsageError(
                f"DATABASE_URL: connect_timeout must be a number of seconds, not {timeout!r}"
            )
        self.connect_timeout = int(timeout)

    # -- connections ---------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _redact(self, text: str) -> str:
        password = self.url.password
        return text.replace(password, "***") if password else text

    def _error(self, exc: pymysql.MySQLError, database: str | None) -> DatabaseError:
        """One clear line for a driver error; never the password."""
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        text = self._redact(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
        if code == 1045:
            return AuthenticationFailed(
                f"{self.product} at {self._where} refused user '{self.user}' ({text}); "
                "check LIFEBOAT_DB_PASSWORD / the secret that provides it"
            )
        if code == 1044:
            return AuthenticationFailed(
                f"user '{self.user}' has no access to database '{database}' on {self._where}; "
                "grant it the privileges listed in the docs"
            )
        if code == 1049:
            return DatabaseError(f"database '{database}' does not exist on {self._where}")
        if code in _UNREACHABLE_CODES or code is None:
            return DatabaseUnreachable(f"cannot reach {self.product} at {self._where}: {text}")
        return DatabaseError(f"{self.product} at {self._where}: {text} (error {code})")

    def _connect(self, database: str | None) -> _Connection:
        try:
            return pymysql.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                # Bytes: PyMySQL would encode a str as latin-1, the tools send UTF-8.
                password=(self.url.password or "").encode(),
                database=database,
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=self.connect_timeout,
            )
        except pymysql.MySQLError as exc:
            raise self._error(exc, database) from None

    @contextlib.contextmanager
    def _session(self, database: str | None) -> Iterator[_Session]:
        conn = self._connect(database)
        try:
            yield _Session(conn, self)
        except pymysql.MySQLError as exc:
            raise self._error(exc, database) from None
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    # -- tools ---------------------------------------------------------------------------------

    def _tool_env(self) -> dict[str, str]:
        return {"MYSQL_PWD": self.url.password} if self.url.password else {}

    def _secrets(self) -> list[str]:
        return [self.url.password] if self.url.password else []

    def _connection_args(self) -> list[str]:
        # --no-defaults: behaviour comes from the URL, not from whatever my.cnf the image has.
        return [
            "--no-defaults",
            "--protocol=TCP",
            f"--host={self.host}",
            f"--port={self.port}",
            f"--user={self.user}",
            "--default-character-set=utf8mb4",
            f"--max-allowed-packet={_MAX_PACKET}",
        ]

    def _dump_argv(self) -> list[str]:
        tool = _pick_tool("mariadb-dump", "mysqldump")
        argv = [
            tool,
            *self._connection_args(),
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
        help_text = _tool_help(tool)
        if "MariaDB" not in help_text:
            if "set-gtid-purged" in help_text:
                argv.append("--set-gtid-purged=OFF")  # else the dump rewrites the target's GTIDs
            if "column-statistics" in help_text:
                argv.append("--column-statistics=0")  # MySQL 8 tools against older servers
        return [*argv, "--", self.url.database]

    def _client_argv(self, database: str) -> tuple[list[str], bool]:
        """The `mariadb` client for `database`, and whether it is MariaDB's (sandbox aware)."""
        tool = _pick_tool("mariadb", "mysql")
        help_text = _tool_help(tool)
        argv = [tool, *self._connection_args(), f"--connect-timeout={self.connect_timeout}"]
        if "--sandbox" in help_text:
            argv.append("--sandbox")  # a backup must not run shell commands (\!) on restore
        argv += ["--batch", f"--database={database}"]
        return argv, "MariaDB" in help_text

    # -- Engine --------------------------------------------------------------------------------

    def inspect(self) -> ServerInfo:
        """Version, base tables and their data size, from the server's catalog."""
        database = self.url.database
        with self._session(database) as s:
            version = str(s.scalar("SELECT VERSION()"))
            rows = s.query(
                "SELECT TABLE_NAME, COALESCE(DATA_LENGTH, 0) FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN %s ORDER BY TABLE_NAME",
                (database, _COUNTED_TYPES),
            )
        return ServerInfo(
            version=version,
            tables=[str(r[0]) for r in rows],
            estimated_bytes=sum(int(r[1]) for r in rows),
        )

    @contextlib.contextmanager
    def dump(self, progress: Progress) -> Iterator[_DumpStream]:
        """Run mariadb-dump; stderr says which table it reads, the stream which one is done."""
        reading: list[str] = []

        def on_stderr(line: str) -> None:
            match = re.match(r"-- Retrieving table structure for table (.+)\.\.\.$", line)
            if match:
                reading[:] = [match.group(1)]
            elif line.startswith("-- Sending SELECT query") and reading:
                progress.start_item(reading[0])

        tool = ToolProcess(
            self._dump_argv(), env=self._tool_env(), on_line=on_stderr, secrets=self._secrets()
        )
        try:
            yield _DumpStream(tool, SqlDumpScanner(on_table_done=progress.item_done))
        finally:
            tool.kill()

    def restore(
        self, source: Readable, manifest: Manifest, progress: Progress, options: RestoreOptions
    ) -> RestoreResult:
        """Load into a shadow database, verify, swap with one RENAME; see the module docstring."""
        with self._session(None) as session:
            return _Restore(self, session, manifest, progress, options).run(source)


class MariaDBEngine(MySQLEngine):
    """The same engine under MariaDB's name (mariadb:// URLs)."""

    name: ClassVar[str] = "mariadb"
    product: ClassVar[str] = "MariaDB"


# -- restore ------------------------------------------------------------------------------------


class _Session:
    """A PyMySQL connection with the few query shapes the engine needs."""

    def __init__(self, conn: _Connection, engine: MySQLEngine) -> None:
        self.conn = conn
        self.engine = engine

    def query(self, sql: str, args: object = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())

    def execute(self, sql: str, args: object = None) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)

    def scalar(self, sql: str, args: object = None) -> Any:
        rows = self.query(sql, args)
        return rows[0][0] if rows else None

    def show(self, sql: str) -> dict[str, Any]:
        """The one row of a SHOW CREATE statement, by column name."""
        with self.conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            names = [d[0] for d in cur.description or ()]
        if row is None:
            raise RestoreError(f"{sql} returned nothing")
        return dict(zip(names, row, strict=True))


@dataclass(frozen=True)
class _SchemaObject:
    """A view, trigger, routine or event as SHOW CREATE gives it, with its session settings."""

    kind: str
    name: str
    create: str
    character_set_client: str
    collation_connection: str
    sql_mode: str = ""
    time_zone: str | None = None
    table: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)


@dataclass
class _Catalog:
    """What one database holds, read before the swap so every undo is prepared in advance."""

    tables: list[str] = field(default_factory=list)
    counted: list[str] = field(default_factory=list)
    views: dict[str, _SchemaObject] = field(default_factory=dict)
    triggers: list[_SchemaObject] = field(default_factory=list)
    routines: dict[tuple[str, str], _SchemaObject] = field(default_factory=dict)
    events: dict[str, _SchemaObject] = field(default_factory=dict)


class _Restore:
    """One restore: shadow load, verification, journaled swap (see the module docstring)."""

    def __init__(
        self,
        engine: MySQLEngine,
        session: _Session,
        manifest: Manifest,
        progress: Progress,
        options: RestoreOptions,
    ) -> None:
        self.engine = engine
        self.s = session
        self.manifest = manifest
        self.progress = progress
        self.options = options
        self.target = engine.url.database
        token = secrets.token_hex(4)
        self.shadow = f"{self.target[:41]}__lifeboat_{token}_new"
        self.parking = f"{self.target[:41]}__lifeboat_{token}_old"
        self.notes: list[str] = []
        self.mariadb_server = False

    # -- the steps -----------------------------------------------------------------------------

    def run(self, source: Readable) -> RestoreResult:
        s = self.s
        self.mariadb_server = "mariadb" in str(s.scalar("SELECT VERSION()")).lower()
        s.execute("SET SESSION lock_wait_timeout = %s", (_LOCK_WAIT_SECONDS,))
        s.execute("SET SESSION foreign_key_checks = 0")
        self._note_leftovers()
        charset = s.query(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (self.target,),
        )
        target_exists = bool(charset)
        options = f" CHARACTER SET {charset[0][0]} COLLATE {charset[0][1]}" if charset else ""
        self._sql(f"CREATE DATABASE {_q(self.shadow)}{options}", "create the shadow database")
        try:
            held, held_events = self._load(source)
            backup = self._catalog(self.shadow, with_events=False)
            self._verify(backup)
            current = self._catalog(self.target) if target_exists else _Catalog()
            self._check_foreign_keys(backup, current)
        except BaseException:
            self._drop_database_quietly(self.shadow)
            raise
        self._swap(backup, current, target_exists, held, held_events)
        counts = {t: self._count(self.target, t) for t in backup.counted}
        return RestoreResult(row_counts=counts, notes=self.notes)

    def _load(self, source: Readable) -> tuple[bytes, list[str]]:
        """Feed the dump to the client for the shadow; return the held-back events part."""
        argv, mariadb_client = self.engine._client_argv(self.shadow)
        tool = ToolProcess(
            argv,
            env=self.engine._tool_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            secrets=self.engine._secrets(),
        )
        scanner = SqlDumpScanner(
            on_table_start=self.progress.start_item,
            on_table_done=self.progress.item_done,
            sink=tool.stdin.write,
            hold_events=True,
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
            raise RestoreError(
                f"{tool.name} failed loading the backup into a scratch database "
                f"(the target was not touched): {tool.last_error()}"
            )
        if not scanner.completed:
            raise RestoreError(
                "the backup ends before mariadb-dump's 'Dump completed' line: it is truncated"
            )
        held = b"".join(scanner.preamble + scanner.held) if scanner.held else b""
        return held, scanner.held_event_names

    def _verify(self, backup: _Catalog) -> None:
        restored = {t: self._count(self.shadow, t) for t in backup.counted}
        expected = self.manifest.row_counts
        problems = [
            f"table {t}: backup has {n} rows, loaded {restored.get(t, 'none')}"
            for t, n in sorted(expected.items())
            if restored.get(t) != n
        ]
        problems += [
            f"table {t} is not in the manifest" for t in sorted(restored) if t not in expected
        ]
        if problems:
            raise VerificationFailed(
                "the backup does not match its manifest (the target was not touched): "
                + "; ".join(problems),
                problems,
            )

    def _check_foreign_keys(self, backup: _Catalog, current: _Catalog) -> None:
        """Refuse what RENAME would break: foreign keys into a parked table from a kept one."""
        parked = set(self._parked(backup, current))
        if not parked:
            return
        rows = self.s.query(
            "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME "
            "FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE UNIQUE_CONSTRAINT_SCHEMA = %s",
            (self.target,),
        )
        for schema, table, constraint, referenced in rows:
            if referenced in parked and (schema != self.target or table not in parked):
                raise RestoreError(
                    f"foreign key {constraint} of {schema}.{table} points at table {referenced}, "
                    "which the restore replaces; MySQL would leave it pointing at the old table. "
                    "Drop that foreign key first or restore without keeping extra objects"
                )

    def _parked(self, backup: _Catalog, current: _Catalog) -> list[str]:
        if not self.options.keep_extra_objects:
            return list(current.tables)
        incoming = set(backup.tables) | set(backup.views)
        return [t for t in current.tables if t in incoming]

    def _swap(
        self,
        backup: _Catalog,
        current: _Catalog,
        target_exists: bool,
        held: bytes,
        held_events: list[str],
    ) -> None:
        target, shadow, parking = self.target, self.shadow, self.parking
        keep = self.options.keep_extra_objects
        parked = self._parked(backup, current)
        backup_trigger_names = {t.name for t in backup.triggers}
        doomed_triggers = [
            t for t in current.triggers if t.table in parked or t.name in backup_trigger_names
        ]
        doomed_views = [v for n, v in current.views.items() if n in backup.tables]
        journal = _Journal()
        try:
            self._sql(f"CREATE DATABASE {_q(parking)}", "create the parking database")
            journal.add("drop parking", self._sql, f"DROP DATABASE {_q(parking)}", "drop parking")
            if not target_exists:
                self._sql(
                    f"CREATE DATABASE {_q(target)} CHARACTER SET {self._schema_charset(shadow)}",
                    "create the target database",
                )
                journal.add("drop target", self._sql, f"DROP DATABASE {_q(target)}", "drop target")
            for trigger in backup.triggers:
                self._sql(f"DROP TRIGGER {_q(shadow)}.{_q(trigger.name)}", "drop shadow trigger")
            # Window (a) opens: the old tables lose their triggers just before they are parked.
            for trigger in doomed_triggers:
                self._sql(f"DROP TRIGGER {_q(target)}.{_q(trigger.name)}", "drop a trigger")
                journal.add(f"re-create trigger {trigger.name}", self._create, target, trigger)
            for view in doomed_views:
                self._sql(f"DROP VIEW {_q(target)}.{_q(view.name)}", "drop a view")
                journal.add(f"re-create view {view.name}", self._create, target, view)
            moves = [(target, t, parking) for t in parked] + [
                (shadow, t, target) for t in backup.tables
            ]
            if moves:
                self._sql(_rename(moves), "swap the tables")
                journal.add("rename back", self._sql, _rename(_reverse(moves)), "rename back")
            # Window (b) opens: the backup's tables are live; their triggers follow at once.
            # Undo steps that are safe to run either way are journaled before their action.
            for trigger in backup.triggers:
                journal.add(f"drop trigger {trigger.name}", self._drop, target, trigger)
                self._create(target, trigger)
            for routine in backup.routines.values():
                self._replace(journal, current.routines.get(routine.key), routine)
            self._create_views(journal, current, list(backup.views.values()))
            if held_events:
                journal.add("restore the events", self._restore_events, current)
                self._replay(target, held)
            if not keep:
                extras: list[_SchemaObject] = [
                    *(v for n, v in current.views.items() if n not in backup.views),
                    *(r for k, r in current.routines.items() if k not in backup.routines),
                    *(e for n, e in current.events.items() if n not in held_events),
                ]
                for obj in extras:
                    if obj in doomed_views:
                        continue
                    self._drop(target, obj)
                    journal.add(f"re-create {obj.kind} {obj.name}", self._create, target, obj)
        except BaseException as exc:
            failed = journal.undo()
            if failed is not None:
                raise RestoreError(
                    f"the restore failed while swapping ({exc}) and undoing it failed too "
                    f"({failed}); the previous tables are kept in database {parking}, "
                    f"the backup's in {shadow}"
                ) from exc
            self._drop_database_quietly(shadow)
            if isinstance(exc, LifeboatError):
                raise type(exc)(f"{exc}; rolled back, the target is as it was") from exc
            raise
        for leftover in (parking, shadow):
            try:
                self._sql(f"DROP DATABASE {_q(leftover)}", f"drop {leftover}")
            except LifeboatError as exc:
                self.notes.append(f"the restore succeeded but {exc}; drop it by hand")

    # -- helpers -------------------------------------------------------------------------------

    def _sql(self, sql: str, what: str) -> None:
        try:
            self.s.execute(sql)
        except pymysql.MySQLError as exc:
            raise RestoreError(
                f"could not {what}: {self.engine._error(exc, self.target)}"
            ) from None

    def _count(self, database: str, table: str) -> int:
        return int(self.s.scalar(f"SELECT COUNT(*) FROM {_q(database)}.{_q(table)}"))

    def _schema_charset(self, database: str) -> str:
        row = self.s.query(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME "
            "FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
            (database,),
        )[0]
        return f"{row[0]} COLLATE {row[1]}"

    def _drop_database_quietly(self, database: str) -> None:
        with contextlib.suppress(Exception):
            self.s.execute(f"DROP DATABASE IF EXISTS {_q(database)}")

    def _note_leftovers(self) -> None:
        pattern = self.target[:41].replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%")
        rows = self.s.query(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
            (pattern + "\\_\\_lifeboat\\_%",),
        )
        if rows:
            names = ", ".join(str(r[0]) for r in rows)
            self.notes.append(f"databases left by an interrupted earlier restore: {names}")

    def _catalog(self, database: str, *, with_events: bool = True) -> _Catalog:
        s = self.s
        catalog = _Catalog()
        for name, kind in s.query(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            (database,),
        ):
            if kind in _MOVABLE_TYPES:
                catalog.tables.append(name)
            if kind in _COUNTED_TYPES:
                catalog.counted.append(name)
            if kind == "VIEW":
                catalog.views[name] = _SchemaObject("VIEW", name, "", "", "")
        # SHOW CREATE VIEW leaves names of the current database unqualified: portable SQL.
        s.conn.select_db(database)
        for name in list(catalog.views):
            row = s.show(f"SHOW CREATE VIEW {_q(name)}")
            catalog.views[name] = _SchemaObject(
                "VIEW",
                name,
                str(row["Create View"]),
                str(row["character_set_client"]),
                str(row["collation_connection"]),
            )
        for name, table in s.query(
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = %s "
            "ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
            (database,),
        ):
            row = s.show(f"SHOW CREATE TRIGGER {_q(database)}.{_q(name)}")
            catalog.triggers.append(
                self._object("TRIGGER", name, row, "SQL Original Statement", table=table)
            )
        for name, kind in s.query(
            "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = %s AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION') "
            "ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
            (database,),
        ):
            row = s.show(f"SHOW CREATE {kind} {_q(database)}.{_q(name)}")
            routine = self._object(kind, name, row, f"Create {kind.title()}")
            catalog.routines[routine.key] = routine
        if with_events:
            for (name,) in s.query(
                "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
                (database,),
            ):
                row = s.show(f"SHOW CREATE EVENT {_q(database)}.{_q(name)}")
                catalog.events[name] = self._object("EVENT", name, row, "Create Event")
        return catalog

    def _object(
        self, kind: str, name: str, row: Mapping[str, Any], column: str, table: str | None = None
    ) -> _SchemaObject:
        create = row.get(column)
        if not create:
            raise RestoreError(
                f"cannot read the definition of {kind.lower()} {name}: user "
                f"'{self.engine.user}' needs the privileges to see it (SHOW CREATE {kind})"
            )
        return _SchemaObject(
            kind,
            name,
            str(create),
            str(row["character_set_client"]),
            str(row["collation_connection"]),
            sql_mode=str(row.get("sql_mode") or ""),
            time_zone=str(row["time_zone"]) if row.get("time_zone") else None,
            table=table,
        )

    def _replace(self, journal: _Journal, old: _SchemaObject | None, new: _SchemaObject) -> None:
        """Create `new` over the target's `old` (or nothing), journaling the way back first."""
        if old is not None:
            journal.add(f"restore {old.kind} {old.name}", self._create, self.target, old, True)
        else:
            journal.add(f"drop {new.kind} {new.name}", self._drop, self.target, new)
        self._create(self.target, new, replace=True)

    def _create_views(
        self, journal: _Journal, current: _Catalog, views: list[_SchemaObject]
    ) -> None:
        """Create views in rounds: one that uses another view fails until that one exists."""
        while views:
            failed: list[tuple[_SchemaObject, RestoreError]] = []
            for view in views:
                try:
                    self._replace(journal, current.views.get(view.name), view)
                except RestoreError as exc:
                    failed.append((view, exc))
            if len(failed) == len(views):
                raise failed[0][1]
            views = [view for view, _ in failed]

    def _create(self, database: str, obj: _SchemaObject, replace: bool = False) -> None:
        s = self.s
        statement = obj.create
        if replace and (self.mariadb_server or obj.kind == "VIEW"):
            statement = re.sub(r"^\s*CREATE\s+", "CREATE OR REPLACE ", statement, count=1)
        elif replace:
            self._drop(database, obj)
        try:
            s.conn.select_db(database)
            s.execute(
                "SET SESSION sql_mode = %s, character_set_client = %s, collation_connection = %s",
                (obj.sql_mode, obj.character_set_client, obj.collation_connection),
            )
            if obj.time_zone is not None:
                s.execute("SET SESSION time_zone = %s", (obj.time_zone,))
            s.execute(statement)
        except pymysql.MySQLError as exc:
            raise RestoreError(
                f"could not create {obj.kind.lower()} {obj.name} in {database}: "
                f"{self.engine._error(exc, database)}"
            ) from None
        finally:
            with contextlib.suppress(pymysql.MySQLError):
                s.execute("SET NAMES utf8mb4")
                s.execute("SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT")

    def _drop(self, database: str, obj: _SchemaObject) -> None:
        self._sql(
            f"DROP {obj.kind} IF EXISTS {_q(database)}.{_q(obj.name)}",
            f"drop {obj.kind.lower()} {obj.name}",
        )

    def _replay(self, database: str, sql: bytes) -> None:
        """Run held-back dump SQL (events, with DELIMITER blocks) through the client."""
        argv, _ = self.engine._client_argv(database)
        tool = ToolProcess(
            argv,
            env=self.engine._tool_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            secrets=self.engine._secrets(),
        )
        try:
            with contextlib.suppress(BrokenPipeError):
                tool.stdin.write(sql)
                tool.stdin.close()
            code = tool.wait()
        finally:
            tool.kill()
        if code != 0:
            raise RestoreError(f"could not create the backup's events: {tool.last_error()}")

    def _restore_events(self, current: _Catalog) -> None:
        for (name,) in self.s.query(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
            (self.target,),
        ):
            if name not in current.events:
                self._sql(f"DROP EVENT {_q(self.target)}.{_q(name)}", f"drop event {name}")
        for event in current.events.values():
            self._create(self.target, event, replace=True)


def _rename(moves: Sequence[tuple[str, str, str]]) -> str:
    pairs = [f"{_q(src)}.{_q(t)} TO {_q(dst)}.{_q(t)}" for src, t, dst in moves]
    return "RENAME TABLE " + ", ".join(pairs)


def _reverse(moves: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The undo of `moves`: the backup's tables leave the target before the old ones return."""
    return [(dst, table, src) for src, table, dst in reversed(moves)]


class _Journal:
    """Undo steps recorded as the swap goes; replayed in reverse when a later step fails."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[..., object], tuple[object, ...]]] = []

    def add(self, what: str, fn: Callable[..., object], *args: object) -> None:
        self._steps.append((what, fn, args))

    def undo(self) -> str | None:
        """Run every undo step, newest first; the first failure stops it and is returned."""
        while self._steps:
            what, fn, args = self._steps.pop()
            try:
                fn(*args)
            except (LifeboatError, pymysql.MySQLError, OSError) as exc:
                return f"{what}: {exc}"
        return None
