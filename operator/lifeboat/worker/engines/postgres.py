"""PostgreSQL: pg_dump inside one exported snapshot, and a restore that commits only when proven.

Dump: a psycopg session opens a REPEATABLE READ transaction, exports its snapshot, and takes
ACCESS SHARE locks on every user table before pg_dump starts with `--snapshot`. pg_dump and the
exact `count(*)` per table therefore read the same data, and no TRUNCATE or table rewrite can
slip in between the two reads. The session stays open until pg_dump has exited.

Restore: one psql session, one transaction, nothing visible before COMMIT. The custom-format
stream is fed to `pg_restore --file=-` (it reads the archive sequentially, so a pipe is enough),
its SQL is relayed into psql behind a preamble that empties the target inside the same
transaction, and pg_restore's own final COMMIT is held back. Only when `source` was read to b""
(the pipeline checks the artifact's SHA-256 there) and pg_restore succeeded do we append a block
that compares `count(*)` per table with the manifest, then COMMIT. A failure anywhere before that
point (a source error, a tool error, a wrong count, the worker being killed) leaves the
transaction uncommitted, and the server rolls it back. A deferred trigger on a temporary table
refuses any COMMIT that the verification block did not bless, so a COMMIT hidden in the stream
cannot publish a partial restore either.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, ClassVar, cast

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.engines._process import ToolProcess
from lifeboat.worker.engines.base import DumpSummary, RestoreOptions, RestoreResult, ServerInfo
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

CONNECT_TIMEOUT_SECONDS = 10
_Table = tuple[str, str, str]  # schema, table, "schema.table" as the manifest names it
# pg_dump can only wait on a lock behind a DDL statement that itself waits for our snapshot
# session's locks: a cycle the server cannot see. A bounded wait turns it into a clear failure.
LOCK_WAIT_TIMEOUT = "60s"
# pg_restore's last bytes are held back until the stream is proven; its trailer is ~200 bytes.
_HOLD_BACK = 64 * 1024
_MAINTENANCE_DATABASES = ("postgres", "template1")
_VERIFY_MARKER = "lifeboat verification failed: "

_USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'"
# Ordinary tables (partitions included) that pg_dump dumps data for: not in system schemas and
# not members of an extension (those are recreated by CREATE EXTENSION, not restored row by row).
_USER_TABLES_FROM = f"""
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND {_USER_SCHEMAS}
  AND NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_depend d
    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
      AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""
_USER_TABLES_SQL = "SELECT n.nspname, c.relname" + _USER_TABLES_FROM
# pg_table_size locks each table; only inspect() asks for it, never the snapshot session.
_USER_TABLE_SIZES_SQL = (
    "SELECT n.nspname, c.relname, coalesce(pg_catalog.pg_table_size(c.oid), 0)" + _USER_TABLES_FROM
)

_DUMPING_TABLE = re.compile(r'dumping contents of table "(?P<name>.+)"$')
_RESTORING_TABLE = re.compile(r'processing data for table "(?P<name>.+)"$')
_MISSING_ROLE = re.compile(r'role "(?P<role>[^"]+)" does not exist')

# The only COMMIT that may end a restore is the one after the verification block: a deferred
# constraint trigger checks, at commit time, the flag that only that block sets.
_COMMIT_GATE = """
CREATE TEMPORARY TABLE lifeboat_commit_gate (armed boolean) ON COMMIT DROP;
CREATE FUNCTION pg_temp.lifeboat_commit_gate() RETURNS trigger LANGUAGE plpgsql AS $gate$
BEGIN
  IF pg_catalog.current_setting('lifeboat.restore_verified', true) IS DISTINCT FROM 'yes' THEN
    RAISE EXCEPTION 'lifeboat: refusing to commit a restore whose row counts were not verified';
  END IF;
  RETURN NULL;
END
$gate$;
CREATE CONSTRAINT TRIGGER lifeboat_commit_gate AFTER INSERT ON pg_temp.lifeboat_commit_gate
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pg_temp.lifeboat_commit_gate();
INSERT INTO pg_temp.lifeboat_commit_gate VALUES (true);
"""

