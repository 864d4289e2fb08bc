"""`Backup`: one backup of one database to one storage location, taken once.

A Backup is a request and its record: the operator runs exactly one Job for it and records the
result (the artifact) in status. Its spec never changes afterwards (except deletionPolicy): a
new backup is a new Backup object.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import ConfigDict, Field, computed_field

from lifeboat.api.common import (
    ApiModel,
    CelRule,
    ObjectMeta,
    SpecModel,
    StatusModel,
    Timestamp,
    cel,
)
from lifeboat.api.database import (
    DatabaseSpec,
    Engine,
)
from lifeboat.api.drill import DRILL_HISTORY_LIMIT, DrillRecord
from lifeboat.api.job import (
    JobOptions,
)
from lifeboat.api.status import (
    OperationStatus,
    Phase,
)
from lifeboat.api.storage import (
    ArtifactEncryption,
    Compression,
    StorageBackend,
    StorageSpec,
    StoredServerSideEncryption,
)
from lifeboat.contract import format_bytes


class DeletionPolicy(StrEnum):
    """What happens to the stored backup when the Backup object is deleted."""

    DELETE = "Delete"
    RETAIN = "Retain"


BACKUP_IMMUTABLE_RULE: Final = CelRule(
    rule=(
        "self.database == oldSelf.database && self.storage == oldSelf.storage"
        " && self.compression == oldSelf.compression"
        " && has(self.job) == has(oldSelf.job) && (!has(self.job) || self.job == oldSelf.job)"
    ),
    message=(
        "a Backup's spec cannot change once created (only deletionPolicy can): to back up with "
        "other settings, create a new Backup with a new name"
    ),
)
BACKUP_SPEC_RULES: Final = (BACKUP_IMMUTABLE_RULE,)
BACKUP_MUTABLE_FIELDS: Final = frozenset({"deletionPolicy"})
"""Spec fields BACKUP_IMMUTABLE_RULE lets change: every other field must appear in the rule."""


class BackupTemplate(SpecModel):
    """What to back up and where to: a Backup's spec, and a BackupSchedule's template."""

    database: DatabaseSpec
    """The database to back up."""

    storage: StorageSpec
    """Where to write the backup: an S3-compatible bucket or a PersistentVolumeClaim."""

    compression: Compression = Compression.ZSTD
    """Compression of the stored dump: zstd (default: fast, small), gzip (for tools that only
    read gzip) or none (the dump format is already compressed, or CPU is scarce)."""

    deletion_policy: DeletionPolicy = DeletionPolicy.RETAIN
    """What happens to the stored backup when this Backup is deleted. Retain (default): the
    files stay in storage, so deleting the object (by hand, by namespace deletion, by a GitOps
    prune) never loses data. Delete: the operator deletes them first (condition
    StorageCleanup); the object stays until that succeeded. This field can be changed after
    creation, for example to Retain before deleting a Backup whose data must be kept."""

    job: JobOptions | None = None
    """Tuning for the Job that runs the backup: image, resources, scheduling, deadlines."""


class BackupSpec(BackupTemplate):
    """What to back up and where to. Immutable once created, except deletionPolicy."""

    model_config = ConfigDict(json_schema_extra=cel(*BACKUP_SPEC_RULES))


class BackupArtifact(StatusModel):
    """The stored backup, written by the worker once the manifest is stored: it exists only
    if this is set."""

    uri: Annotated[str, Field(max_length=4096)] | None = None
    """Location of the dump file, for example s3://backups/shop/shop-db-3f2a/dump.pgc.zst."""

    manifest_uri: Annotated[str, Field(max_length=4096)] | None = None
    """Location of manifest.json next to the dump: what a Restore reads first (size, SHA-256,
    row counts). Use its directory as a Restore's source.path in another cluster."""

    size: Annotated[int, Field(ge=0)] | None = None
    """Bytes of the stored (compressed) dump."""

    raw_size: Annotated[int, Field(ge=0)] | None = None
    """Bytes of the dump before compression."""

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """SHA-256 of the stored dump, hex. A Restore checks it before trusting the data."""

    compression: Compression | None = None
    """Compression actually used for the stored dump."""

    encryption: ArtifactEncryption | None = None
    """How Lifeboat encrypted the stored dump (algorithm and key id, never the key); unset when
    it is not encrypted. A restore needs the key with this key id."""

    server_side_encryption: StoredServerSideEncryption | None = None
    """The S3 server-side encryption S3 reported for the stored dump (also a bucket's default
    encryption); unset when S3 reported none, or for a volume."""

    engine: Engine | None = None
    """Engine the dump was taken from."""

    server_version: Annotated[str, Field(max_length=256)] | None = None
    """Version of the database server the dump was taken from. Restore into the same or a
    newer major version."""

    database: Annotated[str, Field(max_length=4096)] | None = None
    """Name of the database dumped (for sqlite, the file's path)."""

    tables: Annotated[int, Field(ge=0)] | None = None
    """Number of tables in the dump."""

    rows: Annotated[int, Field(ge=0)] | None = None
    """Total rows in the dump, counted in the same snapshot as the dump itself."""

    @computed_field(  # type: ignore[prop-decorator]
        description="size for people and kubectl's Size column, for example 1.5 GiB. Derived "
        "from size whenever the artifact is written; do not set it by hand."
    )
    @property
    def size_text(self) -> str | None:
        return None if self.size is None else format_bytes(self.size)


