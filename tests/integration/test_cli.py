"""The `lifeboat` command as people and Jobs run it: exit codes, one-line errors, JSON progress."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lifeboat.cli.demo import create_shop, fingerprint
from lifeboat.contract import ExitCode


def lifeboat(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lifeboat", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_backup_and_restore_positional_forms_with_json_progress(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    create_shop(db, orders=3000)
    original = fingerprint(db)
    location = f"file://{tmp_path}/backups/one/"

    done = lifeboat("backup", f"sqlite:///{db}", location, "--json-progress", "--output", "json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["tables"] == 4
    progress = [json.loads(line)["progress"] for line in done.stderr.splitlines()]
    assert progress[-1]["percent"] == 100.0
    assert [p["percent"] for p in progress] == sorted(p["percent"] for p in progress)

    db.unlink()
    done = lifeboat("restore", location, f"sqlite:///{db}", "--progress", "none")
    assert done.returncode == 0, done.stderr
    assert "restore complete" in done.stdout
    assert fingerprint(db) == original


def test_errors_are_one_line_with_the_cause_and_no_traceback(tmp_path: Path) -> None:
    missing = lifeboat("backup", f"sqlite:///{tmp_path}/nope.db", str(tmp_path / "b"))
    assert missing.returncode == ExitCode.REFUSED
    assert missing.stderr.strip().splitlines()[-1] == (
        f"lifeboat: error: DatabaseNotFound: no SQLite database at {tmp_path}/nope.db: "
        "check DATABASE_URL"
    )
    quiet = lifeboat(
        "backup", f"sqlite:///{tmp_path}/nope.db", str(tmp_path / "b"), "--progress", "none"
    )
    assert len(quiet.stderr.strip().splitlines()) == 1
    assert "Traceback" not in missing.stderr
    no_backup = lifeboat("restore", str(tmp_path / "empty"), f"sqlite:///{tmp_path}/x.db")
    assert no_backup.returncode == ExitCode.STORAGE
    assert "BackupNotFound" in no_backup.stderr
    assert "Traceback" not in no_backup.stderr
    bad_url = lifeboat("backup", "postgresql://u:hunter2@h/db", str(tmp_path / "b"))
    assert bad_url.returncode == ExitCode.USAGE
    assert "hunter2" not in bad_url.stderr + bad_url.stdout
    debug = lifeboat("--debug", "restore", str(tmp_path / "empty"), f"sqlite:///{tmp_path}/x.db")
    assert "Traceback" in debug.stderr
