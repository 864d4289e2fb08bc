"""A BackupSchedule's restore drills, decided by pure functions: which Completed Backup a drill is
due for, how Completed Backups are numbered, and what the schedule's Verified condition says.
`schedule_drills.py` reads the world, asks these, and acts; tests table-drive them.

- `spec.drill.every: N`: each Completed Backup of the schedule gets a number (its
  `lifeboat.dev/sequence` annotation, after the highest number given so far, so pruning old
  Backups never renumbers anything); a Backup whose number is a multiple of N is due, once (its
  drill is named after it). Only the newest due Backup newer than the last one drilled is ever
  drilled: after downtime, one drill, never a burst.
- `spec.drill.schedule`: a cron of its own; each drill slot drills the newest Completed Backup
  (the drill is named after the slot). Slots are checked like the schedule's own (`slots.py`).
- Verified: from the drills the schedule's Backups record (status.drills, one-off drills
  included): the newest one that ended says True (DrillPassed) or False (DrillFailed);
  `lastVerifiedTime` is when the newest Backup a drill passed on completed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from lifeboat.api import ConditionStatus, Phase
from lifeboat.builders.backups import SLOT_ANNOTATION
from lifeboat.builders.drills import BACKUP_ANNOTATION, SEQUENCE_ANNOTATION, backup_drill_name
from lifeboat.contract import DRILL_PASSED, Object
from lifeboat.controller.schedule_decisions import parse_time

DRILL_FAILED: Final = "DrillFailed"
NO_DRILL_YET: Final = "NoDrillYet"
NO_COMPLETED_BACKUP: Final = "NoCompletedBackup"


@dataclass(frozen=True)
class DrillableBackup:
    """A Backup of the schedule, as its drills need it."""

    name: str
    uid: str
    time: datetime
    """Its slot (lifeboat.dev/slot), else its creation."""
    phase: str | None
    completion_time: str | None
    owned: bool
    deleting: bool
    sequence: int | None
    """Its number among the schedule's Completed Backups (lifeboat.dev/sequence)."""
    drills: tuple[Object, ...] = ()
    """Its status.drills records."""

    @property
    def completed(self) -> bool:
        return self.phase == Phase.COMPLETED.value and not self.deleting


def _sequence(annotations: dict[str, str]) -> int | None:
    text = annotations.get(SEQUENCE_ANNOTATION, "")
    return int(text) if text.isdigit() and int(text) > 0 else None


def view_drillable(obj: Object, schedule_uid: str) -> DrillableBackup:
    meta = obj["metadata"]
    annotations = meta.get("annotations") or {}
    status = obj.get("status") or {}
    when = parse_time(annotations.get(SLOT_ANNOTATION)) or parse_time(meta["creationTimestamp"])
    assert when is not None
    return DrillableBackup(
        name=meta["name"],
        uid=meta["uid"],
        time=when,
        phase=status.get("phase"),
        completion_time=status.get("completionTime"),
        owned=any(ref.get("uid") == schedule_uid for ref in meta.get("ownerReferences") or []),
        deleting=bool(meta.get("deletionTimestamp")),
        sequence=_sequence(annotations),
        drills=tuple(status.get("drills") or ()),
    )


def _order(backup: DrillableBackup) -> tuple[datetime, str]:
    return backup.time, backup.completion_time or ""


def sequence_numbers(backups: Iterable[DrillableBackup]) -> dict[str, int]:
    """Numbers for the schedule's Completed Backups that have none yet: after the highest
    number given so far, in slot order."""
    done = [b for b in backups if b.owned and b.completed]
    highest = max((b.sequence for b in done if b.sequence is not None), default=0)
    new = sorted((b for b in done if b.sequence is None), key=_order)
    return {b.name: highest + i for i, b in enumerate(new, start=1)}


def drilled_backups(backups: Iterable[DrillableBackup], drills: Iterable[Object]) -> set[str]:
    """The Backups the schedule has drilled: named by its RestoreDrills (lifeboat.dev/backup),
    or recording the drill named after them (a drill deleted since)."""
    names = {
        str((d["metadata"].get("annotations") or {}).get(BACKUP_ANNOTATION, "")) for d in drills
    }
    for backup in backups:
        if any(r.get("name") == backup_drill_name(backup.name) for r in backup.drills):
            names.add(backup.name)
    return names - {""}


def due_every(
    backups: Sequence[DrillableBackup], every: int, drilled: set[str]
) -> DrillableBackup | None:
    """spec.drill.every: the newest Completed Backup whose number is a multiple of `every`,
    newer than every Backup drilled so far and not drilled itself; None when none is due.
    `backups` carry their numbers (`sequence_numbers` applied)."""
    numbered = [b for b in backups if b.owned and b.completed and b.sequence is not None]
    done = [b for b in numbered if b.name in drilled]
    last = max((b.sequence or 0 for b in done), default=0)
    due = [
        b
        for b in numbered
        if (b.sequence or 0) % every == 0 and (b.sequence or 0) > last and b.name not in drilled
    ]
    return max(due, key=lambda b: b.sequence or 0, default=None)


def newest_completed_backup(backups: Iterable[DrillableBackup]) -> DrillableBackup | None:
    """spec.drill.schedule: what a drill slot drills."""
    done = [b for b in backups if b.owned and b.completed]
    return max(done, key=_order, default=None)


@dataclass(frozen=True)
class Verification:
    """What the schedule's status says about its drills."""

    last_verified_backup: str | None = None
    last_verified_time: str | None = None
    condition: tuple[ConditionStatus, str, str] | None = None
    """Verified: (status, reason, message); None to leave it as it is."""


def _seconds(record: Object) -> str:
    seconds = record.get("restoreSeconds")
    return f"restored in {float(seconds):.1f}s" if seconds is not None else "restored"


def verification(backups: Iterable[DrillableBackup], *, configured: bool) -> Verification:
    """From the drills the Backups record: the newest Backup proven restorable, and Verified
    from the newest drill that ended (Unknown before the first, when drills are configured)."""
    live = [b for b in backups if not b.deleting]
    records = [(b, r) for b in live for r in b.drills]
    passed = [(b, r) for b, r in records if r.get("result") == Phase.COMPLETED.value]
    verified = max(passed, key=lambda item: _order(item[0]), default=None)
    latest = max(records, key=lambda item: str(item[1].get("time", "")), default=None)
    condition: tuple[ConditionStatus, str, str] | None = None
    if latest is not None:
        backup, record = latest
        when = record.get("time", "")
        if record.get("result") == Phase.COMPLETED.value:
            rows = record.get("rowsVerified")
            condition = (
                ConditionStatus.TRUE,
                DRILL_PASSED,
                f"RestoreDrill {record.get('name')} of Backup {backup.name} passed at {when}: "
                f"{_seconds(record)}" + (f", {rows} rows verified" if rows is not None else ""),
            )
        else:
            check = record.get("failedCheck")
            condition = (
                ConditionStatus.FALSE,
                DRILL_FAILED,
                f"RestoreDrill {record.get('name')} of Backup {backup.name} failed at {when}: "
                f"{record.get('reason')}"
                + (f" (check {check})" if check else "")
                + f"; kubectl describe restoredrill {record.get('name')}",
            )
    elif configured:
        condition = (
            ConditionStatus.UNKNOWN,
            NO_DRILL_YET,
            "no restore drill of this schedule's Backups has ended yet",
        )
    if verified is None:
        return Verification(condition=condition)
    backup, _ = verified
    return Verification(backup.name, backup.completion_time, condition)