# Empties the target so that it ends up equal to the backup: every user schema (with all it
# contains: tables, views, functions, types, sequences, and extensions installed there), the
# remaining extensions but plpgsql, and the database-wide objects pg_dump writes (publications,
# event triggers, foreign servers and wrappers, large objects). Runs inside the restore's
# transaction, so a failed restore leaves all of it in place.
_DROP_EVERYTHING = f"""
DO $lifeboat_clean$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE {_USER_SCHEMAS} LOOP
    EXECUTE pg_catalog.format('DROP SCHEMA IF EXISTS %I CASCADE', r.nspname);
  END LOOP;
  FOR r IN SELECT extname FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql' LOOP
    EXECUTE pg_catalog.format('DROP EXTENSION IF EXISTS %I CASCADE', r.extname);
  END LOOP;
  FOR r IN SELECT pubname FROM pg_catalog.pg_publication LOOP
    EXECUTE pg_catalog.format('DROP PUBLICATION IF EXISTS %I', r.pubname);
  END LOOP;
  FOR r IN SELECT evtname FROM pg_catalog.pg_event_trigger LOOP
    EXECUTE pg_catalog.format('DROP EVENT TRIGGER IF EXISTS %I', r.evtname);
  END LOOP;
  FOR r IN SELECT srvname FROM pg_catalog.pg_foreign_server LOOP
    EXECUTE pg_catalog.format('DROP SERVER IF EXISTS %I CASCADE', r.srvname);
  END LOOP;
  FOR r IN SELECT fdwname FROM pg_catalog.pg_foreign_data_wrapper LOOP
    EXECUTE pg_catalog.format('DROP FOREIGN DATA WRAPPER IF EXISTS %I CASCADE', r.fdwname);
  END LOOP;
  PERFORM pg_catalog.lo_unlink(oid) FROM pg_catalog.pg_largeobject_metadata;
END
$lifeboat_clean$;
"""

# pg_dump never writes CREATE SCHEMA public (initdb makes it), only how it differs from initdb's.
# So a missing public schema is recreated exactly as initdb makes it for this server version.
_ENSURE_PUBLIC_SCHEMA = """
DO $lifeboat_public$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'public') THEN
    IF pg_catalog.current_setting('server_version_num')::int >= 150000 THEN
      CREATE SCHEMA public AUTHORIZATION pg_database_owner;
      GRANT USAGE ON SCHEMA public TO PUBLIC;
    ELSE
      EXECUTE pg_catalog.format('CREATE SCHEMA public AUTHORIZATION %I',
        (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10));
      GRANT CREATE, USAGE ON SCHEMA public TO PUBLIC;
    END IF;
    COMMENT ON SCHEMA public IS 'standard public schema';
  END IF;
END
$lifeboat_public$;
"""

_VERIFY_ROW_COUNTS = f"""
DO $lifeboat_verify$
DECLARE
  expected jsonb := pg_catalog.current_setting('lifeboat.expected_row_counts')::jsonb;
  item record;
  rel record;
  actual bigint;
  problems text[] := ARRAY[]::text[];
BEGIN
  SET LOCAL row_security = off;
  FOR item IN SELECT key, value::bigint AS rows FROM pg_catalog.jsonb_each_text(expected)
              ORDER BY key LOOP
    SELECT n.nspname, c.relname INTO rel
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind = 'r' AND n.nspname || '.' || c.relname = item.key
    LIMIT 1;
    IF NOT FOUND THEN
      problems := problems || pg_catalog.format(
        'table %s is missing (the backup has %s rows)', item.key, item.rows);
      CONTINUE;
    END IF;
    EXECUTE pg_catalog.format('SELECT count(*) FROM ONLY %I.%I', rel.nspname, rel.relname)
      INTO actual;
    IF actual <> item.rows THEN
      problems := problems || pg_catalog.format(
        'table %s has %s rows, the backup has %s', item.key, actual, item.rows);
    END IF;
  END LOOP;
  IF pg_catalog.cardinality(problems) > 0 THEN
    RAISE EXCEPTION '{_VERIFY_MARKER}%', pg_catalog.array_to_string(problems, '; ');
  END IF;
  PERFORM pg_catalog.set_config('lifeboat.restore_verified', 'yes', true);
END
$lifeboat_verify$;
"""


