"""`RestoreDrill`: prove that a Backup restores, in a throwaway database that is dropped after.

A drill is its own kind, not a flag on Restore, because it is a different power: a Restore may
overwrite a production database, a drill never can (it only ever creates and drops a database
named `<db>__lifeboat_drill_<id>`). RBAC can then let CI, auditors or a schedule's owner run
drills without the right to restore, and `kubectl get restores` stays the list of real restores
(their history, alerts and AlreadyRestored rule do not mix with drills). docs/drills.md says
what a drill proves and what it does not.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from lifeboat.api.common import (
    ApiModel,
    CelRule,
    Matches,
    ObjectMeta,
    SecretKeyRef,
    SpecModel,
    StatusModel,
    Timestamp,
    cel,
    invalid,
)
from lifeboat.api.database import Engine
from lifeboat.api.job import JobOptions
from lifeboat.api.restore import BackupRef, ScheduleRef
from lifeboat.api.status import OperationStatus, Phase

DRILL_KIND: Final = "RestoreDrill"
DRILL_PLURAL: Final = "restoredrills"
DRILL_CHECKS_LIMIT: Final = 20
DRILL_HISTORY_LIMIT: Final = 10
"""A Backup's status.drills keeps the newest this many drills."""
BACKUP_TIME_PLACEHOLDER: Final = "${BACKUP_TIME}"
"""In a check's query: the moment the backup's snapshot was taken, as an SQL string literal in
UTC ('2026-12-03 02:00:41'); checks run with the session's time zone set to UTC."""

DRILL_IMMUTABLE_RULE: Final = CelRule(
    rule="self == oldSelf",
    message=(
        "a RestoreDrill's spec cannot change once created: to drill again or with other "
        "settings, create a new RestoreDrill with a new name"
    ),
)
DRILL_SOURCE_RULE: Final = CelRule(
    rule="has(self.backupRef) != has(self.scheduleRef)",
    message=(
        "set exactly one of backupRef (a Backup in this namespace) or scheduleRef (the newest "
        "Completed Backup of a BackupSchedule)"
    ),
)
DRILL_TARGET_RULES: Final = (
    CelRule(
        rule="!has(self.passwordSecretRef) || has(self.user)",
        message="passwordSecretRef needs user: name the login whose password the Secret holds",
    ),
)
DRILL_SPEC_RULES: Final = (DRILL_IMMUTABLE_RULE, DRILL_SOURCE_RULE)


class DrillTarget(SpecModel):
    """Where the throwaway database is created, and as whom. Every field is optional: unset,
    the drill runs on the server the Backup was taken from, as the Backup's login, under a
    reserved name (<database>__lifeboat_drill_<id>); the source database itself is never
    touched. Give a host for a separate drill server, and user with passwordSecretRef for
    separate drill credentials (a role with CREATEDB on PostgreSQL; on MySQL/MariaDB a user
    with ALL PRIVILEGES on the reserved names), so the application's own login needs nothing
    more. Not used for sqlite: a SQLite drill restores into the drill Job's own scratch
    volume."""

    model_config = ConfigDict(json_schema_extra=cel(*DRILL_TARGET_RULES))

    host: (
        Annotated[
            str,
            Field(min_length=1, max_length=253),
            Matches(r"^[^\s/@]+$", "a host name: no scheme, no user@, no path, no spaces"),
        ]
        | None
    ) = None
    """DNS name or IP of the server to drill on, as seen from the Job's pod. Unset: the Backup's
    own server (and, unless port is set, its port)."""

    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """TCP port of that server. Unset: the Backup's port on its own server, else the engine's
    default (5432 postgresql, 3306 mysql and mariadb)."""

    user: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """Login for the drill. It creates and drops the throwaway database, so it needs CREATEDB on
    postgresql (with noOwner unless it is a member of the roles owning the backup's objects) or
    ALL PRIVILEGES on the reserved names on mysql/mariadb (GRANT ALL PRIVILEGES ON
    `shop\\_\\_lifeboat\\_drill\\_%`.* for a database shop; docs/privileges.md). Unset: the
    Backup's user and password."""

    password_secret_ref: SecretKeyRef | None = None
    """Secret key holding user's password. Unset with user set: log in without a password."""

    @model_validator(mode="after")
    def _password_needs_user(self) -> Self:
        if self.password_secret_ref is not None and self.user is None:
            raise invalid("drill_target", DRILL_TARGET_RULES[0].message)
        return self


