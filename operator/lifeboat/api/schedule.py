"""`BackupSchedule`: exactly one Backup per cron slot, and a bounded history of them.

The schedule is the long-lived object users keep in Git; the Backups it creates are records
named after their slot (`nightly-20261203-0200`), so a restart, a second operator or a replayed
event finds the Backup already there instead of creating a second one. Retention prunes the
Backups that fall out of the policy; each pruned Backup's own deletionPolicy decides whether its
files go too.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from lifeboat.api.backup import BackupTemplate
from lifeboat.api.common import (
    ApiModel,
    CelRule,
    ObjectMeta,
    SpecModel,
    StatusModel,
    Timestamp,
    cel,
    invalid,
)
from lifeboat.api.drill import DrillOptions
from lifeboat.api.status import Condition

SCHEDULE_KIND: Final = "BackupSchedule"
SCHEDULE_PLURAL: Final = "backupschedules"

CRON_PATTERN: Final = (
    r"^\s*(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|[^\s@]+(\s+[^\s@]+){4})\s*$"
)
"""Five cron fields or a macro; the operator checks the fields' values with croniter."""
TIME_ZONE_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
DURATION_PATTERN: Final = r"^([0-9]+(w|d|h|m|s))+$"

RETENTION_RULES: Final = (
    CelRule(
        rule="!has(self.maxAge) || self.maxAge.matches('[1-9]')",
        message="maxAge must be longer than zero, for example 720h",
    ),
)


class ConcurrencyPolicy(StrEnum):
    """What a slot does while an earlier Backup of the schedule still runs."""

    FORBID = "Forbid"
    ALLOW = "Allow"
    REPLACE = "Replace"


class Retention(SpecModel):
    """Which Backups of this schedule to keep (restic's rules). Unset: keep every one.

    A Backup is kept if any rule keeps it. Only Completed Backups count; the newest Completed
    Backup is never pruned; running Backups are never pruned; failed Backups are pruned by
    failedBackupsHistoryLimit. A pruned Backup is deleted, and its own deletionPolicy decides
    whether its files in storage go too (Retain keeps them)."""

    model_config = ConfigDict(json_schema_extra=cel(*RETENTION_RULES))

    keep_last: Annotated[int, Field(ge=1, le=10000)] | None = None
    """Keep the newest N Completed Backups."""

    keep_hourly: Annotated[int, Field(ge=1, le=10000)] | None = None
    """For the newest N hours that have a Completed Backup, keep the newest Backup of each."""

    keep_daily: Annotated[int, Field(ge=1, le=10000)] | None = None
    """For the newest N days (in spec.timeZone) that have a Completed Backup, keep the newest
    Backup of each."""

    keep_weekly: Annotated[int, Field(ge=1, le=10000)] | None = None
    """For the newest N ISO weeks that have a Completed Backup, keep the newest of each."""

    keep_monthly: Annotated[int, Field(ge=1, le=10000)] | None = None
    """For the newest N months that have a Completed Backup, keep the newest of each."""

    keep_yearly: Annotated[int, Field(ge=1, le=1000)] | None = None
    """For the newest N years that have a Completed Backup, keep the newest of each."""

    max_age: Annotated[str, Field(max_length=32, pattern=DURATION_PATTERN)] | None = None
    """Keep every Completed Backup younger than this: a number and a unit (w, d, h, m, s),
    for example 720h or 30d or 1h30m."""

    @field_validator("max_age")
    @classmethod
    def _positive(cls, value: str | None) -> str | None:
        if value is not None and not any(ch in "123456789" for ch in value):
            raise invalid("duration", RETENTION_RULES[0].message)
        return value


SCHEDULE_DRILL_RULES: Final = (
    CelRule(
        rule="has(self.every) != has(self.schedule)",
        message=(
            "set exactly one of every (drill every Nth Completed Backup) or schedule (a cron "
            "expression of the drills' own)"
        ),
    ),
)


