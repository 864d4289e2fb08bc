"""What every database engine offers the pipeline: preflight, inspect, dump as a stream, plan and
restore atomically.

The pipeline owns compression, hashing, storage and byte-level progress. An engine owns the
database: it checks before it starts that the work can succeed (a login, the privileges, a server
that can load the dump), runs the dump/restore tools, reports finished items (tables) to
`Progress` from the tools' own output, counts rows in the dump's own snapshot, and makes the
restore all-or-nothing.

Preflight failures are the typed errors of `lifeboat.worker.errors` (AuthenticationFailed,
InsufficientPrivilege naming the privilege, the object and the GRANT that fixes it,
IncompatibleServer, RoleMissing, DatabaseUnreachable), raised within seconds, before a byte of
the dump or the artifact moves.
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
    table_bytes: Mapping[str, int] = field(default_factory=dict)
    """Bytes per table per the catalog, named as progress items are (the estimate, split), so
    progress can correct a low estimate from the tables already dumped."""


@dataclass(frozen=True)
class Check:
    """One preflight check that passed: what was checked and what was found."""

    name: str
    """Short and stable: connect, privileges, server version, roles, storage."""
    detail: str
    """What was found, for people: 'PostgreSQL 15.8, logged in as app (owner of shop)'."""


@dataclass(frozen=True)
class RestorePlan:
    """What a restore would do to its target, learned without changing anything.

    Objects are labelled '<kind> <name>' like `DumpSummary.objects` ('table shop.orders',
    'view shop.totals'), so the target's objects compare with the manifest's."""

    database: str
    """The target database as people name it (never with a password)."""
    server_version: str
    database_exists: bool
    """False: the restore creates the database."""
    replaced: list[str] = field(default_factory=list)
    """Objects of the target that the backup's objects of the same name replace."""
    dropped: list[str] = field(default_factory=list)
    """Objects of the target that are not in the backup and will be dropped."""
    kept: list[str] = field(default_factory=list)
    """Objects of the target that are not in the backup and stay (keep_extra_objects)."""
    checks: list[Check] = field(default_factory=list)
    """Every preflight check that passed, in order."""
    notes: list[str] = field(default_factory=list)
    """Anything else worth knowing (leftovers of an interrupted restore, owners mapped)."""


@dataclass(frozen=True)
class DumpSummary:
    """What is known once the dump tool exited successfully."""

    row_counts: Mapping[str, int]
    """Exact rows per table, consistent with the data in the dump (same snapshot)."""
    roles: list[str] = field(default_factory=list)
    """Roles the dump names (owners, grantees, definers): recorded in the manifest so a restore
    can check them before it reads the artifact."""
    objects: list[str] = field(default_factory=list)
    """Every object in the dump as '<kind> <name>' ('table shop.orders', 'view shop.totals'),
    the labels `RestorePlan` uses: recorded in the manifest so a dry run can say what a restore
    would replace and drop without reading the artifact."""


class DumpStream(Protocol):
    """The running dump: raw dump bytes to read, then `finish()` once `read` returned b""."""

    def read(self, n: int = -1, /) -> bytes: ...

    def finish(self) -> DumpSummary:
        """Wait for the tool; raise `DumpFailed` with its own error line if it failed."""
        ...


def incoming_objects(manifest: Manifest, plan: RestorePlan) -> set[str]:
    """The labels of the objects a backup brings. Manifests without `objects` (older Lifeboat)
    list tables only: the plan then says that other objects are compared by tables alone."""
    if manifest.objects is not None:
        return set(manifest.objects)
    plan.notes.append(
        "the manifest lists tables only (written by an older Lifeboat): objects other than "
        "tables are shown as dropped (or kept) even if the backup has them too"
    )
    return {f"table {name}" for name in manifest.row_counts}


def sort_objects(
    plan: RestorePlan, current: list[str], manifest: Manifest, *, keep_extra_objects: bool
) -> None:
    """Sort the target's objects (labels) into the plan: replaced when the backup has an object
    of that label, else dropped (or kept)."""
    incoming = incoming_objects(manifest, plan)
    for label in current:
        if label in incoming:
            plan.replaced.append(label)
        elif keep_extra_objects:
            plan.kept.append(label)
        else:
            plan.dropped.append(label)


@dataclass(frozen=True)
class RestoreOptions:
    keep_extra_objects: bool = False
    """False (default): the target ends up equal to the backup; objects created after the
    backup are dropped. True: objects not in the backup are left in place."""
    no_owner: bool = False
    """PostgreSQL: do not restore object owners (pg_restore --no-owner): every restored object
    belongs to the restoring role, and the backup's roles need not exist on the target."""
    no_privileges: bool = False
    """PostgreSQL: do not restore GRANTs/REVOKEs (pg_restore --no-privileges)."""


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

    def preflight_backup(self) -> list[Check]:
        """Before a dump: connect and prove the login can read everything the dump reads (every
        table, sequence, view definition, routine). Returns the checks that passed; raises the
        typed error of the first that failed. Changes nothing."""
        ...

    def inspect(self) -> ServerInfo:
        """Connect and read version, tables and sizes. Raises DatabaseUnreachable,
        AuthenticationFailed or DatabaseError with one clear line."""
        ...

    def dump(self, progress: Progress) -> AbstractContextManager[DumpStream]:
        """Start the dump tool. Leaving the context early (an exception) kills the tool."""
        ...

    def plan_restore(self, manifest: Manifest, options: RestoreOptions) -> RestorePlan:
        """Before a restore reads the artifact: connect to the target (or, if the database is
        missing, prove it can be created), check the privileges the restore needs, that the
        server can load this dump (versions) and that the roles the backup names exist (unless
        `options.no_owner`). Returns what the restore would replace, drop and keep; raises the
        typed error of the first failed check. Changes nothing: this is also the dry run."""
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