class DrillCheck(SpecModel):
    """One question the restored data must answer as expected, asked after the restore proved
    its row counts, in a read-only transaction on the throwaway database."""

    name: Annotated[
        str,
        Field(min_length=1, max_length=63),
        Matches(
            r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
            "a short name: lowercase letters, digits and '-', like fresh-orders",
        ),
    ]
    """Short name of the check, shown when it fails (status.report.failedCheck), for example
    fresh-orders."""

    query: Annotated[str, Field(min_length=1, max_length=4096)]
    """One SQL query returning one row of one column. ${BACKUP_TIME} is replaced by the moment
    the backup's snapshot was taken, an SQL string literal in UTC ('2026-12-03 02:00:41'; the
    session runs in UTC), for example on postgresql: SELECT max(created_at) >
    TIMESTAMPTZ ${BACKUP_TIME} - interval '1 day' FROM shop.orders."""

    expect: Annotated[str, Field(max_length=1024)]
    """The value the query must return, as text: true or false for a boolean (postgresql;
    mysql, mariadb and sqlite return 1 or 0), numbers as digits, NULL for a null, other values
    as the driver prints them."""


class DrillOptions(SpecModel):
    """How a drill restores and what it checks (shared by RestoreDrill and a BackupSchedule's
    spec.drill)."""

    target: DrillTarget | None = None
    """Where the throwaway database goes and who logs in. Unset: the Backup's own server and
    login, under the reserved name."""

    checks: Annotated[list[DrillCheck], Field(max_length=DRILL_CHECKS_LIMIT)] | None = None
    """Questions the restored data must answer (at most 20), run after the row counts matched.
    Every check runs; the drill fails if any of them does not return its expected value or
    fails (the database's own error is reported)."""

    no_owner: bool = False
    """postgresql only: do not restore object owners (pg_restore --no-owner). Needed when the
    drill's login is not a member of the roles that own the backup's objects (separate drill
    credentials, or a drill server without those roles)."""

    no_privileges: bool = False
    """postgresql only: do not restore GRANTs and REVOKEs (pg_restore --no-privileges), for a
    drill server without the backup's grantees."""

    verify_checksum_first: bool = True
    """true (default): read the stored dump once to check its SHA-256 before restoring, as a
    restore does. false: check it while restoring (a mismatch still fails the drill)."""

    job: JobOptions | None = None
    """Tuning for the drill's Job: image, resources, scheduling, deadlines."""


class RestoreDrillSpec(DrillOptions):
    """Which Backup to drill, where, and what to check. Immutable once created."""

    model_config = ConfigDict(json_schema_extra=cel(*DRILL_SPEC_RULES))

    backup_ref: BackupRef | None = None
    """The Backup to drill, in this namespace. It must be Completed. Set exactly one of
    backupRef or scheduleRef."""

    schedule_ref: ScheduleRef | None = None
    """Drill the newest Completed Backup of this BackupSchedule, resolved once when the drill
    starts (status.resolvedBackup)."""

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.backup_ref is None) == (self.schedule_ref is None):
            raise invalid("drill_source", DRILL_SOURCE_RULE.message)
        return self


# -- status -----------------------------------------------------------------------------------


