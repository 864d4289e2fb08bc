"""`Restore`: load one backup into a database, verified, once.

The backup comes from a Backup object in the same namespace (backupRef) or, in a cluster where
no Backup object exists (disaster recovery into a new cluster), straight from storage (source).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from lifeboat.api.common import (
    ApiModel,
    CelRule,
    ObjectMeta,
    ObjectName,
    SafePath,
    SpecModel,
    StatusModel,
    Timestamp,
    cel,
    invalid,
)
from lifeboat.api.database import (
    DatabaseSpec,
    Engine,
)
from lifeboat.api.job import (
    JobOptions,
)
from lifeboat.api.status import (
    OperationStatus,
)
from lifeboat.api.storage import (
    EncryptionSpec,
    StorageSpec,
)

RESTORE_AGAIN_ANNOTATION: Final = "lifeboat.dev/restore-again"
"""On a Restore: a value not used before by a successful Restore of the same name lets it restore
a Backup that name has already restored (status.restores of the Backup records the values)."""

RESTORE_IMMUTABLE_RULE: Final = CelRule(
    rule="self == oldSelf",
    message=(
        "a Restore's spec cannot change once created: to restore again or with other settings, "
        "create a new Restore with a new name"
    ),
)
RESTORE_SOURCE_RULE: Final = CelRule(
    rule=(
        "(has(self.backupRef) ? 1 : 0) + (has(self.scheduleRef) ? 1 : 0)"
        " + (has(self.source) ? 1 : 0) == 1"
    ),
    message=(
        "set exactly one of backupRef (a Backup in this namespace), scheduleRef (the newest "
        "Completed Backup of a BackupSchedule) or source (a backup in storage, for a cluster "
        "without the Backup object)"
    ),
)
RESTORE_TARGET_RULE: Final = CelRule(
    rule="!has(self.source) || has(self.target)",
    message="target is required with source: there is no Backup to take the database from",
)
RESTORE_OWNER_OPTIONS_RULE: Final = CelRule(
    rule=(
        "!has(self.target) || self.target.engine == 'postgresql'"
        " || (!(has(self.noOwner) && self.noOwner)"
        " && !(has(self.noPrivileges) && self.noPrivileges))"
    ),
    message="noOwner and noPrivileges are postgresql options: remove them for this engine",
)
RESTORE_SPEC_RULES: Final = (
    RESTORE_IMMUTABLE_RULE,
    RESTORE_SOURCE_RULE,
    RESTORE_TARGET_RULE,
    RESTORE_OWNER_OPTIONS_RULE,
)


class BackupRef(SpecModel):
    """A Backup in the same namespace as the Restore."""

    name: ObjectName
    """Name of the Backup to restore. It must be Completed."""


class ScheduleRef(SpecModel):
    """A BackupSchedule in the same namespace as the Restore."""

    name: ObjectName
    """Name of the BackupSchedule. The Restore restores its newest Completed Backup, chosen
    once when the Restore starts (status.resolvedBackup) and never chosen again."""


class RestoreSource(SpecModel):
    """A backup found directly in storage, without a Backup object."""

    storage: StorageSpec
    """The storage holding the backup: same shape as a Backup's spec.storage (credentials
    included)."""

    path: SafePath = ""
    """Directory of the backup inside the storage, relative to s3.prefix or volume.path: the
    directory holding manifest.json (see the old Backup's status.artifact.manifestUri). Empty:
    the prefix or path itself is that directory."""


class RestoreSpec(SpecModel):
    """Which backup to restore, into which database, how. Immutable once created."""

    model_config = ConfigDict(json_schema_extra=cel(*RESTORE_SPEC_RULES))

    backup_ref: BackupRef | None = None
    """The Backup to restore, in this namespace. Set exactly one of backupRef, scheduleRef or
    source."""

    schedule_ref: ScheduleRef | None = None
    """Restore the newest Completed Backup of this BackupSchedule: a disaster-recovery manifest
    in Git that means "the latest good backup" when it is applied. Resolved once, when the
    Restore starts (status.resolvedBackup); it never moves to a newer Backup afterwards."""

    source: RestoreSource | None = None
    """A backup straight from storage, when no Backup object exists (for example restoring
    into a new cluster). Set this or backupRef; target is then required."""

    target: DatabaseSpec | None = None
    """The database to restore into: same shape as a Backup's spec.database. Unset: the
    Backup's own database (restore in place). Its engine must match the backup's."""

    encryption: EncryptionSpec | None = None
    """The key of an encrypted backup, when it is not the one the backup's storage names: for
    example after the key moved to another Secret. Unset: with backupRef or scheduleRef, the
    key the Backup was encrypted with (its status.storage.encryption); with source,
    source.storage.encryption (or its store's). A key whose id is not the backup's fails with
    EncryptionKeyMismatch before the target is touched; a key for a backup that is not
    encrypted fails with BackupNotEncrypted."""

    keep_extra_objects: bool = False
    """false (default): the target ends up equal to the backup; tables and other objects
    created after the backup are dropped. true: objects not in the backup are left in place."""

    verify_checksum_first: bool = True
    """true (default): read the whole stored dump and check its SHA-256 against the manifest
    before touching the target, so a corrupt backup never reaches the database (one extra
    download). false: check while restoring; a mismatch still fails and rolls back the
    restore."""

    dry_run: bool = False
    """true: change nothing; check everything a restore needs and record what it would do in
    status.plan (kubectl describe shows it): the target's login, privileges, server version and
    roles, the artifact's size and SHA-256, the tables and rows it would load, what it would
    replace and drop. Ends Completed with reason DryRunSucceeded, or Failed with the reason of
    the check that failed. To restore for real afterwards, create a new Restore."""

    no_owner: bool = False
    """postgresql only: do not restore object owners (pg_restore --no-owner). Every restored
    object then belongs to the restoring user, and the roles that owned them in the backup
    need not exist on the target: use it to restore into another cluster or a database owned
    by another role."""

    no_privileges: bool = False
    """postgresql only: do not restore GRANTs and REVOKEs (pg_restore --no-privileges), for a
    target where the backup's grantees do not exist."""

    job: JobOptions | None = None
    """Tuning for the Job that runs the restore: image, resources, scheduling, deadlines."""

    @model_validator(mode="after")
    def _source_and_target(self) -> Self:
        sources = (self.backup_ref, self.schedule_ref, self.source)
        if sum(source is not None for source in sources) != 1:
            raise invalid("restore_source", RESTORE_SOURCE_RULE.message)
        if self.source is not None and self.target is None:
            raise invalid("restore_target", RESTORE_TARGET_RULE.message)
        if (
            (self.no_owner or self.no_privileges)
            and self.target is not None
            and self.target.engine is not Engine.POSTGRESQL
        ):
            raise invalid("restore_owner_options", RESTORE_OWNER_OPTIONS_RULE.message)
        return self


class RestoreVerification(StatusModel):
    """What the worker proved about the restore, written when it ends."""

    checksum_verified: bool | None = None
    """The stored dump's SHA-256 matched the manifest."""

    row_counts_matched: bool | None = None
    """Rows per table in the target, counted after the restore, equal the counts recorded at
    backup time."""

    tables_verified: Annotated[int, Field(ge=0)] | None = None
    """Tables whose row counts were compared."""

    rows_verified: Annotated[int, Field(ge=0)] | None = None
    """Rows counted in the target across those tables."""

    backup_name: Annotated[str, Field(max_length=253)] | None = None
    """The Backup restored (empty when restored from source)."""

    artifact_uri: Annotated[str, Field(max_length=4096)] | None = None
    """Location of the dump that was restored."""

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """SHA-256 of the dump that was restored, hex."""

    mismatches: list[Annotated[str, Field(max_length=1024)]] | None = None
    """What did not match, one line each, for example 'public.orders: 1200 rows, expected
    1250'. Empty when everything matched; the worker lists the first few only."""


class RestorePlanCheck(StatusModel):
    """One check a dry run passed."""

    name: Annotated[str, Field(max_length=63)]
    """What was checked: connect, privileges, server version, roles, artifact, checksum."""

    detail: Annotated[str, Field(max_length=1024)]
    """What was found, for example 'PostgreSQL 15.8; logged in as app, owner of shop'."""


PLAN_LIST_LIMIT: Final = 100
"""Object lists in status.plan stop after this many names (status must stay small); the
counts are always complete."""


class RestorePlanStatus(StatusModel):
    """What a dry run found a restore would do; nothing was changed. Written by the worker."""

    target_exists: bool | None = None
    """false: the restore would create the database."""

    server_version: Annotated[str, Field(max_length=256)] | None = None
    """Version of the target database server."""

    backup_taken_at: Timestamp | None = None
    """When the backup's dump completed."""

    bytes_to_download: Annotated[int, Field(ge=0)] | None = None
    """Bytes of the stored dump a restore would download (the dry run read them once to check
    the SHA-256)."""

    checksum_verified: bool | None = None
    """The stored dump's size and SHA-256 matched the manifest."""

    tables: Annotated[int, Field(ge=0)] | None = None
    """Tables a restore would load."""

    rows: Annotated[int, Field(ge=0)] | None = None
    """Rows a restore would load, per the manifest."""

    replaced_count: Annotated[int, Field(ge=0)] | None = None
    """Objects of the target a restore would replace with the backup's."""

    replaced: list[Annotated[str, Field(max_length=1024)]] | None = None
    """Names of the objects a restore would replace (the first 100)."""

    dropped_count: Annotated[int, Field(ge=0)] | None = None
    """Objects of the target that are not in the backup and a restore would drop."""

    dropped: list[Annotated[str, Field(max_length=1024)]] | None = None
    """Names of the objects a restore would drop (the first 100). Set keepExtraObjects to keep
    them."""

    kept_count: Annotated[int, Field(ge=0)] | None = None
    """Objects of the target that are not in the backup and would stay (keepExtraObjects)."""

    kept: list[Annotated[str, Field(max_length=1024)]] | None = None
    """Names of the objects that would stay (the first 100)."""

    checks: list[RestorePlanCheck] | None = None
    """Every check that passed, in order."""

    notes: list[Annotated[str, Field(max_length=1024)]] | None = None
    """Anything else worth knowing before restoring for real."""


NOTES_LIMIT: Final = 10
"""status.notes keeps at most this many notes (status must stay small)."""
NOTE_MAX_LENGTH: Final = 1024
"""Characters of one note in status.notes; a longer one is cut short."""


class RestoreStatus(OperationStatus):
    """Observed state of a Restore, written by the operator and its Job."""

    resolved_backup: Annotated[str, Field(max_length=253)] | None = None
    """The Backup being restored: spec.backupRef's, or the one spec.scheduleRef resolved to
    (the schedule's newest Completed Backup when the Restore started). Never changes once set."""

    engine: Engine | None = None
    """Engine of the database being restored into, recorded by the controller when it starts
    the Job (from target or the Backup's database)."""

    database: Annotated[str, Field(max_length=4096)] | None = None
    """The database being restored into: its name (sqlite: the file's path on its claim),
    recorded by the controller when it starts the Job."""

    verification: RestoreVerification | None = None
    """What the restore proved: checksum and row counts. Set when the restore ends."""

    plan: RestorePlanStatus | None = None
    """spec.dryRun only: what a restore would do, and every check that passed."""

    notes: (
        Annotated[
            list[Annotated[str, Field(max_length=NOTE_MAX_LENGTH)]],
            Field(max_length=NOTES_LIMIT),
        ]
        | None
    ) = None
    """What a person should know about a restore that succeeded, one line each, written by the
    worker with the verification: leftovers of an interrupted restore that this one removed
    (staged tables, a staged SQLite file), parked tables it kept for you to check and drop, a
    database it created, options that changed ownership or grants. Names of tables, files and
    roles only, never credentials. At most 10 (the last then says how many more the Job's log
    has). Absent when there was nothing to say; a dry run's notes are in plan.notes.
    `kubectl lifeboat describe restore` shows them."""


class Restore(ApiModel):
    """Loads one backup into a database, taken from a Backup in the same namespace or straight
    from storage, and verifies it (checksum, row counts). By default the target ends up equal
    to the backup: what was added since is dropped. To restore again, create a new Restore.

    A Restore whose name has already restored its Backup successfully (the Backup's
    status.restores says so) is refused with reason AlreadyRestored when it is created again,
    for example by a GitOps tool re-applying it after it was deleted: restoring again takes a
    new name, or the annotation lifeboat.dev/restore-again set to a value that name has not
    restored with before. Dry runs are never refused and never count."""

    api_version: Literal["lifeboat.dev/v1alpha1"] = "lifeboat.dev/v1alpha1"
    """lifeboat.dev/v1alpha1."""

    kind: Literal["Restore"] = "Restore"
    """Restore."""

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""

    spec: RestoreSpec
    """Which backup to restore, into which database, how."""

    status: RestoreStatus = Field(default_factory=RestoreStatus)
    """Observed state, written by the operator and its Job: phase and message for people,
    conditions for automation, progress while the Job runs."""
