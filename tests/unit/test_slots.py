"""Schedule slots as pure functions of the cron expression, the time zone and an explicit 'now'."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lifeboat.controller.slots import (
    InvalidSchedule,
    Schedule,
    SlotDecision,
    backup_name,
    check_slot,
    trigger_backup_name,
)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_a_slot_is_due_once_and_then_not_again() -> None:
    nightly = Schedule.parse("0 2 * * *")
    check = check_slot(
        nightly, now=at(2026, 12, 3, 2, 0, 5), planned=at(2026, 12, 3, 2, 0), last_slot=None,
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert check.decision is SlotDecision.DUE
    assert check.slot == at(2026, 12, 3, 2, 0)
    assert check.next_slot == at(2026, 12, 4, 2, 0)
    again = check_slot(
        nightly, now=at(2026, 12, 3, 2, 30), planned=check.next_slot, last_slot=check.slot,
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert again.decision is SlotDecision.NOT_DUE
    assert again.slot is None
    # Even where the plan still names the slot (it was not rewritten), a handled slot is done.
    replay = check_slot(
        nightly, now=at(2026, 12, 3, 2, 30), planned=at(2026, 12, 3, 2, 0), last_slot=check.slot,
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert replay.decision is SlotDecision.NOT_DUE


def test_a_slot_is_not_due_a_moment_early() -> None:
    nightly = Schedule.parse("0 2 * * *")
    early = at(2026, 12, 3, 1, 59, 59).replace(microsecond=500_000)
    assert nightly.previous(early) == at(2026, 12, 2, 2, 0)
    assert nightly.next(early) == at(2026, 12, 3, 2, 0)
    check = check_slot(
        nightly, now=early, planned=at(2026, 12, 3, 2, 0), last_slot=at(2026, 12, 2, 2, 0),
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert check.decision is SlotDecision.NOT_DUE
    assert check.next_slot == at(2026, 12, 3, 2, 0)


def test_after_downtime_only_the_most_recent_slot_is_caught_up() -> None:
    hourly = Schedule.parse("@hourly")
    # The operator was down from 00:30 to 09:20: nine slots passed, one is due.
    check = check_slot(
        hourly, now=at(2026, 12, 3, 9, 20), planned=at(2026, 12, 3, 1, 0),
        last_slot=at(2026, 12, 3, 0, 0), starting_deadline_seconds=None,
    )  # fmt: skip
    assert check.decision is SlotDecision.DUE
    assert check.slot == at(2026, 12, 3, 9, 0)
    after = check_slot(
        hourly, now=at(2026, 12, 3, 9, 21), planned=check.next_slot, last_slot=check.slot,
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert after.decision is SlotDecision.NOT_DUE


def test_a_slot_missed_by_more_than_the_starting_deadline_is_skipped() -> None:
    hourly = Schedule.parse("0 * * * *")
    planned = at(2026, 12, 3, 9, 0)
    check = check_slot(
        hourly, now=at(2026, 12, 3, 9, 20), planned=planned, last_slot=None,
        starting_deadline_seconds=600,
    )  # fmt: skip
    assert check.decision is SlotDecision.MISSED
    assert check.slot == planned
    in_time = check_slot(
        hourly, now=at(2026, 12, 3, 9, 5), planned=planned, last_slot=None,
        starting_deadline_seconds=600,
    )  # fmt: skip
    assert in_time.decision is SlotDecision.DUE


def test_nothing_of_the_past_fires_when_nothing_was_planned() -> None:
    """A schedule seen for the first time, resumed, or fixed: its first slot is the next one."""
    check = check_slot(
        Schedule.parse("0 2 * * *"), now=at(2026, 12, 3, 2, 0, 1), planned=None, last_slot=None,
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert check.decision is SlotDecision.NOT_DUE
    assert check.next_slot == at(2026, 12, 4, 2, 0)


def test_a_changed_expression_plans_from_now() -> None:
    """Planned for 02:00 by the old expression; edited to hourly at 10:30: the 10:00 slot of the
    new expression came before the edit and does not fire, 11:00 is the next."""
    hourly = Schedule.parse("0 * * * *")
    check = check_slot(
        hourly, now=at(2026, 12, 3, 10, 30), planned=at(2026, 12, 4, 2, 0),
        last_slot=at(2026, 12, 3, 2, 0), starting_deadline_seconds=None,
    )  # fmt: skip
    assert check.decision is SlotDecision.NOT_DUE
    assert check.next_slot == at(2026, 12, 3, 11, 0)


def test_slots_that_come_while_suspended_are_skipped_one_by_one() -> None:
    hourly = Schedule.parse("0 * * * *")
    since = at(2026, 12, 3, 9, 30)
    first = check_slot(
        hourly, now=at(2026, 12, 3, 10, 0, 2), planned=None, last_slot=at(2026, 12, 3, 9, 0),
        starting_deadline_seconds=None, suspended_since=since,
    )  # fmt: skip
    assert (first.decision, first.slot) == (SlotDecision.SUSPENDED, at(2026, 12, 3, 10, 0))
    again = check_slot(
        hourly, now=at(2026, 12, 3, 10, 20), planned=None, last_slot=first.slot,
        starting_deadline_seconds=None, suspended_since=since,
    )  # fmt: skip
    assert again.decision is SlotDecision.NOT_DUE
    # The slot planned before suspension, which came before the operator saw it suspended,
    # is skipped too: it never fires after resuming.
    gap = check_slot(
        hourly, now=at(2026, 12, 3, 10, 0, 30), planned=at(2026, 12, 3, 10, 0),
        last_slot=at(2026, 12, 3, 9, 0), starting_deadline_seconds=None,
        suspended_since=at(2026, 12, 3, 10, 0, 30),
    )  # fmt: skip
    assert gap.decision is SlotDecision.SUSPENDED
    # A slot from before the suspension that was never planned is not reported.
    before = check_slot(
        hourly, now=at(2026, 12, 3, 9, 45), planned=None, last_slot=at(2026, 12, 3, 8, 0),
        starting_deadline_seconds=None, suspended_since=since,
    )  # fmt: skip
    assert before.decision is SlotDecision.NOT_DUE


def test_0200_in_berlin_stays_0200_across_daylight_saving_time() -> None:
    berlin = Schedule.parse("0 2 * * *", "Europe/Berlin")
    winter = berlin.next(at(2026, 12, 3, 12, 0))
    summer = berlin.next(at(2026, 7, 3, 12, 0))
    assert winter == at(2026, 12, 4, 1, 0)  # 02:00 CET
    assert summer == at(2026, 7, 4, 0, 0)  # 02:00 CEST
    assert backup_name("nightly", winter, berlin.zone) == "nightly-20261204-0200"
    assert backup_name("nightly", summer, berlin.zone) == "nightly-20260704-0200"


def test_the_repeated_hour_when_dst_ends_makes_one_slot() -> None:
    berlin = Schedule.parse("30 2 * * *", "Europe/Berlin")
    first = at(2026, 10, 25, 0, 30)  # 02:30 CEST
    check = check_slot(
        berlin, now=first + timedelta(seconds=5), planned=first, last_slot=None,
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert check.decision is SlotDecision.DUE
    assert check.next_slot == at(2026, 10, 26, 1, 30)  # tomorrow 02:30 CET, not 02:30 CET today
    second_pass = at(2026, 10, 25, 1, 31)  # 02:31 CET: the same wall-clock 02:30 came again
    repeat = check_slot(
        berlin, now=second_pass, planned=first, last_slot=check.slot,
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert repeat.decision is SlotDecision.NOT_DUE
    assert berlin.previous(second_pass) <= second_pass


def test_the_skipped_hour_when_dst_starts_still_makes_one_slot() -> None:
    berlin = Schedule.parse("30 2 * * *", "Europe/Berlin")
    # 2026-03-29 02:30 does not exist in Berlin: the slot of that day comes at 03:00 CEST.
    slot = berlin.next(at(2026, 3, 28, 12, 0))
    assert slot.astimezone(UTC) == at(2026, 3, 29, 1, 0)
    assert berlin.next(slot) == at(2026, 3, 30, 0, 30)


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [
        ("", "UTC", "empty"),
        ("0 2 * *", "UTC", "has 4 fields"),
        ("* * * * * *", "UTC", "has 6 fields"),
        ("61 * * * *", "UTC", "not a valid cron expression"),
        ("0 25 * * *", "UTC", "not a valid cron expression"),
        ("@fortnightly", "UTC", "not a cron macro"),
        ("0 2 * * *", "Mars/Olympus", "not an IANA time zone"),
        ("0 2 * * *", "../etc/passwd", "not an IANA time zone"),
    ],
)
def test_bad_schedules_name_the_field(expression: str, zone: str, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message) as caught:
        Schedule.parse(expression, zone)
    assert str(caught.value).startswith(("spec.schedule: ", "spec.timeZone: "))


@pytest.mark.parametrize("macro", ["@hourly", "@daily", "@weekly", "@monthly", "@yearly"])
def test_macros_are_accepted(macro: str) -> None:
    assert Schedule.parse(macro).next(at(2026, 12, 3)) > at(2026, 12, 3)


def test_names_stay_valid_and_distinct_for_long_schedule_names() -> None:
    long = "a" * 250
    slot = at(2026, 12, 3, 2, 0)
    name = backup_name(long, slot, Schedule.parse("@daily").zone)
    assert len(name) <= 253
    assert name.endswith("-20261203-0200")
    assert backup_name(long + "b", slot, Schedule.parse("@daily").zone) != name
    assert trigger_backup_name("nightly", "2026-12-03") == trigger_backup_name(
        "nightly", "2026-12-03"
    )
    assert trigger_backup_name("nightly", "a") != trigger_backup_name("nightly", "b")
