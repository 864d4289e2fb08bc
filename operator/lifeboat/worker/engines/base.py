"""What every database engine offers the pipeline: inspect, dump as a stream, restore atomically.

The pipeline owns compression, hashing, storage and byte-level progress. An engine owns the
database: it runs the dump/restore tools, reports finished items (tables) to `Progress` from the
tools' own output, counts rows in the dump's own snapshot, and makes the restore all-or-nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.manifest import Manifest
from lifeboat.worker.progress import Progress
from lifeboat.worker.streams import Readable


@dataclass(frozen=True)
class ServerInfo:
    """What `inspect()` learned from the server's own catalog before a dump starts."""

    version: str
    tables: list[str]
    estimated_bytes: int
    """Bytes of table data per the catalog: the total for byte progress (an estimate)."""


@dataclass(frozen=True)
class DumpSummary:
    """What is known once the dump tool exited successfully."""

    row_counts: Mapping[str, int]
    """Exact rows per table, consistent with the data in the dump (same snapshot)."""


class DumpStream(Protocol):
    """The running dump: raw dump bytes to read, then `finish()` once `read` returned b""."""

    def read(self, n: int = -1, /) -> bytes: ...

    def finish(self) -> DumpSummary:
        """Wait for the tool; raise `DumpFailed` with its own error line if it failed."""
        ...


@dataclass(frozen=True)
class RestoreOptions:
    keep_extra_objects: bool = False
    """False (default): the target ends up equal to the backup; objects created after the
    backup are dropped. True: objects not in the backup are left in place."""


@dataclass(frozen=True)
class RestoreResult:
    row_counts: Mapping[str, int]
    """Rows per table counted in the target after the restore committed."""
    notes: list[str] = field(default_factory=list)


class Engine(Protocol):
    """One database engine. Constructed from a `DatabaseURL`; holds no open connection."""

    name: ClassVar[str]
    dump_format: ClassVar[str]
    """Written to the manifest; a restore refuses artifacts of another format."""

    url: DatabaseURL
    """The database this engine was constructed for."""

    def inspect(self) -> ServerInfo:
        """Connect and read version, tables and sizes. Raises DatabaseUnreachable,
        AuthenticationFailed or DatabaseError with one clear line."""
        ...

    def dump(self, progress: Progress) -> AbstractContextManager[DumpStream]:
        """Start the dump tool. Leaving the context early (an exception) kills the tool."""
        ...

    def restore(
        self, source: Readable, manifest: Manifest, progress: Progress, options: RestoreOptions
    ) -> RestoreResult:
        """Load the raw dump from `source` (read to b"") into the target, atomically.

        Contract: `source.read` may raise (ChecksumMismatch at its end, a storage error) and then
        the target must be exactly as before. Before making the restore visible (commit, swap),
        compare row counts with `manifest.row_counts` and raise VerificationFailed on any
        difference, leaving the target unchanged. A missing target database is created.
        """
        ...
