"""Progress totals that hold on real dumps: the catalog's estimate is corrected as tables finish,
so a running backup never shows more bytes done than its total, and percent never goes back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.databases import lifeboat, make_database


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_a_running_backup_never_shows_more_done_than_its_total(
    request: pytest.FixtureRequest, tmp_path: Path, engine: str
) -> None:
    db = make_database(request, engine, tmp_path)
    done = lifeboat(
        "backup", db.url, str(tmp_path / "backup"), "--compression", "none", "--json-progress",
        env=db.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    snapshots = [json.loads(line)["progress"] for line in done.stderr.splitlines()]
    running = [s for s in snapshots if not s["done"] and s["stage"] == "dumping"]
    assert running, "no progress was reported while dumping"
    for snapshot in running:
        assert snapshot["bytes_total"] is not None
        assert snapshot["bytes_done"] <= snapshot["bytes_total"], snapshot
    percents = [s["percent"] for s in snapshots]
    assert percents == sorted(percents)
    final = snapshots[-1]
    assert final["done"]
    assert final["bytes_total"] == final["bytes_done"]
    assert final["items_done"] == final["items_total"]
