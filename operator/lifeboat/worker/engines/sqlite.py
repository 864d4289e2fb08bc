"""SQLite: the online backup API for a consistent copy of a live database, and atomic restores.

Backup: SQLite's backup API copies the live database page by page into a snapshot file (the
one staging file Lifeboat makes: the API needs a destination database, and a consistent copy
of a database in WAL mode cannot be read from the main file alone). Rows are counted in that
snapshot, so the manifest describes exactly what is in the artifact; the snapshot's bytes are the
dump stream, and the snapshot is deleted when the dump ends.

Restore: the stream is written to a temporary file next to the target, checked
(`PRAGMA integrity_check`, row counts against the manifest) and only then applied: a missing
target is created by an atomic rename; an existing one is overwritten through the backup API,
which replaces its pages in one write transaction, so other connections see the old database or
the new one, never a mix. With `keep_extra_objects`, the backup's objects are copied over the
target's same-named ones inside one transaction and other objects are left alone. A staged copy
that a killed restore left next to the target is removed by the next restore of that target.
"""

from __future__ import annotations

import contextlib
import glob
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.engines.base import (
    Check,
    DumpSummary,
    RestoreOptions,
    RestorePlan,
    RestoreResult,
    ServerInfo,
    sort_objects,
)
from lifeboat.worker.errors import (
    DatabaseError,
    DatabaseNotFound,
    DiskFull,
    DumpFailed,
    InsufficientPrivilege,
    RestoreError,
    UsageError,
    VerificationFailed,
)
from lifeboat.worker.manifest import Manifest
from lifeboat.worker.progress import Progress
from lifeboat.worker.streams import CHUNK_SIZE, Readable

_SQLITE_HEADER = b"SQLite format 3\x00"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _user_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    ).fetchall()
    return [str(r[0]) for r in rows]


def _objects(conn: sqlite3.Connection) -> list[str]:
    """Tables, views and triggers as plan labels ('table orders', 'view revenue')."""
    rows = conn.execute(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
        "AND type IN ('table', 'view', 'trigger') ORDER BY type, name"
    ).fetchall()
    return [f"{kind} {name}" for kind, name in rows]


def _count_rows(conn: sqlite3.Connection, progress: Progress | None = None) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in _user_tables(conn):
        if progress is not None:
            progress.start_item(table)
        counts[table] = int(conn.execute(f"SELECT count(*) FROM {_quote(table)}").fetchone()[0])
        if progress is not None:
            progress.item_done(table)
    return counts


class _SnapshotDump:
    """The dump stream: the bytes of a consistent snapshot file."""

    def __init__(self, path: Path, row_counts: dict[str, int], objects: list[str]) -> None:
        self._file = path.open("rb")
        self._row_counts = row_counts
        self._objects = objects

    def read(self, n: int = -1, /) -> bytes:
        return self._file.read(n)

    def finish(self) -> DumpSummary:
        return DumpSummary(row_counts=self._row_counts, objects=self._objects)

    def close(self) -> None:
        self._file.close()