RESTORE_HISTORY_LIMIT: Final = 20
"""status.restores keeps at most this many Restores (dry runs and failures are dropped first,
then the oldest successful ones)."""


class RestoreRecord(StatusModel):
    """One Restore that read this Backup, as the operator recorded it when the Restore ended."""

    name: Annotated[str, Field(max_length=253)]
    """Name of the Restore, in this Backup's namespace. A Restore created again under this name
    (for example by a GitOps tool after it was deleted) does not restore again once this name
    has restored this Backup successfully: it fails with reason AlreadyRestored, unless it
    carries the annotation lifeboat.dev/restore-again with a value not recorded here for a
    successful restore."""

    uid: Annotated[str, Field(max_length=128)]
    """metadata.uid of that Restore: a Restore deleted and created again has a new one."""

    time: Timestamp
    """When the Restore ended."""

    result: Phase
    """Completed or Failed."""

    reason: Annotated[str, Field(max_length=1024)]
    """The Restore's status.reason: Completed, DryRunSucceeded, or why it failed (for example
    ChecksumMismatch, AuthenticationFailed)."""

    dry_run: bool = False
    """true: a dry run; it changed nothing and never counts as a restore."""

    restore_again: Annotated[str, Field(max_length=256)] | None = None
    """The value of the Restore's lifeboat.dev/restore-again annotation, if it had one (values
    longer than 256 characters are recorded as their sha256)."""

    database: Annotated[str, Field(max_length=4096)] | None = None
    """The database restored into: its name (sqlite: the file's path on its claim)."""

    checksum_verified: bool | None = None
    """The artifact's SHA-256 matched the manifest."""

    tables_verified: Annotated[int, Field(ge=0)] | None = None
    """Tables whose row counts were compared with the manifest after the restore."""

    rows_verified: Annotated[int, Field(ge=0)] | None = None
    """Rows counted in the target across those tables."""


class BackupStatus(OperationStatus):
    """Observed state of a Backup, written by the operator and its Job."""

    database: Annotated[str, Field(max_length=4096)] | None = None
    """The database being backed up: its name (sqlite: the file's path on its claim), recorded
    by the controller when it starts the Job. Shown by kubectl get -o wide."""

    artifact: BackupArtifact | None = None
    """The stored backup: set when the backup is Completed."""

    storage: StorageBackend | None = None
    """The storage this backup was written to, recorded by the controller when it starts the
    Job: spec.storage, with a storeRef resolved to the BackupStore's settings as they were
    then. Restores and the storage cleanup read the backup from here, so editing a store later
    never loses track of the backups already in it. Names Secrets, never holds them."""

    restores: Annotated[list[RestoreRecord], Field(max_length=RESTORE_HISTORY_LIMIT)] | None = None
    """The Restores that read this Backup, oldest first, written by the operator when each
    ended: which Restore (name, uid), when, the result and its proof (tables and rows
    verified). It is what keeps a Restore kept in Git from restoring again when a GitOps tool
    re-creates it: see the restore-again annotation under restores[].name. At most 20 entries."""

    drills: Annotated[list[DrillRecord], Field(max_length=DRILL_HISTORY_LIMIT)] | None = None
    """The restore drills of this Backup, oldest first, written by the operator when each
    ended: which RestoreDrill, when, the result, the restore's duration, the tables and rows
    verified, the first failed check, and where its report is stored. At most 10 entries."""


class Backup(ApiModel):
    """One backup of one database to an S3-compatible bucket or a PersistentVolumeClaim, taken
    once by a Job. kubectl get backups shows its phase and progress; status.conditions and
    status.message say why it failed. To back up again, create a new Backup."""

    api_version: Literal["lifeboat.dev/v1alpha1"] = "lifeboat.dev/v1alpha1"
    """lifeboat.dev/v1alpha1."""

    kind: Literal["Backup"] = "Backup"
    """Backup."""

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""

    spec: BackupSpec
    """What to back up and where to."""

    status: BackupStatus = Field(default_factory=BackupStatus)
    """Observed state, written by the operator and its Job: phase and message for people,
    conditions for automation, progress while the Job runs."""
