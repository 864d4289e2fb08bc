"""The restore history on a Backup and the repeat rule, table-driven (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from lifeboat.api.backup import Backup
from lifeboat.controller.restore_history import (
    ALREADY_RESTORED,
    record_restore,
    repeat_refusal,
    restore_again_value,
)


def entry(name: str, uid: str, result: str = "Completed", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "uid": uid,
        "time": f"2026-12-0{uid[-1]}T02:00:00Z",
        "result": result,
        "reason": "Completed" if result == "Completed" else "ChecksumMismatch",
        **extra,
    }


DONE = entry("undo", "u1", tablesVerified=4, rowsVerified=1730)
DONE_AGAIN = entry("undo", "u2", restoreAgain="2")
FAILED = entry("undo", "u3", result="Failed")
DRY = entry("undo", "u4", dryRun=True)


@pytest.mark.parametrize(
    ("history", "name", "uid", "again", "dry_run", "refused"),
    [
        ([], "undo", "new", None, False, False),
        ([DONE], "undo", "new", None, False, True),
        ([DONE], "other-name", "new", None, False, False),
        ([DONE], "undo", "u1", None, False, False),  # the same object: not a repeat
        ([DONE], "undo", "new", "1", False, False),  # a value never used
        ([DONE, DONE_AGAIN], "undo", "new", "2", False, True),  # a value used by a success
        ([DONE, DONE_AGAIN], "undo", "new", "3", False, False),
        ([FAILED], "undo", "new", None, False, False),  # a failure restored nothing
        ([DRY], "undo", "new", None, False, False),  # a dry run never counts
        ([DONE], "undo", "new", None, True, False),  # a dry run is never refused
        (
            [entry("undo", "u5", result="Failed", restoreAgain="2"), DONE],
            "undo",
            "new",
            "2",
            False,
            False,
        ),
    ],
)
def test_repeat_rule(
    history: list[dict[str, Any]],
    name: str,
    uid: str,
    again: str | None,
    dry_run: bool,
    refused: bool,
) -> None:
    verdict = repeat_refusal(
        [("shop", e) for e in history], name=name, uid=uid, again=again, dry_run=dry_run
    )
    assert (verdict is not None) == refused
    if verdict is not None:
        assert (verdict.phase.value, verdict.reason) == ("Failed", ALREADY_RESTORED)
        assert "lifeboat.dev/restore-again" in verdict.message
        assert f"uid {uid}" in verdict.message


def test_the_refusal_names_the_backup_time_and_proof_of_the_newest_restore() -> None:
    older = entry("undo", "u1", tablesVerified=1, rowsVerified=1)
    newer = entry("undo", "u2", tablesVerified=4, rowsVerified=1730)
    verdict = repeat_refusal(
        [("nightly-1", older), ("nightly-2", newer)],
        name="undo",
        uid="x",
        again=None,
        dry_run=False,
    )
    assert verdict is not None
    assert "already restored Backup nightly-2 at 2026-12-02T02:00:00Z" in verdict.message
    assert "4 tables / 1730 rows verified" in verdict.message


def test_recording_twice_is_recording_once() -> None:
    assert record_restore([DONE], {**DONE, "reason": "Completed"}) == [DONE]
    assert record_restore([DONE], DONE_AGAIN) == [DONE, DONE_AGAIN]


def test_a_full_history_drops_what_the_rule_needs_least() -> None:
    history = [DRY, DONE, FAILED, DONE_AGAIN]
    assert record_restore(history, entry("x", "u9"), limit=4) == [
        DONE,
        FAILED,
        DONE_AGAIN,
        entry("x", "u9"),
    ]
    assert record_restore(history, entry("x", "u9"), limit=3) == [
        DONE,
        DONE_AGAIN,
        entry("x", "u9"),
    ]
    # Only successes left: an older success of a name with a newer one goes first.
    successes = [entry("a", "u1"), entry("b", "u2"), entry("a", "u3")]
    assert record_restore(successes, entry("c", "u4"), limit=3) == [
        entry("b", "u2"),
        entry("a", "u3"),
        entry("c", "u4"),
    ]
    # Then the oldest.
    distinct = [entry("a", "u1"), entry("b", "u2")]
    assert record_restore(distinct, entry("c", "u3"), limit=2) == [
        entry("b", "u2"),
        entry("c", "u3"),
    ]


def test_restore_again_values_are_recorded_as_the_schema_allows() -> None:
    assert restore_again_value(None) is None
    assert restore_again_value({"lifeboat.dev/restore-again": "  "}) is None
    assert restore_again_value({"lifeboat.dev/restore-again": "2026-12-03"}) == "2026-12-03"
    long = restore_again_value({"lifeboat.dev/restore-again": "x" * 300})
    assert long is not None
    assert long.startswith("sha256:")
    assert len(long) <= 256


def test_the_history_fits_the_backup_status_schema() -> None:
    """What the controller writes is what the model (and so the CRD) accepts."""
    history = record_restore([], {**DONE, "dryRun": False, "checksumVerified": True})
    backup = Backup.model_validate(
        {
            "metadata": {"name": "shop"},
            "spec": {
                "database": {"engine": "sqlite", "persistentVolumeClaim": "d", "path": "x.db"},
                "storage": {"volume": {"persistentVolumeClaim": "b"}},
            },
            "status": {"restores": history},
        }
    )
    assert backup.status.restores is not None
    assert backup.status.restores[0].rows_verified == 1730
