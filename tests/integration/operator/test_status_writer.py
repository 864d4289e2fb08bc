"""The worker's status writer: progress at most every 3 s per object, always the final write,
only its own fields, through the status subresource (and through the CRD's pruning)."""

from __future__ import annotations

from datetime import UTC, datetime

from lifeboat.worker.progress import ProgressSnapshot
from lifeboat.worker.status_writer import PROGRESS_WRITE_INTERVAL, StatusWriter
from tests.integration.operator.conftest import Cluster


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def snapshot(percent: float, *, done: bool = False) -> ProgressSnapshot:
    return ProgressSnapshot(
        operation="backup",
        stage="done" if done else "dumping",
        percent=percent,
        bytes_done=int(percent * 1000),
        bytes_total=100_000,
        items_done=1,
        items_total=2,
        current_item="public.orders",
        rate_bytes_per_second=5000.0,
        eta_seconds=3.0,
        elapsed_seconds=1.0,
        done=done,
        updated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


def test_progress_writes_are_rate_limited_and_the_final_one_always_lands(cluster: Cluster) -> None:
    cluster.create(
        "backups",
        "watched",
        {
            "database": {"engine": "sqlite", "persistentVolumeClaim": "data", "path": "a.db"},
            "storage": {"volume": {"persistentVolumeClaim": "backups"}},
        },
    )
    clock = Clock()
    writer = StatusWriter(
        f"backups/{cluster.namespace}/watched", kubeconfig=str(cluster.kubeconfig), clock=clock
    )
    assert PROGRESS_WRITE_INTERVAL == 3.0  # fewer than 0.5 writes/s per object while running
    for step in range(50):  # 50 snapshots over 4.9 s of (fake) time
        clock.now = step / 10
        writer.report(snapshot(step * 1.5))
    assert writer.writes == 2  # t = 0, 3.0
    progress = cluster.status("backups", "watched")["progress"]
    assert progress["percent"] == 45.0
    assert progress["percentText"] == "45%"
    assert progress["currentItem"] == "public.orders"

    writer.report(snapshot(100.0, done=True))  # right after the last write: still written
    assert writer.writes == 3
    status = cluster.status("backups", "watched")
    assert status["progress"]["percent"] == 100
    assert "phase" not in status  # the worker never writes the controller's fields
