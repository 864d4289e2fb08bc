"""Measured progress: counters fed by the real streams, and reporters that show them.

Nothing here invents progress. `Progress` only moves when the pipeline or an engine tells it that
bytes flowed or that the dump/restore tool finished an item (a table). Percent is derived from those
quantities, never goes backwards, and reaches 100 only in `finish()`.

A backup's byte total is an estimate from the database's catalog, and catalogs are wrong in both
directions (a dump's text is often larger than the pages it came from). When the estimate is split
per table (`item_bytes`), the total is corrected as tables finish: the bytes the finished tables
really took, plus the remaining tables' estimates scaled by the same measured ratio. So the total
shown is what is now expected, never less than what already flowed.

Counters are updated from several threads (the pipeline's read loop, an engine's stderr reader),
so every mutation holds a lock. Reporters are called at most every `interval` seconds, plus once
for every stage change and a final time.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO, Protocol

Clock = Callable[[], float]


@dataclass(frozen=True)
class ProgressSnapshot:
    """One reading of the counters, as reporters and the status subresource see it."""

    operation: str
    stage: str
    percent: float
    bytes_done: int
    bytes_total: int | None
    items_done: int
    items_total: int | None
    current_item: str | None
    rate_bytes_per_second: float | None
    eta_seconds: float | None
    elapsed_seconds: float
    done: bool
    updated_at: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


class Reporter(Protocol):
    """Receives snapshots; implementations: terminal bar, JSON lines, CR status patch."""

    def report(self, snapshot: ProgressSnapshot) -> None: ...

    def close(self) -> None: ...


class Progress:
    """Thread-safe counters for one operation (a backup or a restore)."""

    # Percent is capped below 100 until finish(): estimates of the total can be low.
    _CAP_BEFORE_DONE = 99.0

    def __init__(
        self,
        operation: str,
        reporters: Sequence[Reporter] = (),
        *,
        interval: float = 0.5,
        clock: Clock = time.monotonic,
    ) -> None:
        self.operation = operation
        self._reporters = list(reporters)
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_report = float("-inf")
        self._stage = "starting"
        self._bytes_done = 0
        self._bytes_total: int | None = None
        self._items_done = 0
        self._items_total: int | None = None
        self._items_seen: set[str] = set()
        self._estimated = False
        self._estimate: int | None = None
        self._item_bytes: dict[str, int] = {}
        self._estimate_done = 0
        """Catalog estimate of the items finished so far."""
        self._bytes_at_item_done = 0
        """Bytes that had flowed when the last item with an estimate finished."""
        self._current_item: str | None = None
        self._percent = 0.0
        self._done = False
        # Rate over a sliding window of (time, bytes) samples, so a stall shows as a falling rate.
        self._samples: list[tuple[float, int]] = [(self._started, 0)]

    # -- feeding -----------------------------------------------------------------------------

    def set_stage(self, stage: str) -> None:
        with self._lock:
            changed = stage != self._stage
            self._stage = stage
        if changed:
            self._emit(force=True)

    def set_totals(
        self,
        *,
        bytes_total: int | None = None,
        items_total: int | None = None,
        estimated: bool = False,
        item_bytes: Mapping[str, int] | None = None,
    ) -> None:
        """Declare what 100% means: exact (an artifact's size) or `estimated` (a dump's size
        per the catalog; `item_bytes` splits that estimate per item so it can be corrected)."""
        with self._lock:
            if bytes_total is not None:
                self._bytes_total = max(bytes_total, 0)
                self._estimate = self._bytes_total if estimated else None
                self._estimated = estimated
                self._item_bytes = {k: max(v, 0) for k, v in (item_bytes or {}).items()}
                self._estimate_done = 0
                self._bytes_at_item_done = self._bytes_done
            if items_total is not None:
                self._items_total = max(items_total, 0)

    def add_bytes(self, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            self._bytes_done += n
            self._correct_total_locked()
        self._emit()

    def start_item(self, name: str) -> None:
        with self._lock:
            self._current_item = name
            self._correct_total_locked()
        self._emit()

    def item_done(self, name: str) -> None:
        """An item (table) was finished by the tool; repeated names count once."""
        with self._lock:
            if name not in self._items_seen:
                self._items_seen.add(name)
                self._items_done += 1
                if self._estimated and name in self._item_bytes:
                    self._estimate_done += self._item_bytes[name]
                    self._bytes_at_item_done = self._bytes_done
                    self._correct_total_locked()
            self._current_item = name
        self._emit()

    def _correct_total_locked(self) -> None:
        """Re-project an estimated byte total: finished items at what they really took, the
        item in progress at least at what it took so far, the rest at the measured ratio."""
        if not self._estimated or self._estimate is None:
            return
        ratio = 1.0
        if self._estimate_done > 0 and self._bytes_at_item_done > 0:
            ratio = self._bytes_at_item_done / self._estimate_done
        remaining = max(self._estimate - self._estimate_done, 0)
        unfinished = self._bytes_done - self._bytes_at_item_done
        current = self._item_bytes.get(self._current_item or "")
        if current is not None and self._current_item not in self._items_seen:
            rest = max(round(current * ratio), unfinished) + round(
                max(remaining - current, 0) * ratio
            )
        else:
            rest = max(round(remaining * ratio), unfinished)
        projected = self._bytes_at_item_done + rest
        # Never claim less than what already flowed while the work still runs.
        self._bytes_total = max(projected, self._bytes_done)

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._percent = 100.0
            if self._bytes_total is None or self._bytes_total < self._bytes_done:
                self._bytes_total = self._bytes_done
            if self._items_total is not None and self._items_done < self._items_total:
                self._items_total = max(self._items_done, self._items_total)
            self._stage = "done"
            self._current_item = None
        self._emit(force=True)

    def close(self) -> None:
        for reporter in self._reporters:
            reporter.close()

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            return self._snapshot_locked()

    def _snapshot_locked(self) -> ProgressSnapshot:
        now = self._clock()
        self._samples.append((now, self._bytes_done))
        window_start = now - 10.0
        while len(self._samples) > 2 and self._samples[1][0] <= window_start:
            self._samples.pop(0)
        t0, b0 = self._samples[0]
        rate = (self._bytes_done - b0) / (now - t0) if now - t0 > 0.05 else None
        if not self._done:
            self._percent = max(self._percent, self._estimate_percent_locked())
        eta: float | None = None
        if self._done:
            eta = 0.0
        elif rate and rate > 0 and self._bytes_total:
            eta = max(self._bytes_total - self._bytes_done, 0) / rate
        return ProgressSnapshot(
            operation=self.operation,
            stage=self._stage,
            percent=round(self._percent, 1),
            bytes_done=self._bytes_done,
            bytes_total=self._bytes_total,
            items_done=self._items_done,
            items_total=self._items_total,
            current_item=self._current_item,
            rate_bytes_per_second=round(rate, 1) if rate is not None else None,
            eta_seconds=round(eta, 1) if eta is not None else None,
            elapsed_seconds=round(now - self._started, 3),
            done=self._done,
            updated_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        )

    def _estimate_percent_locked(self) -> float:
        # Bytes are the finer measure (tables differ in size by orders of magnitude); items count
        # only when there is no byte total.
        if self._bytes_total:
            fraction = self._bytes_done / self._bytes_total
        elif self._items_total:
            fraction = self._items_done / self._items_total
        else:
            return 0.0
        return min(fraction * 100.0, self._CAP_BEFORE_DONE)

    def _emit(self, *, force: bool = False) -> None:
        now = self._clock()
        with self._lock:
            if not force and now - self._last_report < self._interval:
                return
            self._last_report = now
            snap = self._snapshot_locked()
        for reporter in self._reporters:
            reporter.report(snap)


class JsonLinesReporter:
    """One JSON object per line on a stream (stderr by default): progress for machines.

    `min_interval` (seconds of the operation's own clock) thins the lines out for logs that
    people and log stores keep, such as a Job's: a line at most that often, plus every stage
    change and the final one."""

    def __init__(self, stream: IO[str] | None = None, *, min_interval: float = 0.0) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._min_interval = min_interval
        self._last: ProgressSnapshot | None = None

    def report(self, snapshot: ProgressSnapshot) -> None:
        last = self._last
        if (
            last is not None
            and not snapshot.done
            and snapshot.stage == last.stage
            and snapshot.elapsed_seconds - last.elapsed_seconds < self._min_interval
        ):
            return
        self._last = snapshot
        line = json.dumps({"progress": snapshot.to_json()}, separators=(",", ":"))
        self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()


class CallbackReporter:
    """Hands snapshots to a function (tests, the Kubernetes status writer)."""

    def __init__(self, callback: Callable[[ProgressSnapshot], None]) -> None:
        self._callback = callback

    def report(self, snapshot: ProgressSnapshot) -> None:
        self._callback(snapshot)

    def close(self) -> None:
        return None
