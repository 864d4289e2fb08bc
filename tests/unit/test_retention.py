"""Retention as a pure function: table-driven, and over generated histories of good and failed."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from lifeboat.controller.retention import (
    BackupRecord,
    Outcome,
    RetentionPolicy,
    decide_retention,
    parse_duration,
)

UTC_ZONE = ZoneInfo("UTC")
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def daily(days: int, *, failed: set[int] = frozenset(), hour: int = 2) -> list[BackupRecord]:
    """One backup a day at `hour`, going back `days` days; day 0 is the newest."""
    start = NOW.replace(hour=hour, minute=0)
    return [
        BackupRecord(
            f"b-{d:03d}",
            start - timedelta(days=d),
            Outcome.FAILED if d in failed else Outcome.SUCCEEDED,
        )
        for d in range(days)
    ]


def names(days: list[int]) -> set[str]:
    return {f"b-{d:03d}" for d in days}


@pytest.mark.parametrize(
    ("policy", "history", "kept"),
    [
        pytest.param(RetentionPolicy(), daily(5), names([0, 1, 2, 3, 4]), id="no-rule-keeps-all"),
        pytest.param(RetentionPolicy(keep_last=3), daily(10), names([0, 1, 2]), id="last-3"),
        pytest.param(
            RetentionPolicy(keep_last=3),
            daily(10, failed={1, 2}),
            names([0, 3, 4]),
            id="failures-never-count-toward-last",
        ),
        pytest.param(
            RetentionPolicy(keep_daily=7, keep_weekly=4),
            daily(40),
            # 7 newest days, then the newest backup of each of 4 ISO weeks (Thu 2026-12-03 is
            # in week 49: days 0-3 are in it, so week 48's newest is day 4 (Sun), week 47's is
            # day 11, week 46's is day 18).
            names([0, 1, 2, 3, 4, 5, 6, 11, 18]),
            id="gfs-daily-weekly",
        ),
        pytest.param(
            RetentionPolicy(keep_monthly=3),
            daily(100),
            # newest of December (day 0), November (day 3: Nov 30), October (day 33: Oct 31)
            names([0, 3, 33]),
            id="monthly",
        ),
        pytest.param(
            RetentionPolicy(keep_yearly=2),
            daily(400),
            names([0, 337]),  # 2026-12-03 and 2025-12-31
            id="yearly",
        ),
        pytest.param(
            RetentionPolicy(max_age=timedelta(days=3)),
            daily(10),
            names([0, 1, 2]),  # day 3 is 3 days 10 hours old
            id="max-age",
        ),
        pytest.param(
            RetentionPolicy(keep_daily=2),
            [
                BackupRecord("old", NOW - timedelta(days=30), Outcome.SUCCEEDED),
                BackupRecord("older", NOW - timedelta(days=31), Outcome.SUCCEEDED),
                BackupRecord("oldest", NOW - timedelta(days=60), Outcome.SUCCEEDED),
            ],
            {"old", "older"},
            id="periods-without-backups-do-not-count",
        ),
        pytest.param(
            RetentionPolicy(max_age=timedelta(hours=1)),
            daily(5),
            names([0]),
            id="newest-success-is-never-pruned",
        ),
        pytest.param(
            RetentionPolicy(keep_hourly=2),
            [
                BackupRecord("h1a", NOW.replace(hour=11, minute=5), Outcome.SUCCEEDED),
                BackupRecord("h1b", NOW.replace(hour=11, minute=45), Outcome.SUCCEEDED),
                BackupRecord("h2", NOW.replace(hour=10, minute=30), Outcome.SUCCEEDED),
                BackupRecord("h3", NOW.replace(hour=9, minute=30), Outcome.SUCCEEDED),
            ],
            {"h1b", "h2"},
            id="hourly-keeps-the-newest-of-each-hour",
        ),
    ],
)
def test_retention_keeps_what_the_policy_says(
    policy: RetentionPolicy, history: list[BackupRecord], kept: set[str]
) -> None:
    decision = decide_retention(history, policy, now=NOW, zone=UTC_ZONE)
    assert set(decision.kept) == kept
    good = {b.name for b in history if b.outcome is Outcome.SUCCEEDED}
    assert set(decision.pruned) & good == good - kept


def test_rules_that_keep_a_backup_are_all_recorded() -> None:
    decision = decide_retention(
        daily(10), RetentionPolicy(keep_last=1, keep_daily=2), now=NOW, zone=UTC_ZONE
    )
    assert decision.kept["b-000"] == ["last", "daily", "newest"]
    assert decision.kept["b-001"] == ["daily"]


def test_failed_backups_are_pruned_by_their_own_limit_newest_kept() -> None:
    history = daily(10, failed={0, 2, 4, 6, 8})
    decision = decide_retention(
        history, RetentionPolicy(keep_last=2, failed_history_limit=3), now=NOW, zone=UTC_ZONE
    )
    assert set(decision.kept) == names([1, 3])
    assert names([6, 8]) <= set(decision.pruned)
    assert not names([0, 2, 4]) & set(decision.pruned)


def test_active_backups_are_never_pruned() -> None:
    history = [*daily(5), BackupRecord("running", NOW, Outcome.ACTIVE)]
    decision = decide_retention(history, RetentionPolicy(keep_last=1), now=NOW, zone=UTC_ZONE)
    assert "running" not in decision.pruned
    assert "running" not in decision.kept


def test_days_are_the_schedule_time_zone_days() -> None:
    # 23:30 UTC on Dec 2 is 00:30 on Dec 3 in Berlin: the same Berlin day as 02:00 on Dec 3.
    history = [
        BackupRecord("late", datetime(2026, 12, 2, 23, 30, tzinfo=UTC), Outcome.SUCCEEDED),
        BackupRecord("early", datetime(2026, 12, 3, 1, 0, tzinfo=UTC), Outcome.SUCCEEDED),
    ]
    policy = RetentionPolicy(keep_daily=5)
    assert set(decide_retention(history, policy, now=NOW, zone=UTC_ZONE).kept) == {"late", "early"}
    berlin = decide_retention(history, policy, now=NOW, zone=ZoneInfo("Europe/Berlin"))
    assert set(berlin.kept) == {"early"}


def test_backups_an_unfinished_restore_reads_are_never_pruned() -> None:
    history = daily(6, failed={5})
    decision = decide_retention(
        history,
        RetentionPolicy(keep_last=1, failed_history_limit=0),
        now=NOW,
        zone=UTC_ZONE,
        protected={"b-003", "b-005"},
    )
    assert decision.kept == {"b-000": ["last", "newest"], "b-003": ["restore"]}
    assert set(decision.pruned) == names([1, 2, 4])


@pytest.mark.parametrize("seed", range(20))
def test_generated_histories_keep_their_invariants(seed: int) -> None:
    rng = random.Random(seed)
    history = [
        BackupRecord(
            f"b{i}",
            NOW - timedelta(hours=rng.randint(0, 24 * 400)),
            rng.choice([Outcome.SUCCEEDED] * 4 + [Outcome.FAILED, Outcome.ACTIVE]),
        )
        for i in range(rng.randint(0, 120))
    ]
    policy = RetentionPolicy(
        keep_last=rng.choice([None, 1, 3]),
        keep_daily=rng.choice([None, 7]),
        keep_weekly=rng.choice([None, 4]),
        keep_monthly=rng.choice([None, 6]),
        max_age=rng.choice([None, timedelta(days=10)]),
        failed_history_limit=rng.choice([0, 3]),
    )
    decision = decide_retention(history, policy, now=NOW, zone=UTC_ZONE)
    by_name = {b.name: b for b in history}
    good = [b for b in history if b.outcome is Outcome.SUCCEEDED]
    assert not set(decision.kept) & set(decision.pruned), f"seed {seed}"
    assert all(by_name[n].outcome is not Outcome.ACTIVE for n in decision.pruned), f"seed {seed}"
    if good:
        newest = max(good, key=lambda b: b.time)
        assert newest.name in decision.kept, f"seed {seed}"
    if policy.keep_last:
        newest_n = sorted(good, key=lambda b: b.time, reverse=True)[: policy.keep_last]
        assert {b.name for b in newest_n} <= set(decision.kept), f"seed {seed}"
    failed_pruned = [n for n in decision.pruned if by_name[n].outcome is Outcome.FAILED]
    failed = [b for b in history if b.outcome is Outcome.FAILED]
    assert len(failed) - len(failed_pruned) == min(len(failed), policy.failed_history_limit)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("720h", 720 * 3600), ("30d", 30 * 86400), ("1h30m", 5400), ("2w", 14 * 86400), ("90s", 90)],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text", ["", "720", "h", "1.5h", "-1h", "0h", "1y", "30 d", "9999999999999999999999999999w"]
)
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)
