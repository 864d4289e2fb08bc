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

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_a_slot_is_due_once_and_then_not_again() -> None:
    nightly = Schedule.parse("0 2 * * *")
    check = check_slot(
        nightly, now=at(2026, 12, 3, 2, 0, 5), created=CREATED, last_scheduled=None,
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert check.decision is SlotDecision.DUE
    assert check.slot == at(2026, 12, 3, 2, 0)
    assert check.next_slot == at(2026, 12, 4, 2, 0)
    again = check_slot(
        nightly, now=at(2026, 12, 3, 2, 30), created=CREATED, last_scheduled=check.slot,
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert again.decision is SlotDecision.NOT_DUE


def test_after_downtime_only_the_most_recent_slot_is_caught_up() -> None:
    hourly = Schedule.parse("@hourly")
    # The operator was down from 01:00 to 09:20: eight slots passed, one is due.
    check = check_slot(
        hourly, now=at(2026, 12, 3, 9, 20), created=CREATED, last_scheduled=at(2026, 12, 3, 0, 0),
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert check.decision is SlotDecision.DUE
    assert check.slot == at(2026, 12, 3, 9, 0)
    after = check_slot(
        hourly, now=at(2026, 12, 3, 9, 21), created=CREATED, last_scheduled=check.slot,
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert after.decision is SlotDecision.NOT_DUE


def test_a_slot_missed_by_more_than_the_starting_deadline_is_skipped() -> None:
    hourly = Schedule.parse("0 * * * *")
    check = check_slot(
        hourly, now=at(2026, 12, 3, 9, 20), created=CREATED, last_scheduled=None,
        starting_deadline_seconds=600,
    )  # fmt: skip
    assert check.decision is SlotDecision.MISSED
    in_time = check_slot(
        hourly, now=at(2026, 12, 3, 9, 5), created=CREATED, last_scheduled=None,
        starting_deadline_seconds=600,
    )  # fmt: skip
    assert in_time.decision is SlotDecision.DUE


def test_slots_before_the_schedule_existed_never_fire() -> None:
    check = check_slot(
        Schedule.parse("0 2 * * *"), now=at(2026, 12, 3, 2, 30), created=at(2026, 12, 3, 2, 10),
        last_scheduled=None, starting_deadline_seconds=None,
    )  # fmt: skip
    assert check.decision is SlotDecision.NOT_DUE
    assert check.next_slot == at(2026, 12, 4, 2, 0)


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
        berlin, now=first + timedelta(seconds=5), created=CREATED, last_scheduled=None,
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert check.decision is SlotDecision.DUE
    assert check.next_slot == at(2026, 10, 26, 1, 30)  # tomorrow 02:30 CET, not 02:30 CET today
    second_pass = at(2026, 10, 25, 1, 31)  # 02:31 CET: the same wall-clock 02:30 came again
    repeat = check_slot(
        berlin, now=second_pass, created=CREATED, last_scheduled=check.slot,
        starting_deadline_seconds=None,
    )  # fmt: skip
    assert repeat.decision is SlotDecision.NOT_DUE


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
