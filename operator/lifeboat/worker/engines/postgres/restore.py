"""The restore: one psql session, one transaction, nothing visible before a verified COMMIT.

The custom-format stream is fed to `pg_restore --file=-` (it reads the archive sequentially, so a
pipe is enough), its SQL is relayed into psql behind a preamble that empties the target inside
the same transaction, and pg_restore's own final COMMIT is held back. Only when `source` was read
to b"" (the pipeline checks the artifact's SHA-256 there) and pg_restore succeeded do we append a
block that compares `count(*)` per table with the manifest, then COMMIT. A failure anywhere
before that point (a source error, a tool error, a wrong count, the worker being killed) leaves
the transaction uncommitted, and the server rolls it back. A deferred trigger on a temporary table
refuses any COMMIT that the verification block did not bless, so a COMMIT hidden in the stream
cannot publish a partial restore either.

Everything here runs as the login of the URL, which needs no more than a managed database gives
its application: ownership of the target database (the preamble drops only what that owner may
drop; `preflight` proves it before the artifact is read, `archive` before the target changes).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import IO, cast

import psycopg
from psycopg import sql

from lifeboat.worker.engines._process import ToolProcess
from lifeboat.worker.engines.base import RestoreOptions, RestoreResult
from lifeboat.worker.engines.postgres import catalog
from lifeboat.worker.engines.postgres.archive import (
    check_archive_needs,
    read_needs,
    read_toc,
    restore_option_flags,
    skip_existing_schemas,
)
from lifeboat.worker.engines.postgres.catalog import USER_SCHEMAS
from lifeboat.worker.engines.postgres.connection import Connector, first_line
from lifeboat.worker.engines.postgres.preflight import cannot_create_database
from lifeboat.worker.engines.postgres.tools import (
    RESTORING_TABLE,
    ItemTracker,
    lost_connection,
    tool_error,
)
from lifeboat.worker.errors import (
    DatabaseError,
    DatabaseNotFound,
    DatabaseUnreachable,
    LifeboatError,
    RestoreError,
    ServerDiskFull,
    VerificationFailed,
)
from lifeboat.worker.manifest import Manifest
from lifeboat.worker.progress import Progress
from lifeboat.worker.streams import CHUNK_SIZE, Readable

# pg_restore's last bytes are held back until the stream is proven; its trailer is ~200 bytes.
_HOLD_BACK = 64 * 1024
_VERIFY_MARKER = "lifeboat verification failed: "
_MISSING_ROLE = re.compile(r'role "(?P<role>[^"]+)" does not exist')
# The server's own volume full (SQLSTATE 53100, or a quota): `could not extend file "...": No
# space left on device` while loading, `could not write to file` for a sort or a temp file.
_DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded|could not extend file")

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
# transaction, so a failed restore leaves all of it in place. The database's owner may drop
# all of it when it owns the schemas and those objects (DROP ... CASCADE checks only the object
# named); `preflight.check_restore_privileges` proves that before anything starts.
_DROP_EVERYTHING = f"""
DO $lifeboat_clean$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE {USER_SCHEMAS} LOOP
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
# The owner of a database is a member of pg_database_owner there, so it may do this (15+); should
# a server refuse that, the schema belongs to the restoring role rather than fail the restore. On
# older servers public belongs to the bootstrap superuser, which only a superuser may name as
# owner, so the owner of the database gets it instead.
_ENSURE_PUBLIC_SCHEMA = """
DO $lifeboat_public$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'public') THEN
    IF pg_catalog.current_setting('server_version_num')::int >= 150000 THEN
      BEGIN
        CREATE SCHEMA public AUTHORIZATION pg_database_owner;
      EXCEPTION WHEN insufficient_privilege THEN
        CREATE SCHEMA public;  -- a server that does not let the owner act as pg_database_owner
      END;
      GRANT USAGE ON SCHEMA public TO PUBLIC;
    ELSE
      EXECUTE pg_catalog.format('CREATE SCHEMA public AUTHORIZATION %I',
        CASE WHEN pg_catalog.pg_has_role(10, 'MEMBER') THEN pg_catalog.pg_get_userbyid(10)
        ELSE (SELECT pg_catalog.pg_get_userbyid(d.datdba) FROM pg_catalog.pg_database d
              WHERE d.datname = pg_catalog.current_database()) END);
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


# pg_restore's header: comments, psql's \restrict, BEGIN and the session settings it writes
# before the first object.
_HEADER_LINE = re.compile(
    rb"^(|--.*|\\restrict .*|BEGIN;|SET [^\n]*;|SELECT pg_catalog\.set_config\([^\n]*\);)$"
)
_SETTING_LINE = re.compile(rb"^SET ([a-z_][a-z0-9_]*) = [^;\n]*;$")
_MAX_HEADER = 64 * 1024


def header_length(sql: bytes | bytearray) -> int | None:
    """How many bytes at the start of pg_restore's `sql` are its header; None while every
    complete line so far is header (more may follow)."""
    offset = 0
    while (end := sql.find(b"\n", offset)) >= 0:
        if not _HEADER_LINE.match(sql[offset:end]):
            return offset
        offset = end + 1
    return None


def without_unknown_settings(header: bytes, known: Collection[str]) -> bytes:
    """pg_restore's header without the `SET name = ...;` lines of settings the target server
    does not have.

    pg_restore writes the session settings of its own version whatever the server: pg_restore
    17 writes `SET transaction_timeout = 0;`, which PostgreSQL 13-16 refuse, and psql stops at
    the error. The image has one client, the newest, to back up and restore every major; so
    such a line goes (a timeout the server does not have cannot fire) and nothing else does."""
    kept = [
        line
        for line in header.split(b"\n")
        if not ((found := _SETTING_LINE.match(line)) and found.group(1).decode() not in known)
    ]
    return b"\n".join(kept)


def sql_string(text: str) -> str:
    """An escape-string literal: safe whatever standard_conforming_strings says."""
    return "E'" + text.replace("\\", "\\\\").replace("'", "''") + "'"


def restore_preamble(*, keep_extra_objects: bool) -> bytes:
    """What psql runs before pg_restore's SQL: open the transaction, arm the commit gate, and
    (unless objects are kept) empty the target."""
    preamble = "BEGIN;\nSET client_min_messages = error;\n" + _COMMIT_GATE
    if not keep_extra_objects:
        preamble += _DROP_EVERYTHING
    return (preamble + _ENSURE_PUBLIC_SCHEMA).encode()


class SqlRelay(threading.Thread):
    """Copies pg_restore's SQL into psql, after the preamble, holding back the last bytes.

    The held-back tail carries pg_restore's final COMMIT, which must not reach psql: the engine
    replaces it with the verification block once the whole stream has been proven.
    """

    def __init__(
        self,
        source: IO[bytes],
        sink: IO[bytes],
        preamble: bytes,
        on_failure: Callable[[], None],
        *,
        known_settings: Collection[str] | None = None,
    ) -> None:
        super().__init__(name="pg-restore-relay", daemon=True)
        self._source = cast(io.BufferedReader, source)
        self._sink = sink
        self._preamble = preamble
        self._on_failure = on_failure
        self._known_settings = known_settings
        self.tail = b""
        self.failed: OSError | None = None

    def run(self) -> None:
        pending = bytearray()
        header_done = self._known_settings is None
        try:
            self._sink.write(self._preamble)
            while chunk := self._source.read1(CHUNK_SIZE):
                pending += chunk
                if not header_done:
                    header_done = self._filter_header(pending, final=False)
                    if not header_done:
                        continue
                if len(pending) > 2 * _HOLD_BACK:
                    cut = len(pending) - _HOLD_BACK
                    self._sink.write(pending[:cut])
                    del pending[:cut]
            if not header_done:
                self._filter_header(pending, final=True)
            self._sink.flush()
            self.tail = bytes(pending)
        except (OSError, ValueError) as exc:  # psql went away: a broken pipe, a closed file
            self.failed = exc if isinstance(exc, OSError) else OSError(str(exc))
            self._on_failure()

    def _filter_header(self, pending: bytearray, *, final: bool) -> bool:
        """Drop unknown settings from the header once it is complete in `pending` (or the
        stream ended, or it is implausibly long); False while it may still grow."""
        assert self._known_settings is not None
        length = header_length(pending)
        if length is None:
            if not final and len(pending) < _MAX_HEADER:
                return False
            length = pending.rfind(b"\n") + 1
        pending[:length] = without_unknown_settings(bytes(pending[:length]), self._known_settings)
        return True


def split_final_commit(tail: bytes) -> bytes:
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


def feed(sink: IO[bytes], source: Readable) -> bool:
    """Write `source` to its end into pg_restore.

    False when pg_restore stopped reading (it exited, or was killed and its pipe closed because
    psql went away: the caller asks why). Errors of `source.read` propagate unchanged: they are
    the reason the restore stops.
    """
    while chunk := source.read(CHUNK_SIZE):
        if not _write(sink, chunk):
            return False
    return _write(sink, b"")


def _write(sink: IO[bytes], data: bytes) -> bool:
    """Write and flush; False when the pipe is broken or was closed under us (the relay kills
    pg_restore, closing this pipe, when psql fails: a race with this write)."""
    try:
        if data:
            sink.write(data)
        else:
            sink.flush()
    except BrokenPipeError:
        return False
    except ValueError:  # "write to closed file"
        if sink.closed:
            return False
        raise
    return True


class SingleTransactionRestore:
    """One restore of a pg_dump archive into the database of `connector`."""

    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        self._database = connector.url.database

    def run(
        self, source: Readable, manifest: Manifest, progress: Progress, options: RestoreOptions
    ) -> RestoreResult:
        """The archive's TOC first (it proves the stream is an archive, and what its SQL needs
        from the server is checked), then the database if it is missing, then the load. A
        database created here is dropped again when the load fails."""
        existing_schemas = self._target_schemas()
        notes: list[str] = []
        with tempfile.TemporaryDirectory(prefix="lifeboat-pg-restore-") as tmp:
            replay, listing = read_toc(source, Path(tmp) / "toc.list")
            needs = read_needs(replay.head, listing, options, Path(tmp))
            created = existing_schemas is None
            check_archive_needs(self._connector, needs, options, database_exists=not created)
            if created:
                self._create_database()
                notes.append(f"created database {self._database}")
            try:
                use_list = None
                if options.keep_extra_objects and existing_schemas:
                    use_list = Path(tmp) / "restore.list"
                    use_list.write_text(skip_existing_schemas(listing, existing_schemas))
                self._load(replay, manifest, progress, options, use_list)
            except BaseException as exc:
                if created:
                    self._drop_created_database(exc)
                raise
        if options.no_owner:
            notes.append(f"restored objects belong to role '{self._connector.user}' (--no-owner)")
        if options.no_privileges:
            notes.append("the backup's GRANTs and REVOKEs were not restored (--no-privileges)")
        return RestoreResult(row_counts=self._count_manifest_tables(manifest), notes=notes)

    def _target_schemas(self) -> set[str] | None:
        """The target's user schemas, or None when the database does not exist yet."""
        try:
            conn = self._connector.connect()
        except DatabaseNotFound:
            return None
        with conn:
            rows = conn.execute(
                f"SELECT n.nspname FROM pg_catalog.pg_namespace n WHERE {USER_SCHEMAS}"
            ).fetchall()
        return {str(r[0]) for r in rows}

    def _create_database(self) -> None:
        """CREATE DATABASE from template0: an empty database, as pg_dump's output expects."""
        with self._connector.connect_maintenance() as conn:
            try:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
                        sql.Identifier(self._database)
                    )
                )
            except psycopg.errors.InsufficientPrivilege:
                raise cannot_create_database(self._connector) from None
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"database '{self._database}' does not exist on {self._connector.where} and "
                    f"could not be created: {first_line(exc)}"
                ) from None

    def _drop_created_database(self, failure: BaseException) -> None:
        """Undo our CREATE DATABASE after a failed restore: the target was absent before."""
        try:
            with self._connector.connect_maintenance() as conn:
                force = " WITH (FORCE)" if conn.info.server_version >= 130000 else ""
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {}" + force).format(
                        sql.Identifier(self._database)
                    )
                )
        except (psycopg.Error, LifeboatError) as exc:
            failure.add_note(
                f"the database '{self._database}' created for this restore could not be "
                f"dropped again: {first_line(exc)}"
            )

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
            *restore_option_flags(options),
        ]
        if options.keep_extra_objects:
            restore_argv += ["--clean", "--if-exists"]
            if use_list is not None:
                restore_argv.append(f"--use-list={use_list}")
        preamble = restore_preamble(keep_extra_objects=options.keep_extra_objects)
        items = ItemTracker(progress, RESTORING_TABLE)
        psql = self.start_psql()
        restorer: ToolProcess | None = None
        committed = False
        try:
            restorer = ToolProcess(restore_argv, stdin=subprocess.PIPE, on_line=items.on_line)
            relay = SqlRelay(
                restorer.stdout,
                psql.stdin,
                preamble,
                restorer.kill,
                known_settings=self._server_settings(),
            )
            relay.start()
            fed_all = feed(restorer.stdin, source)
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
                    f"pg_restore failed: {tool_error(restorer)}; the target was not changed"
                )
            finale = split_final_commit(relay.tail) + self._verification(manifest)
            try:
                psql.stdin.write(finale + b"COMMIT;\n")
                psql.stdin.close()
            except BrokenPipeError:
                raise self._psql_failure(psql) from None
            if psql.wait() != 0:
                raise self._psql_failure(psql, commit_sent=True)
            committed = True
            items.finish()
        finally:
            if not committed:
                psql.kill()  # first: without our COMMIT the server rolls everything back
                if restorer is not None:
                    restorer.kill()

    def _server_settings(self) -> frozenset[str]:
        """The names of the target server's settings (what a SET may name there)."""
        with self._connector.connect() as conn:
            rows = conn.execute("SELECT name FROM pg_catalog.pg_settings").fetchall()
        return frozenset(str(row[0]) for row in rows)

    def start_psql(self) -> ToolProcess:
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
                f"--dbname={self._connector.conninfo(application='lifeboat-restore')}",
            ],
            env=self._connector.tool_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            secrets=self._connector.secrets(),
        )

    def _verification(self, manifest: Manifest) -> bytes:
        expected = json.dumps(manifest.row_counts, ensure_ascii=True, sort_keys=True)
        return (
            "SELECT pg_catalog.set_config('lifeboat.expected_row_counts', "
            f"{sql_string(expected)}, true);\n{_VERIFY_ROW_COUNTS}"
        ).encode()

    def _psql_failure(
        self, psql: ToolProcess, *, commit_sent: bool = False
    ) -> RestoreError | DatabaseUnreachable | ServerDiskFull:
        """psql stopped at an error (or was cut off): name the statement's error, nothing else.
        A session cut by the server (a restart, a crash) is DatabaseUnreachable: the server
        rolled the transaction back, and a retry may succeed. Cut after our COMMIT was sent,
        whether it took effect cannot be known, and the error says so."""
        try:
            psql.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            psql.kill()
        psql.wait()
        lost = lost_connection(psql)
        if lost is not None:
            outcome = (
                "it was lost after the COMMIT was sent, so whether the restore took effect is "
                "unknown: check the target, or restore again"
                if commit_sent
                else "the transaction was rolled back and the target is unchanged; a retry may "
                "succeed"
            )
            return DatabaseUnreachable(
                f"the connection to PostgreSQL at {self._connector.where} was lost while "
                f"restoring into '{self._database}' ({re.sub(r'^psql:[^:]*:[0-9]+: ', '', lost)}): "
                f"the server restarted or the network failed; {outcome}"
            )
        line = tool_error(psql)
        if _VERIFY_MARKER in line:
            problems = line.split(_VERIFY_MARKER, 1)[1]
            return VerificationFailed(
                f"{problems}; the restore was rolled back and the target is unchanged",
                problems.split("; "),
            )
        reason = re.sub(r"^psql:[^:]*:\d+: ", "", line)
        if _DISK_FULL.search(line):
            return ServerDiskFull(
                f"the PostgreSQL server at {self._connector.where} ran out of disk space while "
                f"restoring into '{self._database}' ({reason}): the transaction was rolled back "
                "and the target is unchanged; free space on the server's volume (or grow it), "
                "then restore again"
            )
        missing_role = _MISSING_ROLE.search(line)
        hint = (
            f" (roles are not part of a database backup: create role "
            f"'{missing_role.group('role')}' on the target first, or restore with --no-owner "
            "--no-privileges)"
            if missing_role
            else ""
        )
        return RestoreError(
            f"restoring into '{self._database}' failed, the transaction was rolled back and "
            f"the target is unchanged: {reason}{hint}"
        )

    def _count_manifest_tables(self, manifest: Manifest) -> dict[str, int]:
        """Rows per manifest table as committed, read back in a new session."""
        wanted = set(manifest.row_counts)
        counts: dict[str, int] = {}
        with self._connector.connect() as conn:
            for schema, table, name in catalog.user_tables(conn):
                if name in wanted:
                    row = conn.execute(
                        sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
                            sql.Identifier(schema), sql.Identifier(table)
                        )
                    ).fetchone()
                    counts[name] = int(row[0]) if row else 0
        return counts
