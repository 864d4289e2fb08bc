"""A tiny run of `python -m benchmarks`, so the benchmark cannot rot unnoticed: its servers, data
sets, every task (limits, peers when awscli is installed, Lifeboat's backups and restores), the
operator at scale and the progress measurement all run, on tiny data. Nothing about time is
asserted (benchmarks are not tests); what is asserted is that every measurement was taken and
what must hold whatever the speed: one Job per Backup, every Backup Completed, progress reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("PostgreSQL full", "MariaDB full")
TASKS = ("limit-backup", "lifeboat-s3", "lifeboat-dir", "limit-restore", "lifeboat-restore")


@pytest.mark.slow
def test_the_benchmark_runs_every_measurement_on_tiny_data(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    measured = {(r["scenario"], r["task"]): r for r in report["results"]}
    for scenario in SCENARIOS:
        for task in TASKS:
            assert (scenario, task) in measured, (scenario, task)
        for task in ("lifeboat-s3", "lifeboat-dir"):
            run = measured[scenario, task]
            assert 0 < run["artifact_bytes"] < run["raw_bytes"]
            assert run["peak_rss_mib"] > 0
    operator = report["operator"]
    assert operator["error"] is None
    assert operator["jobs"] == operator["backups"] == operator["completed"] == 5
    assert operator["duplicates"] == operator["missing"] == 0
    progress = report["progress"]
    assert progress["error"] is None
    assert progress["status"][0]["stage"] == "checking"
    assert progress["status"][-1]["stage"] == "done"
    assert progress["status"][-1]["bytes_done"] == progress["raw_size"]
    for line in ("x limit", "Targets (issue 10)", "Operator: 5 Backups", "Progress:"):
        assert line in done.stdout
