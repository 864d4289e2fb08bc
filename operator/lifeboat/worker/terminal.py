"""The terminal progress bar: a live view of measured snapshots, drawn with rich.

Every number shown comes from the `ProgressSnapshot`: rich draws, it does not estimate.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from lifeboat.contract import format_bytes
from lifeboat.worker.progress import ProgressSnapshot


def human_bytes(n: float | None) -> str:
    """`format_bytes`, with '?' for an unknown amount."""
    return "?" if n is None else format_bytes(n)


def human_seconds(s: float | None) -> str:
    if s is None:
        return "--:--"
    total = round(s)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def describe(snapshot: ProgressSnapshot) -> str:
    """One line of text for a snapshot (also used in logs and the status message)."""
    items = (
        f"{snapshot.items_done}/{snapshot.items_total} tables"
        if snapshot.items_total is not None
        else f"{snapshot.items_done} tables"
    )
    total = f" / {human_bytes(snapshot.bytes_total)}" if snapshot.bytes_total else ""
    rate = (
        f"{human_bytes(snapshot.rate_bytes_per_second)}/s"
        if snapshot.rate_bytes_per_second is not None
        else "-"
    )
    return (
        f"{snapshot.percent:5.1f}%  {human_bytes(snapshot.bytes_done)}{total}  {items}  "
        f"{rate}  ETA {human_seconds(snapshot.eta_seconds)}"
    )


class TerminalReporter:
    """A live progress bar on a terminal; plain lines when the console is not interactive."""

    def __init__(self, console: Console | None = None, title: str = "") -> None:
        self._console = console or Console(stderr=True, soft_wrap=True)
        self._title = title
        self._live: Live | None = None
        self._last_line = ""
        if self._console.is_terminal:
            self._live = Live(console=self._console, refresh_per_second=8, transient=False)
            self._live.start()

    def _render(self, snapshot: ProgressSnapshot) -> Group:
        header = Table.grid(padding=(0, 1))
        header.add_row(
            Text(self._title or snapshot.operation, style="bold"),
            Text(snapshot.stage, style="cyan"),
            Text(snapshot.current_item or "", style="dim"),
        )
        bar = ProgressBar(total=100.0, completed=snapshot.percent, width=40)
        line = Table.grid(padding=(0, 1))
        line.add_row(bar, Text(describe(snapshot)))
        return Group(header, line)

    def report(self, snapshot: ProgressSnapshot) -> None:
        if self._live is not None:
            self._live.update(self._render(snapshot))
            return
        line = f"{self._title or snapshot.operation}: {snapshot.stage}: {describe(snapshot)}"
        if line != self._last_line:
            self._console.print(line, highlight=False, markup=False)
            self._last_line = line

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
