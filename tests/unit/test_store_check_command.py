"""`lifeboat check BACKUP_URL`: what a BackupStore's check Job runs. Reads only unless
--writable; fails with the storage's reason on the worker's one error line."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifeboat.cli import main
from lifeboat.contract import ExitCode, parse_error_line


def test_a_usable_directory_is_reachable_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", tmp_path.as_uri()]) == ExitCode.OK
    assert capsys.readouterr().out.strip() == f"reachable: {tmp_path.as_uri()}/"
    assert list(tmp_path.iterdir()) == []


def test_a_directory_not_made_yet_is_reachable_when_its_parent_is_usable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A store's path inside a fresh claim: the first backup creates it."""
    assert main(["check", str(tmp_path / "team" / "nightly")]) == ExitCode.OK
    assert not (tmp_path / "team").exists()


def test_writable_proves_a_write_and_leaves_nothing_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--writable", str(tmp_path)]) == ExitCode.OK
    assert capsys.readouterr().out.startswith("reachable and writable: ")
    assert list(tmp_path.iterdir()) == []


def test_an_unusable_location_fails_with_the_reason_on_the_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    code = main(["check", str(blocker / "backups")])

    assert code == ExitCode.STORAGE
    parsed = parse_error_line(capsys.readouterr().err)
    assert parsed is not None
    reason, message = parsed
    assert reason == "StorageError"
    assert "is not a directory" in message


def test_a_url_with_credentials_is_refused_without_repeating_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "s3://user:hunter2@bucket/"]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert "InvalidArgument: " in err
    assert "hunter2" not in err