class DrillCheckResult(StatusModel):
    """What one check returned."""

    name: Annotated[str, Field(max_length=63)]
    """The check's name."""

    passed: bool
    """It returned the expected value."""

    expected: Annotated[str, Field(max_length=1024)]
    """The value it had to return."""

    actual: Annotated[str, Field(max_length=1024)] | None = None
    """The value it returned (as text; cut at 1024 characters); unset when the query failed."""

    message: Annotated[str, Field(max_length=2048)] | None = None
    """Why it failed: the database's own error, or what came back instead."""


class DrillReport(StatusModel):
    """The drill's evidence, written by the worker when the drill ends, passed or not: the same
    document is stored next to the backup (drills/<time>-<id>.json) so it outlives the
    Kubernetes objects."""

    passed: bool
    """The backup restored, its checksum and row counts matched, every check returned what it
    should, and the throwaway database was dropped."""

    reason: Annotated[str, Field(max_length=1024)]
    """DrillPassed, or why it failed: the worker's reason (RestoreFailed, VerificationFailed,
    ChecksumMismatch, DrillCheckFailed, DrillCleanupFailed, InsufficientPrivilege...)."""

    message: Annotated[str, Field(max_length=32768)]
    """What happened, in words; for a failure, the database's own error."""

    started_at: Timestamp
    """When the drill started."""

    finished_at: Timestamp
    """When it ended (after the throwaway database was dropped)."""

    restore_seconds: Annotated[float, Field(ge=0)] | None = None
    """How long the restore took, from reading the manifest to its verified commit: the
    recovery time this backup needs (checksum pass included unless verifyChecksumFirst is
    false). Unset when the restore did not finish."""

    checks_seconds: Annotated[float, Field(ge=0)] | None = None
    """How long the checks took."""

    total_seconds: Annotated[float, Field(ge=0)] | None = None
    """The whole drill: leftovers, restore, checks and the drop."""

    checksum_verified: bool | None = None
    """The stored dump's SHA-256 matched the manifest."""

    row_counts_matched: bool | None = None
    """Every table's row count in the throwaway database equalled the manifest's."""

    tables_verified: Annotated[int, Field(ge=0)] | None = None
    """Tables whose row counts were compared."""

    rows_verified: Annotated[int, Field(ge=0)] | None = None
    """Rows counted in the throwaway database across those tables."""

    mismatches: list[Annotated[str, Field(max_length=1024)]] | None = None
    """Tables whose row counts did not match (the first few)."""

    checks: list[DrillCheckResult] | None = None
    """Every check, in order, with what it returned."""

    failed_check: Annotated[str, Field(max_length=63)] | None = None
    """The first check that failed."""

    drill_database: Annotated[str, Field(max_length=4096)]
    """The throwaway database (sqlite: the file) the backup was restored into."""

    server: Annotated[str, Field(max_length=512)] | None = None
    """host:port of the drill server (unset for sqlite)."""

    server_version: Annotated[str, Field(max_length=256)] | None = None
    """Version of the drill server."""

    login: Annotated[str, Field(max_length=253)] | None = None
    """The login the drill ran as (never its password)."""

    cleaned_up: bool
    """The throwaway database no longer exists."""

    leftovers_removed: list[Annotated[str, Field(max_length=4096)]] | None = None
    """Throwaway databases of earlier drills (killed workers) this drill dropped first."""

    engine: Annotated[str, Field(max_length=32)] | None = None
    """Engine of the backup."""

    source_database: Annotated[str, Field(max_length=4096)] | None = None
    """The database the backup was taken from (never touched by the drill)."""

    backup_uri: Annotated[str, Field(max_length=4096)] | None = None
    """Location of the backup (its directory)."""

    backup_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """SHA-256 of the stored dump that was restored."""

    backup_taken_at: Timestamp | None = None
    """When the backup's snapshot was taken (its start): ${BACKUP_TIME} in checks."""

    backup_completed_at: Timestamp | None = None
    """When the backup completed."""

    report_uri: Annotated[str, Field(max_length=4096)] | None = None
    """Where this report is stored next to the backup."""

    requested_by: Annotated[str, Field(max_length=1024)] | None = None
    """Who asked for the drill, for example RestoreDrill shop/nightly-20261203-0200-drill of
    BackupSchedule nightly."""

    notes: list[Annotated[str, Field(max_length=1024)]] | None = None
    """Anything else worth knowing (owners mapped, leftovers that could not be dropped)."""