class SQLiteEngine:
    name: ClassVar[str] = "sqlite"
    dump_format: ClassVar[str] = "sqlite3-file"

    def __init__(self, url: DatabaseURL) -> None:
        if url.path is None:
            raise DatabaseError("sqlite: the URL names no file")
        self.url = url
        self.path = url.path

    def _connect_existing(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise DatabaseNotFound(f"no SQLite database at {self.path}: check DATABASE_URL")
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(f"{self.path} is not a readable SQLite database ({exc})") from None
        return conn

    def preflight_backup(self) -> list[Check]:
        """The file exists, is an SQLite database and can be read (the backup API reads it)."""
        with contextlib.closing(self._connect_existing()) as conn:
            tables = _user_tables(conn)
        return [
            Check("database", f"{self.path}: SQLite {sqlite3.sqlite_version}, {len(tables)} tables")
        ]

    def inspect(self) -> ServerInfo:
        with contextlib.closing(self._connect_existing()) as conn:
            page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
            # The dump is the snapshot file itself: its size is exactly the page count's.
            return ServerInfo(
                version=f"SQLite {sqlite3.sqlite_version}",
                tables=_user_tables(conn),
                estimated_bytes=page_size * pages,
            )

    def plan_restore(self, manifest: Manifest, options: RestoreOptions) -> RestorePlan:
        """The target file (or its directory, for a new file) can be written; what it holds
        now against the backup's tables. Changes nothing."""
        if options.no_owner or options.no_privileges:
            raise UsageError(
                "--no-owner and --no-privileges are PostgreSQL options; SQLite has no roles"
            )
        directory = self._existing_directory()
        if not os.access(directory, os.W_OK | os.X_OK):
            raise InsufficientPrivilege(
                f"cannot write in {directory}, where the restore stages its file: give the Job's "
                "user (or fsGroup) write access to that directory"
            )
        checks = [Check("directory", f"{directory} is writable for the staged file")]
        plan = RestorePlan(
            database=str(self.path),
            server_version=f"SQLite {sqlite3.sqlite_version}",
            database_exists=self.path.exists(),
            checks=checks,
        )
        if not plan.database_exists:
            plan.notes.append(f"{self.path} does not exist: the restore creates it")
            return plan
        if not os.access(self.path, os.R_OK | os.W_OK):
            raise InsufficientPrivilege(
                f"cannot read and write {self.path}: give the Job's user (or fsGroup) read-write "
                "access to the file"
            )
        with contextlib.closing(self._connect_existing()) as conn:
            current = _objects(conn)
        checks.append(Check("database", f"{self.path} is a readable SQLite database"))
        sort_objects(plan, current, manifest, keep_extra_objects=options.keep_extra_objects)
        return plan

    def _existing_directory(self) -> Path:
        """The target's directory, or its nearest existing parent (the restore creates the rest)."""
        directory = self.path.parent
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent
        if not directory.is_dir():
            raise DatabaseError(
                f"{directory} is not a directory, so {self.path} cannot be restored"
            )
        return directory

    @contextlib.contextmanager
    def dump(self, progress: Progress) -> Iterator[_SnapshotDump]:
        fd, name = tempfile.mkstemp(prefix="lifeboat-sqlite-snapshot-", suffix=".db")
        os.close(fd)
        snapshot_path = Path(name)
        try:
            with (
                contextlib.closing(self._connect_existing()) as source,
                contextlib.closing(sqlite3.connect(snapshot_path)) as snapshot,
            ):
                try:
                    source.backup(snapshot, pages=1024)
                except sqlite3.OperationalError as exc:
                    if _disk_full(exc):
                        raise DiskFull(
                            f"no space left in {snapshot_path.parent} for the snapshot of "
                            f"{self.path} ({exc}): the backup copies the database there first; "
                            "give it room for the database's size (TMPDIR chooses the directory)"
                        ) from None
                    raise DumpFailed(f"sqlite backup API failed: {exc}") from None
                counts = _count_rows(snapshot, progress)
                objects = _objects(snapshot)
            stream = _SnapshotDump(snapshot_path, counts, objects)
            try:
                yield stream
            finally:
                stream.close()
        finally:
            snapshot_path.unlink(missing_ok=True)

    def restore(
        self, source: Readable, manifest: Manifest, progress: Progress, options: RestoreOptions
    ) -> RestoreResult:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        prefix = f".{self.path.name}{_STAGED_INFIX}"
        notes = [
            f"removed the staged copy an interrupted restore left: {stale}"
            for stale in _remove_staged_copies(directory, prefix)
        ]
        fd, name = tempfile.mkstemp(prefix=prefix, dir=directory)
        staged = Path(name)
        try:
            self._receive(source, fd, staged)
            self._check_staged(staged, manifest, progress)
            if not self.path.exists():
                os.replace(staged, self.path)
                _fsync_directory(directory)
            elif options.keep_extra_objects:
                self._merge_into_target(staged)
            else:
                self._replace_target(staged)
            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                return RestoreResult(row_counts=_count_rows(conn), notes=notes)
        finally:
            staged.unlink(missing_ok=True)

    def _receive(self, source: Readable, fd: int, staged: Path) -> None:
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK_SIZE):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            if exc.errno == 28:
                raise DiskFull(f"no space left on device staging the restore at {staged}") from None
            raise

    def _check_staged(self, staged: Path, manifest: Manifest, progress: Progress) -> None:
        with staged.open("rb") as fh:
            if fh.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
                raise RestoreError("the backup is not an SQLite database file")
        with contextlib.closing(sqlite3.connect(staged)) as conn:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if verdict != "ok":
                raise RestoreError(f"the backup fails SQLite's integrity check: {verdict}")
            counts = _count_rows(conn, progress)
        problems = [
            f"table {t} has {counts.get(t)} rows, the manifest says {n}"
            for t, n in manifest.row_counts.items()
            if counts.get(t) != n
        ]
        if problems:
            raise VerificationFailed("; ".join(problems) + "; the target was not touched", problems)

    def _replace_target(self, staged: Path) -> None:
        with (
            contextlib.closing(sqlite3.connect(staged)) as src,
            contextlib.closing(sqlite3.connect(self.path, timeout=30)) as dst,
        ):
            # pages=-1 copies everything in one step: one write transaction on the target.
            try:
                src.backup(dst, pages=-1)
            except sqlite3.OperationalError as exc:
                if _disk_full(exc):
                    raise DiskFull(
                        f"no space left on the device of {self.path} while replacing its "
                        f"content ({exc}): the write was rolled back and the target is "
                        "unchanged; it needs room for the backup's size again (its journal) "
                        "besides the staged copy"
                    ) from None
                raise RestoreError(f"could not write {self.path}: {exc}") from None

    def _merge_into_target(self, staged: Path) -> None:
        with contextlib.closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("ATTACH DATABASE ? AS backup", (str(staged),))
            objects = db.execute(
                "SELECT type, name, sql FROM backup.sqlite_master "
                "WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                "ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, name"
            ).fetchall()
            db.execute("BEGIN IMMEDIATE")
            try:
                for kind, name, sql in objects:
                    db.execute(f"DROP {kind.upper()} IF EXISTS main.{_quote(name)}")
                    db.execute(sql)
                    if kind == "table":
                        db.execute(
                            f"INSERT INTO main.{_quote(name)} SELECT * FROM backup.{_quote(name)}"
                        )
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                    db.execute("ROLLBACK")
                if _disk_full(exc):
                    raise DiskFull(
                        f"no space left on the device of {self.path} while merging the backup "
                        f"into it ({exc}): the transaction was rolled back and the target is "
                        "unchanged"
                    ) from None
                raise RestoreError(
                    f"merging the backup into {self.path} failed, the transaction was rolled "
                    f"back and the target is unchanged: {exc}"
                ) from None
            finally:
                db.execute("DETACH DATABASE backup")


_STAGED_INFIX = ".lifeboat-restore-"
"""A staged copy is `.<target name>.lifeboat-restore-<random>`, next to the target."""


def _remove_staged_copies(directory: Path, prefix: str) -> list[Path]:
    """Delete the staged copies of this target that killed restores left (a restore removes its
    own when it ends; SIGKILL gives it no chance). One restore at a time per target, as for every
    engine: a concurrent one's copy would go too. Returns what was removed."""
    removed = []
    for stale in sorted(directory.glob(glob.escape(prefix) + "*")):
        with contextlib.suppress(FileNotFoundError):
            stale.unlink()
            removed.append(stale)
    return removed


def _disk_full(exc: sqlite3.Error) -> bool:
    """SQLITE_FULL: the database's disk (or its journal's) is full."""
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(
        exc
    )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
