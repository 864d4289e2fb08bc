"""The client tools (pg_dump, pg_restore, psql): their versions, their error lines, and the
progress their verbose output reports."""

from __future__ import annotations

import functools
import re
import subprocess
import threading

from lifeboat.worker.engines._process import ToolProcess
from lifeboat.worker.engines.postgres.catalog import major_version
from lifeboat.worker.errors import LifeboatError
from lifeboat.worker.progress import Progress

# pg_dump -v: `pg_dump: dumping contents of table "shop.orders"`; pg_restore -v:
# `pg_restore: processing data for table "shop.orders"`. Both name tables unquoted, as
# `schema.table`, exactly as the manifest does.
DUMPING_TABLE = re.compile(r'dumping contents of table "(?P<name>.+)"$')
RESTORING_TABLE = re.compile(r'processing data for table "(?P<name>.+)"$')


# What libpq and the server say when a session ends under a tool's feet: a restart or shutdown
# of the server (fast or immediate), a crash of another backend, the network going away.
_LOST_CONNECTION = re.compile(
    r"terminating connection due to (administrator command|unexpected postmaster exit)"
    r"|terminating connection because of crash of another server process"
    r"|server closed the connection unexpectedly"
    r"|the database system is (shutting down|starting up|in recovery mode)"
    r"|no connection to the server"
    r"|could not (receive|send) data (from|to) server"
    r"|connection to server .* failed"
    r"|SSL SYSCALL error|SSL connection has been closed unexpectedly"
    r"|lost synchronization with server"
)


def lost_connection(tool: ToolProcess) -> str | None:
    """The line saying the tool's session with the server was cut, if that is why it failed:
    a retry may then succeed, and the error must say so rather than blame the data."""
    for line in tool.error_lines():
        if _LOST_CONNECTION.search(line):
            return line
    return None


def tool_error(tool: ToolProcess) -> str:
    """The tool's own error line (not a verbose line that happens to name a table 'errors')."""
    for line in tool.error_lines():
        if re.search(r"(^|\s|:)(error|ERROR|FATAL|PANIC):", line):
            return line
    return tool.last_error()


@functools.cache
def client_version(tool: str) -> str:
    """The version of a local client tool, e.g. '15.8' for `pg_restore (PostgreSQL) 15.8`."""
    try:
        done = subprocess.run(
            [tool, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        raise LifeboatError(
            f"{tool} is not installed or not on PATH; install the PostgreSQL client tools"
        ) from None
    match = re.search(r"\)\s*(\d+(?:\.\d+)*\S*)", done.stdout)
    if done.returncode != 0 or match is None:
        raise LifeboatError(f"{tool} --version did not say its version: {done.stdout.strip()!r}")
    return match.group(1)


def client_major(tool: str) -> tuple[int, ...]:
    major = major_version(client_version(tool))
    assert major is not None  # client_version only returns what starts with a number
    return major


class ItemTracker:
    """Turns a tool's "now doing table X" lines into start_item / item_done for `Progress`.

    The tools announce a table when they start it; it is done when the next one starts or when
    the tool has finished.
    """

    def __init__(self, progress: Progress, pattern: re.Pattern[str]) -> None:
        self._progress = progress
        self._pattern = pattern
        self._current: str | None = None
        self._lock = threading.Lock()

    def on_line(self, line: str) -> None:
        match = self._pattern.search(line)
        if match is None:
            return
        name = match.group("name")
        with self._lock:
            previous, self._current = self._current, name
        if previous is not None:
            self._progress.item_done(previous)
        self._progress.start_item(name)

    def finish(self) -> None:
        with self._lock:
            last, self._current = self._current, None
        if last is not None:
            self._progress.item_done(last)
