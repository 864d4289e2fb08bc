"""The real `lifeboat` worker as a process of its own, for tests that act at a measured point.

`Worker(...)` starts `python -m lifeboat ... --json-progress` in a session of its own (so a kill
takes its dump and restore tools with it, as a Pod's death would), `wait_for(condition)` reads
its progress lines until one satisfies the condition, and `finish()` collects the exit code and
all output within a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

Snapshot = dict[str, Any]


class Worker:
    """`lifeboat ...` in a session of its own, reporting JSON progress on stderr."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lifeboat", *args, "--json-progress"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
            start_new_session=True,
        )
        self.lines: list[str] = []

    def wait_for(self, condition: Callable[[Snapshot], bool]) -> Snapshot:
        """Read progress until `condition` holds; fails if the worker ends first."""
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if line.startswith("{"):
                snapshot: Snapshot = json.loads(line)["progress"]
                if condition(snapshot):
                    return snapshot
        raise AssertionError("the worker ended before the fault:\n" + "".join(self.lines[-5:]))

    def kill(self) -> None:
        """SIGKILL the worker and its tools, as when its Pod dies with its node."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        assert self.proc.returncode == -signal.SIGKILL

    def finish(self, timeout: float = 240) -> tuple[int, str, str]:
        """Exit code, stdout and all of stderr; kills the worker and fails past `timeout`."""
        assert self.proc.stderr is not None
        assert self.proc.stdout is not None
        stderr = self.proc.stderr
        drain = threading.Thread(target=lambda: self.lines.extend(stderr), daemon=True)
        drain.start()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(
                f"the worker hung: still running {timeout} s after the fault:\n"
                + "".join(self.lines[-10:])
            ) from None
        drain.join(timeout=30)
        return self.proc.returncode, self.proc.stdout.read(), "".join(self.lines)


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]
