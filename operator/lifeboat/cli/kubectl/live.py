"""`--wait`: follow one object's status until it is Completed or Failed, and show it.

The display is driven only by the object's status as the API server reports it (a watch, see
`kube.resources.watch_object`): the bar moves when the worker writes progress, never in
between. On a terminal it is a live bar drawn with rich (the worker's own line of numbers, see
`worker.terminal.describe`); otherwise plain lines, one per change of phase or stage and at most
one every `PLAIN_INTERVAL` seconds for progress in between.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from lifeboat.api import Phase
from lifeboat.cli.kubectl.kinds import Kind
from lifeboat.cli.kubectl.render import (
    FINAL_PHASES,
    load_status,
    phase_line,
    progress_line,
    reference,
    snapshot,
    staleness,
    status_model,
    unattended,
)
from lifeboat.contract import Object
from lifeboat.worker.terminal import describe as describe_snapshot

PLAIN_INTERVAL = 10.0
Clock = Callable[[], float]


class StatusView(Protocol):
    def update(self, obj: Object) -> None: ...

    def close(self) -> None: ...


class LiveView:
    """A live bar on a terminal: header (object, phase, stage, table), bar and numbers."""

    def __init__(self, kind: Kind, console: Console) -> None:
        self._kind = kind
        self._console = console
        self._obj: Object | None = None
        # get_renderable: every refresh re-reads the latest status, so "no progress for 40s"
        # appears while the worker is silent, without a new event.
        self._live = Live(
            console=console, refresh_per_second=4, transient=False, get_renderable=self._render
        )
        self._live.start()

    def update(self, obj: Object) -> None:
        self._obj = obj
        self._live.refresh()

    def close(self) -> None:
        self._live.refresh()
        self._live.stop()

    def _render(self) -> RenderableType:
        if self._obj is None:
            return Text("")
        status = load_status(status_model(self._kind), self._obj)
        header = Table.grid(padding=(0, 2))
        phase = status.phase.value if status.phase else "Pending"
        progress = status.progress
        header.add_row(
            Text(reference(self._kind, self._obj), style="bold"),
            Text(phase, style=_phase_style(status.phase)),
            Text((progress.stage or "") if progress else "", style="cyan"),
            Text((progress.current_item or "") if progress else "", style="dim"),
        )
        parts: list[RenderableType] = [header]
        if progress is not None and progress.percent is not None:
            line = Table.grid(padding=(0, 1))
            line.add_row(
                ProgressBar(total=100.0, completed=progress.percent, width=40),
                Text(describe_snapshot(snapshot(self._kind, progress))),
            )
            parts.append(line)
        if status.phase not in FINAL_PHASES and (status.message or not status.phase):
            parts.append(Text(phase_line(status), style="dim"))
        now = datetime.now(UTC)
        quiet = staleness(progress, status.phase, now)
        if quiet:
            parts.append(Text(f"{quiet}: is the worker stuck? see its logs", style="yellow"))
        orphan = unattended(self._obj, status, now)
        if orphan:
            parts.append(Text(orphan, style="yellow"))
        return Group(*parts)


def _phase_style(phase: Phase | None) -> str:
    return {Phase.COMPLETED: "green", Phase.FAILED: "red", Phase.RUNNING: "blue"}.get(
        phase or Phase.PENDING, "yellow"
    )


class PlainView:
    """Plain lines for logs and pipes: phase changes, stage changes, progress now and then."""

    def __init__(self, kind: Kind, out: IO[str], clock: Clock = time.monotonic) -> None:
        self._kind = kind
        self._out = out
        self._clock = clock
        self._last_phase: tuple[object, ...] | None = None
        self._last_stage: str | None = None
        self._last_progress_at: float | None = None
        self._last_line = ""

    def update(self, obj: Object) -> None:
        status = load_status(status_model(self._kind), obj)
        ref = reference(self._kind, obj)
        phase_key = (status.phase, status.reason, status.message)
        if phase_key != self._last_phase:
            self._last_phase = phase_key
            if status.phase not in FINAL_PHASES:
                self._write(f"{ref}: {phase_line(status)}")
        progress = status.progress
        if progress is None or progress.percent is None:
            return
        now = self._clock()
        changed_stage = progress.stage != self._last_stage
        due = self._last_progress_at is None or now - self._last_progress_at >= PLAIN_INTERVAL
        if changed_stage or due or status.phase in FINAL_PHASES:
            line = f"{ref}: {progress_line(self._kind, progress)}"
            if line != self._last_line:
                self._write(line)
                self._last_stage = progress.stage
                self._last_progress_at = now

    def close(self) -> None:
        self._out.flush()

    def _write(self, line: str) -> None:
        self._last_line = line
        self._out.write(line + "\n")
        self._out.flush()


def make_view(kind: Kind, stream: IO[str]) -> StatusView:
    """The live bar when `stream` is a terminal, else plain lines."""
    console = Console(file=stream, soft_wrap=False)
    if console.is_terminal:
        return LiveView(kind, console)
    return PlainView(kind, stream)