def _sql_string(text: str) -> str:
    """An escape-string literal: safe whatever standard_conforming_strings says."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def _tool_error(tool: ToolProcess) -> str:
    """The tool's own error line (not a verbose line that happens to name a table 'errors')."""
    for line in tool.error_lines():
        if re.search(r"(^|\s|:)(error|ERROR|FATAL|PANIC):", line):
            return line
    return tool.last_error()


class _ItemTracker:
    """Turns a tool's "now doing table X" lines into start_item / item_done for `Progress`.

    The tools announce a table when they start it; it is done when the next one starts or when
    the tool has finished.
    """

    def __init__(self, progress: Progress, pattern: re.Pattern[str]) -> None:
        self._progress = progress
        self._pattern = pattern
        self._current: str | None = None
        self._lock = threading.Lock()

    def on_line(self, line: str) -> None:
        match = self._pattern.search(line)
        if match is None:
            return
        name = match.group("name")
        with self._lock:
            previous, self._current = self._current, name
        if previous is not None:
            self._progress.item_done(previous)
        self._progress.start_item(name)

    def finish(self) -> None:
        with self._lock:
            last, self._current = self._current, None
        if last is not None:
            self._progress.item_done(last)


class _PostgresDump:
    """A running pg_dump plus the snapshot session that counts rows in the same snapshot."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        tool: ToolProcess,
        tables: list[_Table],
        items: _ItemTracker,
    ) -> None:
        self._conn = conn
        self._tool = tool
        self._tables = tables
        self._items = items
        self._counts: dict[str, int] = {}
        self._count_error: str | None = None
        self._counted = False
        self._counter = threading.Thread(target=self._count_rows, name="pg-row-counts")
        self._counter.daemon = True
        self._counter.start()

    def _count_rows(self) -> None:
        try:
            for schema, table, name in self._tables:
                query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
                row = self._conn.execute(query).fetchone()
                self._counts[name] = int(row[0]) if row else 0
            self._counted = True
        except psycopg.Error as exc:
            self._count_error = str(exc).strip().splitlines()[0]

    def read(self, n: int = -1, /) -> bytes:
        return self._tool.stdout.read(n)

    def finish(self) -> DumpSummary:
        code = self._tool.wait()
        if code != 0:
            line = _tool_error(self._tool).removeprefix("pg_dump: ")
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
        return DumpSummary(row_counts=dict(self._counts))

    def close(self) -> None:
        """Stop whatever still runs: pg_dump first, then the counting queries."""
        self._tool.kill()
        if self._counter.is_alive():
            with contextlib.suppress(psycopg.Error):
                self._conn.cancel_safe(timeout=10)
            self._counter.join(timeout=30)


class _SqlRelay(threading.Thread):
    """Copies pg_restore's SQL into psql, after the preamble, holding back the last bytes.

    The held-back tail carries pg_restore's final COMMIT, which must not reach psql: the engine
    replaces it with the verification block once the whole stream has been proven.
    """

    def __init__(
        self, source: IO[bytes], sink: IO[bytes], preamble: bytes, on_failure: Callable[[], None]
    ) -> None:
        super().__init__(name="pg-restore-relay", daemon=True)
        self._source = cast(io.BufferedReader, source)
        self._sink = sink
        self._preamble = preamble
        self._on_failure = on_failure
        self.tail = b""
        self.failed: OSError | None = None

    def run(self) -> None:
        pending = bytearray()
        try:
            self._sink.write(self._preamble)
            while chunk := self._source.read1(CHUNK_SIZE):
                pending += chunk
                if len(pending) > 2 * _HOLD_BACK:
                    cut = len(pending) - _HOLD_BACK
                    self._sink.write(pending[:cut])
                    del pending[:cut]
            self._sink.flush()
            self.tail = bytes(pending)
        except (OSError, ValueError) as exc:  # psql went away: a broken pipe, a closed file
            self.failed = exc if isinstance(exc, OSError) else OSError(str(exc))
            self._on_failure()


def _split_final_commit(tail: bytes) -> bytes:
    """pg_restore's output up to (not including) the COMMIT that `--single-transaction` ends it
    with. Anything but comments and psql's `\\unrestrict` after that COMMIT is refused."""
    index = tail.rfind(b"\nCOMMIT;\n")
    if index < 0:
        raise RestoreError("pg_restore's output did not end with its COMMIT; nothing was restored")
    for line in tail[index + len(b"\nCOMMIT;\n") :].splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith((b"--", b"\\unrestrict ")):
            raise RestoreError(
                "pg_restore wrote SQL after its final COMMIT; refusing to restore "
                f"({stripped[:80].decode('utf-8', 'replace')})"
            )
    return tail[: index + 1]


