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


def test_json_lines_are_thinned_to_the_interval_but_keep_every_stage_and_the_end() -> None:
    """What a Job logs (--progress-interval): a line at most every 10 s of the operation, one
    per stage change, and the final one; a minute of steady bytes is not 120 lines."""
    import io
    import itertools
    import json

    stream = io.StringIO()
    clock = FakeClock()
    progress = Progress(
        "backup", [JsonLinesReporter(stream, min_interval=10)], interval=0.5, clock=clock
    )
    progress.set_stage("dumping")
    for second in range(60):
        clock.now += 0.5
        progress.add_bytes(100)
        clock.now += 0.5
        progress.add_bytes(100)
        if second == 29:
            progress.set_stage("uploading")
    clock.now += 0.2
    progress.finish()
    lines = [json.loads(line)["progress"] for line in stream.getvalue().splitlines()]
    stages = [line["stage"] for line in lines]
    assert stages[0] == "dumping"
    assert stages[-1] == "done"
    assert lines[-1]["bytes_done"] == 12_000
    assert "uploading" in stages
    for before, after in itertools.pairwise(lines):
        if after["stage"] == before["stage"]:
            assert after["elapsed_seconds"] - before["elapsed_seconds"] >= 10, (before, after)
    assert [(line["stage"], round(line["elapsed_seconds"])) for line in lines] == [
        ("dumping", 0),
        ("dumping", 10),
        ("dumping", 20),
        ("dumping", 30),
        ("uploading", 30),
        ("uploading", 40),
        ("uploading", 50),
        ("uploading", 60),
        ("done", 60),
    ]


def test_a_low_estimate_is_corrected_as_tables_finish() -> None:
    # The catalog says 3 tables of 100 bytes; the dump really writes 150 per table.
    progress, seen, clock = collecting_progress()
    progress.set_totals(
        bytes_total=300, items_total=3, estimated=True, item_bytes={"a": 100, "b": 100, "c": 100}
    )
    for table in ("a", "b", "c"):
        progress.start_item(table)
        for _ in range(3):
            clock.now += 1
            progress.add_bytes(50)
        progress.item_done(table)
    running = [s for s in seen if not s.done]
    assert all(s.bytes_total is not None and s.bytes_done <= s.bytes_total for s in running)
    after_first = next(s for s in seen if s.items_done == 1)
    assert after_first.bytes_total == 450  # 150 measured + 2 x 100 x 1.5
    # The first table ran over its estimate: the total grew with it (150 of 350, not 150 of 300).
    assert after_first.percent == pytest.approx(100 * 150 / 350, abs=0.1)
    during_last = next(s for s in seen if s.items_done == 2 and s.bytes_done == 400)
    assert during_last.bytes_total == 450
    assert during_last.percent == pytest.approx(100 * 400 / 450, abs=0.1)
    progress.finish()
    assert seen[-1].bytes_total == 450
    assert seen[-1].percent == 100.0


def test_an_estimate_exceeded_before_any_table_finished_grows_with_the_bytes() -> None:
    progress, seen, clock = collecting_progress()
    progress.set_totals(bytes_total=100, items_total=1, estimated=True, item_bytes={"a": 100})
    for _ in range(4):
        clock.now += 1
        progress.add_bytes(50)
    assert seen[-1].bytes_total == 200
    assert seen[-1].bytes_done == 200
    assert seen[-1].percent == 99.0


def test_percent_at_halfway_is_close_to_the_truth_with_uneven_tables() -> None:
    # One big table, several small ones; the catalog underestimates every table by a third.
    real = {"big": 6000, "s1": 1000, "s2": 1000, "s3": 1000, "s4": 1000}
    progress, seen, clock = collecting_progress()
    progress.set_totals(
        bytes_total=sum(real.values()) * 2 // 3,
        items_total=len(real),
        estimated=True,
        item_bytes={k: v * 2 // 3 for k, v in real.items()},
    )
    total, done = sum(real.values()), 0
    errors = []
    for table in ("s1", "s2", "big", "s3", "s4"):
        progress.start_item(table)
        for _ in range(real[table] // 100):
            clock.now += 0.1
            progress.add_bytes(100)
            done += 100
            errors.append(abs(seen[-1].percent - 100 * done / total))
        progress.item_done(table)
    halfway = errors[len(errors) // 2]
    assert halfway <= 10, f"percent is {halfway:.1f} points off the truth at halfway"
