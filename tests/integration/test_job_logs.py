"""What `kubectl logs job/...` shows: the worker run with exactly the flags the builders give a
Job. Progress comes as JSON lines on stderr (stage, bytes, rate, ETA), and a failure still ends
with the one error line the controller reads from the Pod's termination message.

Only the URLs differ from a real Job (local paths instead of the Job's mounts), and
--report-status is left out (no API server here; the operator tests cover it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from lifeboat.api import Backup, Restore
from lifeboat.builders.jobs import (
    PROGRESS_INTERVAL_SECONDS,
    JobDefaults,
    build_backup_job,
    build_restore_job,
)
from lifeboat.cli.demo import create_shop
from lifeboat.contract import ExitCode, parse_error_line

SQLITE = {"engine": "sqlite", "persistentVolumeClaim": "data", "path": "shop.db"}
VOLUME = {"volume": {"persistentVolumeClaim": "backups"}}
META = {"name": "shop", "namespace": "shop", "uid": "0123456789abcdef"}
# What the kubelet keeps of a failed container's log as its termination message
# (terminationMessagePolicy FallbackToLogsOnError): the last 80 lines, at most 2048 bytes.
TERMINATION_MESSAGE_LINES, TERMINATION_MESSAGE_BYTES = 80, 2048


def job_args(job: dict[str, Any], database_url: str, backup_url: str) -> list[str]:
    """The Job's container args with local URLs and without --report-status."""
    args: list[str] = list(job["spec"]["template"]["spec"]["containers"][0]["args"])
    index = args.index("--report-status")
    del args[index : index + 2]
    command = args[0]
    return [
        command,
        *([database_url, backup_url] if command == "backup" else [backup_url, database_url]),
        *args[3:],
    ]


def run_worker(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lifeboat", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def progress_lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line)["progress"] for line in stderr.splitlines() if line.startswith("{")]


def termination_message(log: str) -> str:
    tail = "\n".join(log.splitlines()[-TERMINATION_MESSAGE_LINES:])
    return tail.encode()[-TERMINATION_MESSAGE_BYTES:].decode(errors="replace")


def test_a_backup_job_logs_json_progress_lines(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    create_shop(db, orders=20000)
    backup = Backup.model_validate(
        {"metadata": META, "spec": {"database": SQLITE, "storage": VOLUME}}
    )
    backend = backup.spec.storage.backend()
    assert backend is not None
    job = build_backup_job(backup, backend, JobDefaults())
    args = job_args(job, f"sqlite:///{db}", f"file://{tmp_path}/backups/shop/")
    assert args[args.index("--progress") + 1] == "json"
    assert float(args[args.index("--progress-interval") + 1]) == PROGRESS_INTERVAL_SECONDS

    done = run_worker(args)

    assert done.returncode == 0, done.stderr
    lines = progress_lines(done.stderr)
    assert len(lines) == len(done.stderr.splitlines()), "stderr holds only progress lines"
    for line in lines:
        assert {"stage", "bytes_done", "rate_bytes_per_second", "eta_seconds"} <= line.keys()
    # A short backup: one line per stage (the interval thins out the rest), the last one done.
    stages = [line["stage"] for line in lines]
    assert len(stages) == len(set(stages)), stages
    assert lines[-1]["done"] is True
    assert lines[-1]["bytes_done"] > 0
    assert lines[-1]["eta_seconds"] == 0


def test_a_failing_restore_job_still_ends_with_the_error_line_the_controller_reads(
    tmp_path: Path,
) -> None:
    db = tmp_path / "shop.db"
    create_shop(db, orders=20000)
    location = tmp_path / "backups" / "shop"
    backed_up = run_worker(
        ["backup", f"sqlite:///{db}", f"file://{location}/", "--progress", "none"]
    )
    assert backed_up.returncode == 0, backed_up.stderr
    [artifact] = [p for p in location.iterdir() if p.name != "manifest.json"]
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))

    restore = Restore.model_validate({"metadata": META, "spec": {"backupRef": {"name": "shop"}}})
    source = Backup.model_validate(
        {"metadata": META, "spec": {"database": SQLITE, "storage": VOLUME}}
    )
    backend = source.spec.storage.backend()
    assert backend is not None
    job = build_restore_job(
        restore,
        storage=backend,
        source_url="file:///unused/",
        target=source.spec.database,
        defaults=JobDefaults(),
    )
    done = run_worker(job_args(job, f"sqlite:///{tmp_path}/target.db", f"file://{location}/"))

    assert done.returncode == ExitCode.VERIFICATION, done.stderr
    assert progress_lines(done.stderr), "progress lines came before the failure"
    last = done.stderr.splitlines()[-1]
    assert parse_error_line(last) == parse_error_line(
        termination_message(done.stdout + done.stderr)
    )
    reason, message = parse_error_line(termination_message(done.stderr)) or (None, "")
    assert reason == "ChecksumMismatch", done.stderr
    assert message