class ScheduleDrill(DrillOptions):
    """Restore drills of this schedule's Backups: each drill restores the schedule's newest
    Completed Backup into a throwaway database, checks it and drops it (a RestoreDrill named
    after the Backup, or after the drill slot). Exactly one drill per Backup (every) or per
    drill slot (schedule), also across operator restarts. No drills while the schedule is
    suspended."""

    model_config = ConfigDict(json_schema_extra=cel(*SCHEDULE_DRILL_RULES))

    every: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Drill every Nth Completed Backup of this schedule: with 2, the 2nd, 4th, 6th... (each
    Completed Backup is numbered in its lifeboat.dev/sequence annotation). When several come at
    once (the operator was down), only the newest is drilled. Keep retention keeping at least
    this many Backups."""

    schedule: Annotated[str, Field(min_length=1, max_length=256, pattern=CRON_PATTERN)] | None = (
        None
    )
    """A cron expression of the drills' own, read in spec.timeZone, for example '0 4 * * 0'
    (Sundays at 04:00): each drill slot drills the newest Completed Backup, once. A slot with no
    Completed Backup is skipped."""

    @model_validator(mode="after")
    def _one_mode(self) -> Self:
        if (self.every is None) == (self.schedule is None):
            raise invalid("drill_mode", SCHEDULE_DRILL_RULES[0].message)
        return self


class BackupScheduleSpec(SpecModel):
    """When to back up, what, and how many Backups to keep."""

    schedule: Annotated[
        str,
        Field(min_length=1, max_length=256, pattern=CRON_PATTERN),
    ]
    """Standard cron: five fields (minute hour day-of-month month day-of-week), for example
    '0 2 * * *' for every day at 02:00, or a macro: @hourly, @daily, @weekly, @monthly,
    @yearly. Read in spec.timeZone."""

    time_zone: Annotated[str, Field(min_length=1, max_length=64, pattern=TIME_ZONE_PATTERN)] = "UTC"
    """IANA time zone the schedule is read in, for example Europe/Berlin: 02:00 stays 02:00
    local time across daylight saving changes (a 02:30 that does not exist that day runs at
    03:00; a 02:30 that happens twice runs once). Default: UTC."""

    template: BackupTemplate
    """The spec of every Backup this schedule creates (database, storage, compression,
    deletionPolicy, job). Changing it affects future slots only."""

    suspend: bool = False
    """true: create no Backups for slots until set back to false. Slots that come while
    suspended are skipped (status.lastSkippedTime): resuming never fires one, the first Backup
    after resuming is the next slot's. Retention still applies, and the lifeboat.dev/trigger
    annotation still backs up on request."""

    concurrency_policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID
    """What a slot does while a Backup of this schedule is still Pending or Running. Forbid
    (default): the slot is skipped for good (status.lastSkippedTime, and an Event SlotSkipped
    naming the running Backup). Allow: start anyway. Replace: delete the running Backup (its
    deletionPolicy applies) and start the new one."""

    starting_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """A slot missed by more than this many seconds (the operator was down) is skipped. Unset:
    the most recent missed slot runs late. Never more than one missed slot is caught up."""

    retention: Retention | None = None
    """Which Completed Backups to keep. Unset: keep all of them."""

    failed_backups_history_limit: Annotated[int, Field(ge=0, le=1000)] = 3
    """How many Failed Backups to keep for their reasons; older failed ones are deleted.
    Default: 3."""

    drill: ScheduleDrill | None = None
    """Prove the backups restorable: restore drills of the newest Completed Backups, every Nth
    Backup or on a cron schedule of their own (docs/drills.md). status.lastVerifiedTime and the
    Verified condition report them."""


class KeptBackup(StatusModel):
    """A Backup kept by the retention policy, and why."""

    name: Annotated[str, Field(max_length=253)]
    """Name of the Backup."""

    time: Timestamp | None = None
    """When its slot was (or when it was created, for a manual one)."""

    rules: list[Annotated[str, Field(max_length=32)]]
    """The rules that keep it: last, hourly, daily, weekly, monthly, yearly, maxAge, newest
    (the newest Completed Backup is always kept), all (no policy), restore (an unfinished
    Restore reads it)."""


KEPT_LIST_LIMIT: Final = 100


class BackupScheduleStatus(StatusModel):
    """Observed state of a BackupSchedule, written by the operator."""

    last_schedule_time: Timestamp | None = None
    """The most recent slot a Backup was created for."""

    next_schedule_time: Timestamp | None = None
    """The next slot (none while suspended or Stalled)."""

    last_skipped_time: Timestamp | None = None
    """The most recent slot that was skipped instead of creating a Backup."""

    last_skipped_reason: Annotated[str, Field(max_length=64)] | None = None
    """Why that slot was skipped: Suspended, BackupStillRunning (concurrencyPolicy Forbid) or
    MissedStartingDeadline (the operator saw the slot more than startingDeadlineSeconds
    late)."""

    last_skipped_message: Annotated[str, Field(max_length=1024)] | None = None
    """The skipped slot in words, for example the Backup that was still running."""

    last_successful_time: Timestamp | None = None
    """When the most recent Completed Backup of this schedule completed."""

    last_backup: Annotated[str, Field(max_length=253)] | None = None
    """Name of the most recent Backup created."""

    last_successful_backup: Annotated[str, Field(max_length=253)] | None = None
    """Name of the most recent Completed Backup: what a Restore with scheduleRef restores."""

    active: list[Annotated[str, Field(max_length=253)]] | None = None
    """Backups of this schedule still Pending or Running."""

    kept: list[KeptBackup] | None = None
    """Completed Backups kept by the retention policy, newest first, with the rules that keep
    each (the first 100)."""

    last_trigger: Annotated[str, Field(max_length=256)] | None = None
    """The last value of the lifeboat.dev/trigger annotation that created a Backup (each value
    creates one Backup, once)."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """metadata.generation the operator last acted on."""

    kept_count: Annotated[int, Field(ge=0)] | None = None
    """How many Completed Backups retention keeps (all of them, also past the first 100)."""

    last_drill: Annotated[str, Field(max_length=253)] | None = None
    """Name of the most recent RestoreDrill this schedule created (spec.drill)."""

    last_drill_schedule_time: Timestamp | None = None
    """spec.drill.schedule: the most recent drill slot handled (a drill created, or skipped)."""

    next_drill_time: Timestamp | None = None
    """spec.drill.schedule: the next drill slot (none while suspended)."""

    last_drill_skipped_reason: Annotated[str, Field(max_length=64)] | None = None
    """Why the most recent drill slot made no drill: NoCompletedBackup."""

    last_verified_backup: Annotated[str, Field(max_length=253)] | None = None
    """The newest Backup of this schedule that a restore drill proved restorable."""

    last_verified_time: Timestamp | None = None
    """When that Backup completed: the newest point in time this schedule can certainly be
    restored to (not when its drill ran). Alert when it gets old (LifeboatBackupUnverified)."""

    conditions: (
        Annotated[
            list[Condition],
            Field(
                json_schema_extra={
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                }
            ),
        ]
        | None
    ) = None
    """Ready: the schedule is valid and active (False while suspended, reason Suspended).
    Stalled: it cannot run (InvalidSchedule: the cron expression or time zone; InvalidSpec:
    another field) until the spec is fixed; the message names the field. Verified (with
    spec.drill, or once a Backup of the schedule was drilled): True (DrillPassed) when the
    newest restore drill of its Backups passed, False (DrillFailed) when it failed, Unknown
    (NoDrillYet) before the first one ended."""


class BackupSchedule(ApiModel):
    """Creates one Backup per cron slot from a template, exactly once per slot (Backups are
    named after their slot: nightly-20261203-0200), and prunes old Backups by a retention
    policy. kubectl get backupschedules shows the schedule, the last success and the next slot;
    annotate it with lifeboat.dev/trigger=<any new value> to back up now."""

    api_version: Literal["lifeboat.dev/v1alpha1"] = "lifeboat.dev/v1alpha1"
    """lifeboat.dev/v1alpha1."""

    kind: Literal["BackupSchedule"] = "BackupSchedule"
    """BackupSchedule."""

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""

    spec: BackupScheduleSpec
    """When to back up, what, and how many Backups to keep."""

    status: BackupScheduleStatus = Field(default_factory=BackupScheduleStatus)
    """Observed state, written by the operator."""