class RestoreDrillStatus(OperationStatus):
    """Observed state of a RestoreDrill, written by the operator and its Job."""

    resolved_backup: Annotated[str, Field(max_length=253)] | None = None
    """The Backup drilled: spec.backupRef's, or the one spec.scheduleRef resolved to. Never
    changes once set."""

    engine: Engine | None = None
    """Engine of the Backup drilled."""

    database: Annotated[str, Field(max_length=4096)] | None = None
    """The throwaway database the drill creates and drops (<database>__lifeboat_drill_<id>)."""

    server: Annotated[str, Field(max_length=512)] | None = None
    """host:port of the server the drill runs on (unset for sqlite)."""

    source_database: Annotated[str, Field(max_length=4096)] | None = None
    """The Backup's database as metrics name it (host:port/name, or claim/path for sqlite).
    Never touched by the drill."""

    backup_completion_time: Timestamp | None = None
    """When the Backup drilled completed: what a passing drill proves restorable (the
    lifeboat_backup_last_verified_timestamp_seconds metric)."""

    report: DrillReport | None = None
    """The evidence, written by the worker when the drill ends: restore duration, tables and
    rows verified, every check, whether the throwaway database was dropped, where the report is
    stored."""


class DrillRecord(StatusModel):
    """One drill of a Backup, as the operator recorded it on the Backup when the drill ended."""

    name: Annotated[str, Field(max_length=253)]
    """Name of the RestoreDrill, in this Backup's namespace."""

    uid: Annotated[str, Field(max_length=128)]
    """metadata.uid of that RestoreDrill."""

    time: Timestamp
    """When the drill ended."""

    result: Phase
    """Completed (the backup is proven restorable) or Failed."""

    reason: Annotated[str, Field(max_length=1024)]
    """The drill's status.reason: DrillPassed, or why it failed."""

    restore_seconds: Annotated[float, Field(ge=0)] | None = None
    """How long the restore took (recovery-time evidence)."""

    tables_verified: Annotated[int, Field(ge=0)] | None = None
    """Tables whose row counts matched the manifest."""

    rows_verified: Annotated[int, Field(ge=0)] | None = None
    """Rows counted in the throwaway database."""

    checks_passed: Annotated[int, Field(ge=0)] | None = None
    """Checks that returned their expected value."""

    failed_check: Annotated[str, Field(max_length=63)] | None = None
    """The first check that failed."""

    report_uri: Annotated[str, Field(max_length=4096)] | None = None
    """The drill's report, stored next to the backup."""


class RestoreDrill(ApiModel):
    """Proves that a Backup restores: restores it into a throwaway database (on the Backup's
    server under a reserved name, or on a separate drill server), checks its SHA-256 and row
    counts as a restore does, runs the checks, measures how long the restore took, and drops
    the throwaway database again, always. The Backup records the result (status.drills) and a
    JSON report is stored next to the backup. A drill never touches the source database. To
    drill again, create a new RestoreDrill (a BackupSchedule's spec.drill does it on a
    schedule)."""

    api_version: Literal["lifeboat.dev/v1alpha1"] = "lifeboat.dev/v1alpha1"
    """lifeboat.dev/v1alpha1."""

    kind: Literal["RestoreDrill"] = "RestoreDrill"
    """RestoreDrill."""

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""

    spec: RestoreDrillSpec
    """Which Backup to drill, where, and what to check."""

    status: RestoreDrillStatus = Field(default_factory=RestoreDrillStatus)
    """Observed state, written by the operator and its Job: phase and message for people,
    conditions for automation, progress while the Job runs, the report when it ends."""
