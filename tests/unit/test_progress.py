import threading

import pytest

from lifeboat.worker.progress import CallbackReporter, JsonLinesReporter, Progress, ProgressSnapshot


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def collecting_progress(**kwargs: object) -> tuple[Progress, list[ProgressSnapshot], FakeClock]:
    seen: list[ProgressSnapshot] = []
    clock = FakeClock()
    progress = Progress("backup", [CallbackReporter(seen.append)], interval=0, clock=clock)
    return progress, seen, clock


def test_percent_follows_bytes_and_reaches_100_only_on_finish() -> None:
    progress, seen, clock = collecting_progress()
    progress.set_totals(bytes_total=1000, items_total=4)
    for _ in range(12):  # 1200 bytes: the estimate was low
        clock.now += 1
        progress.add_bytes(100)
    assert seen[-1].percent == 99.0
    assert not seen[-1].done
    progress.finish()
    assert seen[-1].percent == 100.0
    assert seen[-1].done
    assert seen[-1].bytes_total == 1200
    assert all(s.percent < 100 for s in seen[:-1])


def test_percent_never_goes_backwards_when_totals_grow() -> None:
    progress, seen, clock = collecting_progress()
    progress.set_totals(bytes_total=100)
    progress.add_bytes(80)
    progress.set_totals(bytes_total=1000)
    clock.now += 1
    progress.add_bytes(10)
    percents = [s.percent for s in seen]
    assert percents == sorted(percents)
    assert percents[-1] == 80.0


def test_items_count_once_and_drive_percent_without_byte_total() -> None:
    progress, seen, _ = collecting_progress()
    progress.set_totals(items_total=4)
    for name in ["a", "b", "b", "c"]:
        progress.item_done(name)
    assert seen[-1].items_done == 3
    assert seen[-1].percent == 75.0


def test_rate_and_eta_come_from_measured_bytes() -> None:
    progress, seen, clock = collecting_progress()
    progress.set_totals(bytes_total=10_000)
    clock.now += 2
    progress.add_bytes(2000)
    snap = seen[-1]
    assert snap.rate_bytes_per_second == pytest.approx(1000.0)
    assert snap.eta_seconds == pytest.approx(8.0)


def test_reports_are_rate_limited_but_stage_changes_always_report() -> None:
    seen: list[ProgressSnapshot] = []
    clock = FakeClock()
    progress = Progress("restore", [CallbackReporter(seen.append)], interval=2.0, clock=clock)
    for _ in range(50):
        progress.add_bytes(1)
    assert len(seen) == 1
    progress.set_stage("restoring")
    assert seen[-1].stage == "restoring"
    clock.now += 2.5
    progress.add_bytes(1)
    assert len(seen) == 3
    assert seen[-1].bytes_done == 51


def test_counters_are_exact_under_concurrent_updates() -> None:
    progress = Progress("backup", interval=0)

    def feed() -> None:
        for _ in range(10_000):
            progress.add_bytes(1)

    threads = [threading.Thread(target=feed) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert progress.snapshot().bytes_done == 40_000


def test_json_lines_reporter_writes_one_object_per_line(tmp_path) -> None:
    path = tmp_path / "progress.jsonl"
    with path.open("w") as stream:
        progress = Progress("backup", [JsonLinesReporter(stream)], interval=0)
        progress.set_totals(bytes_total=10)
        progress.add_bytes(5)
        progress.finish()
    import json

    lines = [json.loads(line)["progress"] for line in path.read_text().splitlines()]
    assert lines[-1]["percent"] == 100.0
    assert lines[-1]["done"] is True
    assert any(line["bytes_done"] == 5 and line["percent"] == 50.0 for line in lines)
