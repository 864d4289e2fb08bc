"""The operator <-> worker contract: the worker's last line carries a reason the controller reads
back, and every worker error class exits with a code the Job's failure policy knows."""

from __future__ import annotations

import inspect

import pytest

from lifeboat.contract import (
    NON_RETRIABLE_EXIT_CODES,
    ExitCode,
    format_error_line,
    parse_error_line,
)
from lifeboat.worker import errors


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("AuthenticationFailed", "user 'app' was refused by db:5432"),
        ("VerificationFailed", "table a has 1 rows: the backup has 2; rolled back"),
        ("InsufficientPrivilege", "needs SELECT on shop.orders: GRANT SELECT ON shop.orders TO x"),
    ],
)
def test_an_error_line_round_trips(reason: str, message: str) -> None:
    line = format_error_line(reason, message)
    assert "\n" not in line
    assert parse_error_line(f"progress...\n{line}\n") == (reason, message)


def test_a_multi_line_message_becomes_one_line() -> None:
    line = format_error_line("RestoreFailed", "first\nsecond\n  third")
    assert parse_error_line(line) == ("RestoreFailed", "first second third")


def test_text_without_an_error_line_has_no_error() -> None:
    assert parse_error_line("just logs\nmore logs") is None


def test_the_last_error_line_wins() -> None:
    text = format_error_line("StorageError", "old") + "\n" + format_error_line("DiskFull", "new")
    assert parse_error_line(text) == ("DiskFull", "new")


def _error_classes() -> list[type[errors.LifeboatError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.LifeboatError)
    ]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_worker_error_has_a_camel_case_reason_and_a_known_exit_code(
    cls: type[errors.LifeboatError],
) -> None:
    assert cls.reason[0].isupper()
    assert cls.reason.isalnum()
    assert cls.exit_code in set(ExitCode)


def test_refusals_fail_the_job_at_once_and_outages_retry() -> None:
    assert errors.AuthenticationFailed.exit_code in NON_RETRIABLE_EXIT_CODES
    assert errors.InsufficientPrivilege.exit_code in NON_RETRIABLE_EXIT_CODES
    assert errors.DatabaseUnreachable.exit_code not in NON_RETRIABLE_EXIT_CODES
    assert errors.StorageUnreachable.exit_code not in NON_RETRIABLE_EXIT_CODES
