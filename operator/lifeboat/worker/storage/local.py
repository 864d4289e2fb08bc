"""A directory as a backup location: a mounted volume (PVC, NFS) or a path on a workstation.

Writes are atomic and durable: bytes go to a hidden temp file in the same directory
(`.<key>.partial-<random>`), which is flushed and fsync'd, renamed over the key with `os.replace`,
and then the directory itself is fsync'd so the rename survives a crash. An exception inside the
writer block removes the temp file, so nothing is ever visible under the key; a writer killed
outright (SIGKILL, a node lost) leaves its hidden temp file, which is never listed as an object and
which `remove_incomplete` (the next backup of the location) deletes. Files are created
0640: backups hold database contents; the group bit keeps them readable under a Pod `fsGroup`.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from lifeboat.worker.errors import AccessDenied, BackupNotFound, DiskFull, StorageError
from lifeboat.worker.storage.base import (
    WRITE_PROBE,
    ObjectWriter,
    StoredEncryption,
    StoredObject,
)
from lifeboat.worker.streams import Readable

FILE_MODE = 0o640
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
_PARTIAL = re.compile(r"^\..+\.partial-[0-9a-f]{12}$")
"""A write in flight (see `_writing`): not an object yet."""


def _storage_error(exc: OSError, doing: str, path: Path) -> StorageError:
    """Turn an OSError into the typed error a person can act on."""
    if exc.errno in _FULL:
        return DiskFull(f"no space left on device {doing} {path} ({exc.strerror})")
    if exc.errno in _DENIED:
        return AccessDenied(
            f"permission denied {doing} {path} ({exc.strerror}); check the volume's owner, "
            "mode and read-only flag against the Pod's user and fsGroup"
        )
    return StorageError(f"error {doing} {path}: {exc.strerror or exc}")


class LocalStorage:
    """A backup location on a local filesystem; keys are file names inside `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).absolute()

    def uri(self, key: str = "") -> str:
        """file:// URI of the directory or of `key` inside it."""
        uri = self.directory.as_uri()
        return f"{uri}/{key}" if key else f"{uri}/"

    def check(self) -> None:
        """Fail early if the directory cannot exist here or cannot be read (no side effects)."""
        existing = self.directory
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise StorageError(f"{existing} is not a directory, so {self.directory} cannot be used")
        wanted = os.R_OK | os.X_OK if existing == self.directory else os.W_OK | os.X_OK
        if not os.access(existing, wanted):
            raise AccessDenied(
                f"permission denied on {existing} for {self.directory}; check the volume's owner "
                "and mode against the Pod's user and fsGroup"
            )

    def check_writable(self) -> None:
        """Create the directory if needed, then write, fsync and remove a probe file in it."""
        self.check()
        with self._writing(WRITE_PROBE) as writer:
            writer.write(b"")
        with suppress(FileNotFoundError):
            self._path(WRITE_PROBE).unlink()

    def open_writer(
        self, key: str, size_hint: int | None = None
    ) -> AbstractContextManager[ObjectWriter]:
        """Stream to a temp file; leaving the block normally renames it over `key`."""
        return self._writing(key)

    def open_reader(self, key: str) -> AbstractContextManager[Readable]:
        """Stream the file; BackupNotFound if it does not exist."""
        return self._reading(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small file with the same atomic rename as a stream."""
        with self._writing(key) as writer:
            writer.write(data)

    def get_bytes(self, key: str) -> bytes:
        """Read a small file whole."""
        with self._reading(key) as reader:
            return reader.read()

    def size(self, key: str) -> int | None:
        """Bytes of the file, or None when it does not exist."""
        path = self._path(key)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _storage_error(exc, "reading", path) from exc

    def stored_encryption(self, key: str) -> StoredEncryption | None:
        """A filesystem reports no encryption (an encrypted volume is invisible from here)."""
        return None

    def delete(self, keys: list[str]) -> None:
        """Remove files; missing ones are fine. The directory is fsync'd once at the end."""
        for key in keys:
            path = self._path(key)
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise _storage_error(exc, "deleting", path) from exc
        if keys and self.directory.is_dir():
            self._sync_directory()

    def remove_incomplete(self, keys: list[str]) -> list[str]:
        """Delete the temp files killed writers left for `keys` in this directory (not below it);
        returns their URIs."""
        if not self.directory.is_dir():
            return []
        try:
            names = sorted(entry.name for entry in os.scandir(self.directory))
        except OSError as exc:
            raise _storage_error(exc, "listing", self.directory) from exc
        wanted = {f".{key}" for key in keys}
        removed = [
            name
            for name in names
            if _PARTIAL.match(name) and name.rsplit(".partial-", 1)[0] in wanted
        ]
        self.delete(removed)
        return [self.uri(name) for name in removed]

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        """Files below the directory (recursively, symlinks not followed) in key order; writes
        in flight (hidden `.partial-` files) are not objects yet and are skipped."""
        if not self.directory.is_dir():
            if self.directory.exists():
                raise StorageError(f"{self.directory} is not a directory")
            raise BackupNotFound(f"no directory at {self.uri()}")
        yield from (o for o in self._walk(self.directory, "") if o.key.startswith(prefix))

    def at(self, path: str) -> LocalStorage:
        """The directory `path` below this one."""
        parts = [part for part in path.split("/") if part]
        if any(part in (".", "..") or "\\" in part or "\0" in part for part in parts):
            raise ValueError(f"a location below {self.uri()} is a relative path, got {path!r}")
        return LocalStorage(self.directory.joinpath(*parts))

    # Internals

    def _walk(self, directory: Path, relative: str) -> Iterator[StoredObject]:
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError as exc:
            raise _storage_error(exc, "listing", directory) from exc
        for entry in entries:
            key = f"{relative}{entry.name}"
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from self._walk(Path(entry.path), f"{key}/")
                elif entry.is_file(follow_symlinks=False) and not _PARTIAL.match(entry.name):
                    yield StoredObject(key, entry.stat(follow_symlinks=False).st_size)
            except FileNotFoundError:  # removed while listing: it is not there any more
                continue
            except OSError as exc:
                raise _storage_error(exc, "listing", Path(entry.path)) from exc

    def _path(self, key: str) -> Path:
        if not key or key in (".", "..") or "/" in key or "\\" in key or "\0" in key:
            raise ValueError(f"object keys are plain file names, got {key!r}")
        return self.directory / key

    @contextmanager
    def _writing(self, key: str) -> Iterator[ObjectWriter]:
        path = self._path(key)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _storage_error(exc, "creating", self.directory) from exc
        temp = self.directory / f".{key}.partial-{secrets.token_hex(6)}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise _storage_error(exc, "writing", path) from exc
        published = False
        try:
            with os.fdopen(fd, "wb") as file:
                yield _FileWriter(file, path)
                try:
                    file.flush()
                    os.fsync(file.fileno())
                except OSError as exc:
                    raise _storage_error(exc, "writing", path) from exc
            try:
                os.replace(temp, path)
            except OSError as exc:
                raise _storage_error(exc, "writing", path) from exc
            published = True
            self._sync_directory()
        finally:
            if not published:
                with suppress(OSError):
                    temp.unlink()

    @contextmanager
    def _reading(self, key: str) -> Iterator[Readable]:
        path = self._path(key)
        try:
            file = path.open("rb")
        except FileNotFoundError:
            raise BackupNotFound(f"no file at {self.uri(key)}") from None
        except OSError as exc:
            raise _storage_error(exc, "reading", path) from exc
        with file:
            yield _FileReader(file, path)

    def _sync_directory(self) -> None:
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise _storage_error(exc, "syncing", self.directory) from exc
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # fs without directory fsync
                raise _storage_error(exc, "syncing", self.directory) from exc
        finally:
            os.close(fd)


class _FileWriter:
    """Maps write errors (ENOSPC, EACCES) to typed errors naming the final path."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        self._file = file
        self._path = path

    def write(self, data: bytes, /) -> int:
        try:
            return self._file.write(data)
        except OSError as exc:
            raise _storage_error(exc, "writing", self._path) from exc


class _FileReader:
    """Maps read errors (EIO on a failing volume) to typed errors naming the file."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        self._file = file
        self._path = path

    def read(self, n: int = -1, /) -> bytes:
        try:
            return self._file.read(n)
        except OSError as exc:
            raise _storage_error(exc, "reading", self._path) from exc
