"""Which of a schedule's Backups to keep: a pure function of the Backups, the policy and "now".

The semantics are restic's `forget` (the ones backup users already know):

- `keepLast: n` keeps the n newest successful backups.
- `keepHourly/Daily/Weekly/Monthly/Yearly: n` keep, for each of the n newest periods that *have*
  a successful backup, the newest backup of that period (periods in the schedule's time zone;
  weeks are ISO weeks). Periods without a backup do not count, so a long outage never empties
  the history.
- `maxAge` keeps every successful backup younger than it.
- A backup may be kept by several rules; each is recorded.

And what retention never does:

- it never prunes the newest successful backup, whatever the policy says;
- failed backups never count toward any rule and never cause a good one to be pruned; they are
  pruned by their own limit (`failedBackupsHistoryLimit`, newest kept);
- backups still pending or running are never pruned;
- a backup an unfinished Restore reads (`protected`) is never pruned: it is kept with the rule
  `restore` until that Restore has finished;
- with no rule at all, every successful backup is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo


class Outcome(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    ACTIVE = "Active"
    """Pending or running: neither kept nor pruned by policy."""


@dataclass(frozen=True)
class BackupRecord:
    name: str
    time: datetime
    """When the backup was taken (its slot, else its creation): what periods are read from."""
    outcome: Outcome


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    max_age: timedelta | None = None
    failed_history_limit: int = 3

    @property
    def has_rules(self) -> bool:
        return any(
            value is not None
            for value in (
                self.keep_last,
                self.keep_hourly,
                self.keep_daily,
                self.keep_weekly,
                self.keep_monthly,
                self.keep_yearly,
                self.max_age,
            )
        )


@dataclass
class RetentionDecision:
    kept: dict[str, list[str]] = field(default_factory=dict)
    """Successful backups kept, with the rules that keep each (e.g. ['daily', 'last'])."""
    pruned: list[str] = field(default_factory=list)
    """Backups to delete, newest first."""


Period = Callable[[datetime], tuple[int, ...]]

_PERIODS: tuple[tuple[str, str, Period], ...] = (
    ("hourly", "keep_hourly", lambda t: (t.year, t.month, t.day, t.hour)),
    ("daily", "keep_daily", lambda t: (t.year, t.month, t.day)),
    ("weekly", "keep_weekly", lambda t: tuple(t.isocalendar()[:2])),
    ("monthly", "keep_monthly", lambda t: (t.year, t.month)),
    ("yearly", "keep_yearly", lambda t: (t.year,)),
)


def decide_retention(
    backups: Sequence[BackupRecord],
    policy: RetentionPolicy,
    *,
    now: datetime,
    zone: ZoneInfo,
    protected: Collection[str] = (),
) -> RetentionDecision:
    """`protected`: names of backups an unfinished Restore reads; never pruned."""
    decision = RetentionDecision()
    good = sorted(
        (b for b in backups if b.outcome is Outcome.SUCCEEDED), key=lambda b: b.time, reverse=True
    )
    failed = sorted(
        (b for b in backups if b.outcome is Outcome.FAILED), key=lambda b: b.time, reverse=True
    )

    def keep(backup: BackupRecord, rule: str) -> None:
        rules = decision.kept.setdefault(backup.name, [])
        if rule not in rules:
            rules.append(rule)

    if not policy.has_rules:
        for backup in good:
            keep(backup, "all")
    else:
        if policy.keep_last:
            for backup in good[: policy.keep_last]:
                keep(backup, "last")
        for rule, attribute, period_of in _PERIODS:
            wanted = getattr(policy, attribute)
            if not wanted:
                continue
            seen: set[tuple[int, ...]] = set()
            for backup in good:  # newest first: the first of each period is its newest
                period = period_of(backup.time.astimezone(zone))
                if period in seen:
                    continue
                seen.add(period)
                keep(backup, rule)
                if len(seen) == wanted:
                    break
        if policy.max_age is not None:
            for backup in good:
                if now - backup.time <= policy.max_age:
                    keep(backup, "maxAge")
        if good:
            keep(good[0], "newest")
    for backup in good:
        if backup.name in protected and backup.name not in decision.kept:
            keep(backup, "restore")
    decision.pruned = [b.name for b in good if b.name not in decision.kept]
    decision.pruned += [
        b.name for b in failed[policy.failed_history_limit :] if b.name not in protected
    ]
    return decision


_DURATION_PART = r"(\d+)(h|m|s|d|w)"
MAX_DURATION_SECONDS = 1000 * 365 * 86400
"""Longer durations overflow Python's timedelta (and mean "for ever" anyway)."""


def parse_duration(text: str) -> timedelta:
    """A duration such as 720h, 30d, 1h30m, 2w (Go-style units, plus d and w). ValueError if not."""
    if not re.fullmatch(rf"({_DURATION_PART})+", text):
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit, for example 720h, 30d, 2w "
            "or 1h30m"
        )
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    seconds = sum(int(n) * units[u] for n, u in re.findall(_DURATION_PART, text))
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"{text!r} is too long a duration: at most 1000 years (8760000h)")
    return timedelta(seconds=seconds)
