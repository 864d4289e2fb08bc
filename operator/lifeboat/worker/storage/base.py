"""What every storage backend offers: atomic streaming writes, streaming reads, small objects.

A backend is bound to one backup location (a prefix or directory); keys are relative names
inside it ("manifest.json", "dump.pgc.zst"). Writes are all-or-nothing: until `commit` nothing is
visible under the key, and an abandoned write leaves nothing behind (no temp file, no multipart
upload).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from lifeboat.worker.streams import Readable

WRITE_PROBE = ".lifeboat-write-check"
"""The key `check_writable` writes and removes; never part of a backup."""


@dataclass(frozen=True)
class StoredObject:
    """One object found by `Storage.list_objects`."""

    key: str
    """Name relative to the storage's location, '/'-separated: "shop/db-1a2b3c4d/manifest.json"."""

    size: int
    """Bytes stored."""


@dataclass(frozen=True)
class StoredEncryption:
    """How the storage server says it encrypts a stored object (S3 server-side encryption)."""

    type: str
    """AES256 (SSE-S3) or aws:kms (SSE-KMS), as the server reported it."""

    kms_key_id: str | None = None
    """The KMS key that protects it, for aws:kms."""


class ObjectWriter(Protocol):
    def write(self, data: bytes, /) -> int: ...


class Storage(Protocol):
    def uri(self, key: str = "") -> str:
        """The location of `key` for people and the manifest (s3://..., file://...)."""
        ...

    def check(self) -> None:
        """Fail early with BucketNotFound/AccessDenied/StorageUnreachable (reads only)."""
        ...

    def check_writable(self) -> None:
        """Prove that writes are accepted here before a backup starts: write the small probe
        object `WRITE_PROBE` and remove it again (a bucket that refuses deletes, such as one
        under object lock, keeps the probe: it is not a backup). AccessDenied/DiskFull/... on
        failure."""
        ...

    def open_writer(
        self, key: str, size_hint: int | None = None
    ) -> AbstractContextManager[ObjectWriter]:
        """Stream an object. Leaving the block normally publishes it; an exception aborts it."""
        ...

    def open_reader(self, key: str) -> AbstractContextManager[Readable]:
        """Stream an object; raises BackupNotFound if it does not exist."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object atomically."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Read a small object; raises BackupNotFound if it does not exist."""
        ...

    def size(self, key: str) -> int | None:
        """Bytes of the object, or None when it does not exist."""
        ...

    def stored_encryption(self, key: str) -> StoredEncryption | None:
        """How the server encrypts the stored object at rest, as it reports it; None when it
        reports nothing (a volume, or S3 without server-side encryption)."""
        ...

    def delete(self, keys: list[str]) -> None:
        """Delete objects; missing ones are not an error."""
        ...

    def remove_incomplete(self, keys: list[str]) -> list[str]:
        """Remove what writes of `keys` at this location left when their process was killed
        outright (an S3 multipart upload, a directory's hidden temp file): never visible as an
        object, but taking space. Only those keys, only at this location. Returns what was
        removed, for people."""
        ...

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object below this location whose key starts with `prefix`, at any depth, in no
        particular order: what `list_backups` searches for manifests. BucketNotFound,
        AccessDenied, BackupNotFound (no such directory) on failure."""
        ...

    def at(self, path: str) -> Storage:
        """The location `path` ('a/b/') below this one, on the same server with the same
        credentials: a backup found by `list_objects`."""
        ...
