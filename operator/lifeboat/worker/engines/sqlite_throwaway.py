"""A drill's throwaway SQLite file.

The operator puts it in the drill Job's own scratch volume (an emptyDir), so it cannot outlive
the Pod; run by hand, it is wherever DATABASE_URL says. The lock is an flock on `<file>.lock`,
which the kernel releases when the worker dies. A leftover is every file of the same source's
reserved names (the database, its -wal, -shm and -journal files, a restore's staged file) whose
lock can be taken.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from lifeboat.contract import DRILL_ID_LENGTH, DRILL_MARKER
from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.engines.throwaway import (
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

_RESERVED = re.compile(rf"^\.?(?P<name>.+?{DRILL_MARKER}[0-9a-f]{{{DRILL_ID_LENGTH}}})(?:$|[-.])")
LOCK_SUFFIX = ".lock"


class SQLiteThrowaway:
    def __init__(self, url: DatabaseURL) -> None:
        self.name, self._prefix = reserved_name(url)
        assert url.path is not None
        self.path = url.path
        self.where = str(self.path.parent)
        self.server: str | None = None
        self.login: str | None = None

    def _lock_path(self, name: str) -> Path:
        return self.path.parent / f"{name}{LOCK_SUFFIX}"

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self._lock_path(self.name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DatabaseError(f"cannot create the drill's files in {self.where}: {exc}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DatabaseError(
                    f"another drill holds {self.path}; one drill at a time per RestoreDrill"
                ) from None
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                self._lock_path(self.name).unlink()
            os.close(fd)

    def _files(self) -> dict[str, list[Path]]:
        """Files of this source's reserved names in the directory, by reserved name."""
        found: dict[str, list[Path]] = {}
        for entry in self.path.parent.iterdir():
            match = _RESERVED.match(entry.name)
            if match and is_sibling(match.group("name"), self._prefix):
                found.setdefault(match.group("name"), []).append(entry)
        return found

    def remove_leftovers(self) -> Leftovers:
        leftovers = Leftovers()
        for name, files in sorted(self._files().items()):
            if name == self.name:
                own = [f for f in files if f != self._lock_path(name)]  # the lock is ours
                if own:
                    self._remove(own)
                    leftovers.removed.append(name)
                continue
            try:
                fd = os.open(self._lock_path(name), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                leftovers.notes.append(f"could not remove the leftover {name}: {exc}")
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                leftovers.notes.append(f"{name} belongs to a drill still running: left in place")
                continue
            try:
                self._remove([*files, self._lock_path(name)])
                leftovers.removed.append(name)
            finally:
                os.close(fd)
        return leftovers

    def _remove(self, files: Sequence[Path]) -> None:
        for file in files:
            try:
                file.unlink(missing_ok=True)
            except OSError as exc:
                raise DatabaseError(f"cannot remove the drill's file {file}: {exc}") from None

    def drop(self) -> None:
        names = (self.path, *(Path(f"{self.path}{s}") for s in ("-wal", "-shm", "-journal")))
        self._remove(names)

    def exists(self) -> bool:
        return self.path.exists()

    def run_checks(self, checks: Sequence[CheckSpec], taken_at: dt.datetime) -> list[CheckOutcome]:
        """Each check on a read-only connection to the throwaway file."""
        outcomes = []
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
            for check in checks:
                try:
                    cursor = conn.execute(with_backup_time(check.query, taken_at))
                    columns = len(cursor.description or ())
                    rows = cursor.fetchmany(2) if cursor.description else []
                    outcomes.append(judge(check, rows, columns))
                except sqlite3.Error as exc:
                    outcomes.append(query_failed(check, str(exc)))
        return outcomes