class PostgresEngine:
    """PostgreSQL through psycopg (catalog, snapshot, counts) and pg_dump/pg_restore/psql."""

    name: ClassVar[str] = "postgresql"
    dump_format: ClassVar[str] = "pg_dump-custom"

    def __init__(self, url: DatabaseURL) -> None:
        if any(key.lower() in ("password", "passfile") for key in url.options):
            raise UsageError(
                "DATABASE_URL: a password in the URL's options would leak through argv and logs; "
                "set LIFEBOAT_DB_PASSWORD (or LIFEBOAT_DB_PASSWORD_FILE) instead"
            )
        self.url = url

    # -- connections ---------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.url.host or 'localhost'}:{self.url.port or 5432}"

    def _conninfo(self, database: str | None = None, application: str = "lifeboat") -> str:
        """libpq connection settings for psycopg and the tools: never the password."""
        params: dict[str, Any] = {
            "host": self.url.host,
            "port": self.url.port,
            "user": self.url.user,
            "dbname": database or self.url.database,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": application,
        }
        params.update(self.url.options)
        return make_conninfo("", **{k: v for k, v in params.items() if v is not None})

    def _tool_env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.url.password} if self.url.password else {}

    def _secrets(self) -> list[str]:
        return [self.url.password] if self.url.password else []

    def _redact(self, text: str) -> str:
        for secret in self._secrets():
            text = text.replace(secret, "***")
        return text

    def _connect(self, database: str | None = None) -> psycopg.Connection[Any]:
        """An autocommit session, with connection failures turned into the error types."""
        try:
            return psycopg.connect(
                self._conninfo(database), password=self.url.password, autocommit=True
            )
        except psycopg.ProgrammingError as exc:
            raise UsageError(f"DATABASE_URL: {self._redact(str(exc))}") from None
        except psycopg.OperationalError as exc:
            raise self._connection_error(exc, database or self.url.database) from None

    def _connection_error(self, exc: psycopg.Error, database: str) -> DatabaseError:
        text = self._redact(str(exc)).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        reason = first.rsplit(" failed: ", 1)[-1].replace("FATAL:  ", "").strip()
        lowered = text.lower()
        user = self.url.user or "(default)"
        if "password authentication failed" in lowered or "no password supplied" in lowered:
            return AuthenticationFailed(
                f"user '{user}' was refused by {self._where}: "
                "check LIFEBOAT_DB_PASSWORD / the secret"
            )
        if "pg_hba.conf" in lowered or ("role" in lowered and "does not exist" in lowered):
            return AuthenticationFailed(f"user '{user}' was refused by {self._where}: {reason}")
        if "database" in lowered and "does not exist" in lowered:
            return DatabaseError(f"database '{database}' does not exist on {self._where}")
        return DatabaseUnreachable(f"cannot reach PostgreSQL at {self._where}: {reason}")

    def _is_missing_database(self, exc: DatabaseError) -> bool:
        return type(exc) is DatabaseError and "does not exist" in str(exc)

    # -- inspect -------------------------------------------------------------------------------

    def inspect(self) -> ServerInfo:
        with self._connect() as conn:
            try:
                version_row = conn.execute("SHOW server_version").fetchone()
                rows = conn.execute(_USER_TABLE_SIZES_SQL).fetchall()
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"reading the catalog of '{self.url.database}' failed: {_first_line(exc)}"
                ) from None
        return ServerInfo(
            version=str(version_row[0]) if version_row else "unknown",
            tables=[f"{schema}.{table}" for schema, table, _ in rows],
            estimated_bytes=sum(int(size) for _, _, size in rows),
        )

    # -- dump ----------------------------------------------------------------------------------

    def _dump_argv(self, snapshot: str) -> list[str]:
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
            f"--dbname={self._conninfo(application='lifeboat-pg_dump')}",
        ]

    def _open_snapshot(self, conn: psycopg.Connection[Any]) -> tuple[str, list[_Table]]:
        """Export a snapshot and lock every table in it, so a table can't change under us."""
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
            conn.execute(
                "SET LOCAL statement_timeout = 0; SET LOCAL row_security = off; "
                "SET LOCAL idle_in_transaction_session_timeout = 0"
            )
            tables = [
                (schema, table, f"{schema}.{table}")
                for schema, table in conn.execute(_USER_TABLES_SQL).fetchall()
            ]
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
            raise DumpFailed(f"could not open a consistent snapshot: {_first_line(exc)}") from None
        assert row is not None
        return str(row[0]), tables

    @contextlib.contextmanager
    def dump(self, progress: Progress) -> Iterator[_PostgresDump]:
        with self._connect() as conn:
            snapshot, tables = self._open_snapshot(conn)
            items = _ItemTracker(progress, _DUMPING_TABLE)
            tool = ToolProcess(
                self._dump_argv(snapshot),
                env=self._tool_env(),
                on_line=items.on_line,
                secrets=self._secrets(),
            )
            stream = _PostgresDump(conn, tool, tables, items)
            try:
                yield stream
            finally:
                stream.close()

    # -- restore -------------------------------------------------------------------------------

    def restore(
        self, source: Readable, manifest: Manifest, progress: Progress, options: RestoreOptions
    ) -> RestoreResult:
        """Replace (or, with keep_extra_objects, overlay) the target in one verified transaction.

        Needs: a role that owns the target database (or a superuser), CREATEDB when the database
        is missing, and the roles and tablespaces the backup names (they belong to the cluster,
        not the database, so no database backup carries them). Subscriptions are not restored.
        """
        if manifest.dump_format != self.dump_format:
            raise RestoreError(
                f"the backup's format {manifest.dump_format!r} is not {self.dump_format!r}"
            )
        existing_schemas = self._target_schemas()
        notes: list[str] = []
        with tempfile.TemporaryDirectory(prefix="lifeboat-pg-restore-") as tmp:
            replay, listing = self._read_toc(source, Path(tmp) / "toc.list")
            created = existing_schemas is None
            if created:
                self._create_database()
                notes.append(f"created database {self.url.database}")
            try:
                use_list = None
                if options.keep_extra_objects and existing_schemas:
                    use_list = Path(tmp) / "restore.list"
                    use_list.write_text(_skip_existing_schemas(listing, existing_schemas))
                self._load(replay, manifest, progress, options, use_list)
            except BaseException as exc:
                if created:
                    self._drop_created_database(exc)
                raise
        return RestoreResult(row_counts=self._count_manifest_tables(manifest), notes=notes)

    def _target_schemas(self) -> set[str] | None:
        """The target's user schemas, or None when the database does not exist yet."""
        try:
            conn = self._connect()
        except DatabaseError as exc:
            if self._is_missing_database(exc):
                return None
            raise
        with conn:
            rows = conn.execute(
                f"SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE {_USER_SCHEMAS}"
            ).fetchall()
        return {str(r[0]) for r in rows}

    def _maintenance_connection(self) -> psycopg.Connection[Any]:
        error: DatabaseError | None = None
        for database in _MAINTENANCE_DATABASES:
            try:
                return self._connect(database)
            except DatabaseError as exc:
                if not self._is_missing_database(exc):
                    raise
                error = exc
        assert error is not None
        raise error

    def _create_database(self) -> None:
        """CREATE DATABASE from template0: an empty database, as pg_dump's output expects."""
        with self._maintenance_connection() as conn:
            try:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
                        sql.Identifier(self.url.database)
                    )
                )
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"database '{self.url.database}' does not exist on {self._where} and could "
                    f"not be created: {_first_line(exc)}"
                ) from None

    def _drop_created_database(self, failure: BaseException) -> None:
        """Undo our CREATE DATABASE after a failed restore: the target was absent before."""
        try:
            with self._maintenance_connection() as conn:
                force = " WITH (FORCE)" if conn.info.server_version >= 130000 else ""
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {}" + force).format(
                        sql.Identifier(self.url.database)
                    )
                )
        except (psycopg.Error, LifeboatError) as exc:
            failure.add_note(
                f"the database '{self.url.database}' created for this restore could not be "
                f"dropped again: {_first_line(exc)}"
            )

    def _read_toc(self, source: Readable, listing_path: Path) -> tuple[_Replay, str]:
        """Feed the stream's start to `pg_restore --list` until it has read the archive's TOC.

        This proves the stream is a pg_dump archive before anything is touched, and gives the
        TOC (needed to keep existing schemas with keep_extra_objects). The bytes read are
        returned so the real restore gets the stream from its first byte.
        """
        lister = ToolProcess(
            ["pg_restore", "--list", f"--file={listing_path}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        replay = _Replay(source)
        try:
            while lister.proc.poll() is None:
                chunk = replay.read_ahead(CHUNK_SIZE)
                if not chunk:
                    break
                try:
                    lister.stdin.write(chunk)
                    lister.stdin.flush()
                except BrokenPipeError:
                    break
            with contextlib.suppress(BrokenPipeError):
                lister.stdin.close()
            code = lister.wait()
        except BaseException:
            lister.kill()
            raise
        if code != 0:
            raise RestoreError(
                f"the backup is not a readable pg_dump archive: {_tool_error(lister)}; "
                "nothing was restored"
            )
        return replay, listing_path.read_text(encoding="utf-8", errors="replace")

    def _load(
        self,
        source: Readable,
        manifest: Manifest,
        progress: Progress,
        options: RestoreOptions,
        use_list: Path | None,
    ) -> None:
        restore_argv = [
            "pg_restore",
            "--single-transaction",
            "--exit-on-error",
            "--verbose",
            "--no-subscriptions",
            "--file=-",
        ]
        if options.keep_extra_objects:
            restore_argv += ["--clean", "--if-exists"]
            if use_list is not None:
                restore_argv.append(f"--use-list={use_list}")
        preamble = _restore_preamble(keep_extra_objects=options.keep_extra_objects)
        items = _ItemTracker(progress, _RESTORING_TABLE)
        psql = self._start_psql()
        restorer: ToolProcess | None = None
        committed = False
        try:
            restorer = ToolProcess(restore_argv, stdin=subprocess.PIPE, on_line=items.on_line)
            relay = _SqlRelay(restorer.stdout, psql.stdin, preamble, restorer.kill)
            relay.start()
            fed_all = _feed(restorer.stdin, source)
            if fed_all:
                with contextlib.suppress(BrokenPipeError):
                    restorer.stdin.close()
            restore_code = restorer.wait()
            if not fed_all and restore_code == 0:
                # pg_restore had all it needed; the rest must still be read, to be verified.
                while source.read(CHUNK_SIZE):
                    pass
            relay.join()
            restorer.stdout.close()
            if relay.failed is not None or psql.proc.poll() is not None:
                raise self._psql_failure(psql)
            if restore_code != 0:
                raise RestoreError(
                    f"pg_restore failed: {_tool_error(restorer)}; the target was not changed"
                )
            finale = _split_final_commit(relay.tail) + self._verification(manifest)
            try:
                psql.stdin.write(finale + b"COMMIT;\n")
                psql.stdin.close()
            except BrokenPipeError:
                raise self._psql_failure(psql) from None
            if psql.wait() != 0:
                raise self._psql_failure(psql)
            committed = True
            items.finish()
        finally:
            if not committed:
                psql.kill()  # first: without our COMMIT the server rolls everything back
                if restorer is not None:
                    restorer.kill()

    def _start_psql(self) -> ToolProcess:
        """psql reading SQL on stdin, stopping at the first error.

        Deliberately not `--single-transaction`: that makes psql COMMIT at the end of its input,
        and a worker that is killed closes psql's input. Our script opens the transaction itself
        and only the last thing we write commits it; an input that ends early rolls back.
        """
        return ToolProcess(
            [
                "psql",
                "--no-psqlrc",
                "--quiet",
                "--no-password",
                "--set=ON_ERROR_STOP=1",
                "--file=-",
                f"--dbname={self._conninfo(application='lifeboat-restore')}",
            ],
            env=self._tool_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            secrets=self._secrets(),
        )

    def _verification(self, manifest: Manifest) -> bytes:
        expected = json.dumps(manifest.row_counts, ensure_ascii=True, sort_keys=True)
        return (
            "SELECT pg_catalog.set_config('lifeboat.expected_row_counts', "
            f"{_sql_string(expected)}, true);\n{_VERIFY_ROW_COUNTS}"
        ).encode()

    def _psql_failure(self, psql: ToolProcess) -> RestoreError:
        """psql stopped at an error (or was cut off): name the statement's error, nothing else."""
        try:
            psql.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            psql.kill()
        psql.wait()
        line = _tool_error(psql)
        if _VERIFY_MARKER in line:
            problems = line.split(_VERIFY_MARKER, 1)[1]
            return VerificationFailed(
                f"{problems}; the restore was rolled back and the target is unchanged",
                problems.split("; "),
            )
        reason = re.sub(r"^psql:[^:]*:\d+: ", "", line)
        missing_role = _MISSING_ROLE.search(line)
        hint = (
            f" (roles are not part of a database backup: create role "
            f"'{missing_role.group('role')}' on the target first)"
            if missing_role
            else ""
        )
        return RestoreError(
            f"restoring into '{self.url.database}' failed, the transaction was rolled back and "
            f"the target is unchanged: {reason}{hint}"
        )

    def _count_manifest_tables(self, manifest: Manifest) -> dict[str, int]:
        """Rows per manifest table as committed, read back in a new session."""
        wanted = set(manifest.row_counts)
        counts: dict[str, int] = {}
        with self._connect() as conn:
            for schema, table in conn.execute(_USER_TABLES_SQL).fetchall():
                name = f"{schema}.{table}"
                if name in wanted:
                    row = conn.execute(
                        sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
                            sql.Identifier(schema), sql.Identifier(table)
                        )
                    ).fetchone()
                    counts[name] = int(row[0]) if row else 0
        return counts


def _restore_preamble(*, keep_extra_objects: bool) -> bytes:
    """What psql runs before pg_restore's SQL: open the transaction, arm the commit gate, and
    (unless objects are kept) empty the target."""
    preamble = "BEGIN;\nSET client_min_messages = error;\n" + _COMMIT_GATE
    if not keep_extra_objects:
        preamble += _DROP_EVERYTHING
    return (preamble + _ENSURE_PUBLIC_SCHEMA).encode()


def _feed(sink: IO[bytes], source: Readable) -> bool:
    """Write `source` to its end into pg_restore.

    False when pg_restore stopped reading (it exited: the caller asks it why). Errors of
    `source.read` propagate unchanged: they are the reason the restore stops.
    """
    try:
        while chunk := source.read(CHUNK_SIZE):
            sink.write(chunk)
        sink.flush()
    except BrokenPipeError:
        return False
    return True


class _Replay:
    """The restore's source, with the bytes already read for the TOC handed out again first.

    It remembers the end of `source`, so `source.read` is never called again after b"".
    """

    def __init__(self, source: Readable) -> None:
        self._source = source
        self._head: list[bytes] = []
        self._at_end = False

    def read_ahead(self, n: int) -> bytes:
        """Read from the source and keep the bytes for the replay."""
        chunk = self._read_source(n)
        if chunk:
            self._head.append(chunk)
        return chunk

    def read(self, n: int = -1, /) -> bytes:
        if self._head:
            return self._head.pop(0)
        return self._read_source(n)

    def _read_source(self, n: int) -> bytes:
        if self._at_end:
            return b""
        chunk = self._source.read(n)
        self._at_end = not chunk
        return chunk


def _skip_existing_schemas(listing: str, existing: set[str]) -> str:
    """The TOC with CREATE SCHEMA entries commented out for schemas the target already has.

    With keep_extra_objects, `--clean` would otherwise DROP such a schema (failing if it holds
    objects that are not in the backup) and CREATE it again (failing if it exists).
    """
    out = []
    for line in listing.splitlines():
        match = re.match(r"^\d+; \d+ \d+ SCHEMA - (?P<rest>.*)$", line)
        if match and any(match.group("rest").startswith(f"{s} ") for s in existing):
            line = ";" + line
        out.append(line)
    return "\n".join(out) + "\n"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
