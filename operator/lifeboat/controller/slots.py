"""When a BackupSchedule fires: pure functions of the cron expression, the time zone and "now".

A slot is a moment the cron expression names, in the schedule's time zone. The rules, which
the schedule controller only applies:

- "Now" is the operator's clock, passed in: nothing here reads a clock.
- Only the most recent slot that has come is ever considered: after any downtime (the operator
  stopped) at most one missed slot is caught up, never a burst.
- A slot fires only if the operator planned it: it is at or after the next slot the operator
  last computed (`status.nextScheduleTime`). Nothing is planned for a schedule seen for the first
  time, resumed, or fixed after it was invalid, so no slot of the past fires then; and a changed
  cron expression plans anew from now (edits affect future slots only).
- A slot already handled (a Backup created for it, or skipped) never fires again, nor does a
  later instant with the same wall-clock name.
- A slot missed by more than `startingDeadlineSeconds` is skipped.
- While the schedule is suspended, every slot that comes is skipped (and recorded as such).
- A slot is named by its wall-clock time in the schedule's time zone (`nightly-20261203-0200`),
  so the hour that repeats when DST ends gives both of its instants the same name, and the
  second one finds the Backup already there: one backup per wall-clock slot.

croniter computes the times (a maintained cron library: no parser of our own).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

MACROS: Final = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
MAX_NAME: Final = 253


class InvalidSchedule(ValueError):
    """The cron expression or the time zone is not usable; the message names the field."""


def parse_time_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"spec.timeZone: {name!r} is not an IANA time zone name; use for example UTC, "
            "Europe/Berlin or America/New_York"
        ) from None


def check_cron(expression: str) -> str:
    """The expression, normalised (single spaces); InvalidSchedule if it is not standard cron."""
    text = " ".join(expression.split())
    if not text:
        raise InvalidSchedule(
            "spec.schedule: empty; give a cron expression such as '0 2 * * *' or @daily"
        )
    if text.startswith("@"):
        if text not in MACROS:
            raise InvalidSchedule(
                f"spec.schedule: {expression!r} is not a cron macro; use @hourly, @daily, "
                "@weekly, @monthly or @yearly, or five fields"
            )
        return text
    fields = text.split(" ")
    if len(fields) != 5:
        raise InvalidSchedule(
            f"spec.schedule: {expression!r} has {len(fields)} fields; standard cron has five "
            "(minute hour day-of-month month day-of-week), for example '0 2 * * *'"
        )
    if not croniter.is_valid(text):
        raise InvalidSchedule(
            f"spec.schedule: {expression!r} is not a valid cron expression; for example "
            "'0 2 * * *' is every day at 02:00"
        )
    return text


@dataclass(frozen=True)
class Schedule:
    """A cron expression in a time zone."""

    expression: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, expression: str, time_zone: str = "UTC") -> Schedule:
        return cls(check_cron(expression), parse_time_zone(time_zone))

    def previous(self, now: datetime) -> datetime:
        """The most recent slot at or before `now` (an aware datetime in the schedule's zone)."""
        local = now.astimezone(self.zone)
        # croniter's get_prev is strictly before its start: start a second later to include now,
        # from whole seconds (01:59:59.5 + 1s must not reach the 02:00 slot).
        start = local.replace(microsecond=0) + timedelta(seconds=1)
        try:
            slot = _aware(croniter(self.expression, start).get_prev(datetime), self.zone)
            for _ in range(3):  # wall-clock arithmetic around a DST change: never in the future
                if slot <= now:
                    break
                slot = _aware(croniter(self.expression, slot).get_prev(datetime), self.zone)
        except (CroniterBadCronError, CroniterBadDateError) as exc:  # pragma: no cover - checked
            raise InvalidSchedule(f"spec.schedule: {exc}") from None
        return slot

    def next(self, now: datetime) -> datetime:
        """The first slot strictly after `now` that is a new wall-clock time.

        When DST ends an hour repeats: its second instant has the same wall-clock name as the
        slot already taken in the first, and is not a new slot."""
        current = slot_label(self.previous(now), self.zone)
        slot = now.astimezone(self.zone)
        while True:
            slot = _aware(croniter(self.expression, slot).get_next(datetime), self.zone)
            if slot_label(slot, self.zone) != current:
                return slot


def _aware(value: datetime, zone: ZoneInfo) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def slot_label(slot: datetime, zone: ZoneInfo) -> str:
    """The slot's wall-clock time in the schedule's zone: 20261203-0200."""
    return slot.astimezone(zone).strftime("%Y%m%d-%H%M")


def backup_name(schedule_name: str, slot: datetime, zone: ZoneInfo) -> str:
    """The one Backup name for a slot: `<schedule>-<yyyymmdd-hhmm>` in the schedule's zone."""
    return _bounded(schedule_name, slot_label(slot, zone))


def trigger_backup_name(schedule_name: str, trigger: str) -> str:
    """The one Backup name for a value of the `lifeboat.dev/trigger` annotation."""
    digest = hashlib.sha256(trigger.encode()).hexdigest()[:10]
    return _bounded(schedule_name, f"manual-{digest}")


def _bounded(head: str, suffix: str) -> str:
    room = MAX_NAME - len(suffix) - 1
    if len(head) > room:
        digest = hashlib.sha256(head.encode()).hexdigest()[:6]
        head = re.sub(r"[-.]+$", "", head[: room - 7]) + "-" + digest
    return f"{head}-{suffix}"


class SlotDecision(StrEnum):
    NOT_DUE = "NotDue"
    DUE = "Due"
    MISSED = "Missed"
    """The slot came more than startingDeadlineSeconds ago: skipped."""
    SUSPENDED = "Suspended"
    """The slot came while the schedule was suspended: skipped."""


@dataclass(frozen=True)
class SlotCheck:
    decision: SlotDecision
    slot: datetime | None
    """The slot decided about (the most recent one that has come); None when nothing is due."""
    next_slot: datetime
    """The first slot after now: what to plan (status.nextScheduleTime)."""


def check_slot(
    schedule: Schedule,
    *,
    now: datetime,
    planned: datetime | None,
    last_slot: datetime | None,
    starting_deadline_seconds: int | None,
    suspended_since: datetime | None = None,
) -> SlotCheck:
    """Is a slot due now? Only the most recent slot that has come is considered.

    `planned` is the next slot the operator last planned (None: nothing planned yet);
    `last_slot` the most recent slot already handled, created or skipped; `suspended_since`
    when the operator saw the schedule suspended (None: it is not suspended)."""
    next_slot = schedule.next(now)
    slot = schedule.previous(now)
    handled = last_slot is not None and (
        slot <= last_slot or slot_label(slot, schedule.zone) == slot_label(last_slot, schedule.zone)
    )
    came_as_planned = planned is not None and slot >= planned
    if suspended_since is not None:
        if not handled and (came_as_planned or slot >= suspended_since):
            return SlotCheck(SlotDecision.SUSPENDED, slot, next_slot)
        return SlotCheck(SlotDecision.NOT_DUE, None, next_slot)
    if handled or not came_as_planned:
        return SlotCheck(SlotDecision.NOT_DUE, None, next_slot)
    late = (now - slot).total_seconds()
    if starting_deadline_seconds is not None and late > starting_deadline_seconds:
        return SlotCheck(SlotDecision.MISSED, slot, next_slot)
    return SlotCheck(SlotDecision.DUE, slot, next_slot)
