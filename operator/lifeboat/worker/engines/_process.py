"""Running dump/restore tools: argument lists, secrets in the environment, stderr watched live.

`ToolProcess` starts one tool, reads its stderr on a thread (each line goes to `on_line`, so an
engine can turn "dumping contents of table x" into progress), keeps the last lines for the error
message, and kills the tool when the owner leaves early.
"""

from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO

from lifeboat.worker.errors import LifeboatError

LineHandler = Callable[[str], None]


class ToolProcess:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: int | IO[bytes] | None = None,
        stdout: int | IO[bytes] | None = subprocess.PIPE,
        on_line: LineHandler | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.argv = list(argv)
        self.name = os.path.basename(self.argv[0])
        self._secrets = [s for s in secrets if s]
        self._on_line = on_line
        self._tail: collections.deque[str] = collections.deque(maxlen=20)
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=stdin,
                stdout=stdout,
                stderr=subprocess.PIPE,
                env=full_env,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise LifeboatError(
                f"{self.name} is not installed or not on PATH; install the database client tools"
            ) from None
        self._reader = threading.Thread(target=self._read_stderr, name=f"{self.name}-stderr")
        self._reader.daemon = True
        self._reader.start()

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = self.redact(raw.decode("utf-8", "replace").rstrip())
            if not line:
                continue
            self._tail.append(line)
            if self._on_line is not None:
                self._on_line(line)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def wait(self) -> int:
        code = self.proc.wait()
        self._reader.join(timeout=5)
        return code

    def error_lines(self) -> list[str]:
        """The last stderr lines of the tool (at most 20), secrets redacted."""
        return list(self._tail)

    def last_error(self) -> str:
        """The tool's most telling stderr line (an 'error' line if any), for one-line reports."""
        errors = [line for line in self._tail if "error" in line.lower() or "fatal" in line.lower()]
        lines = errors or list(self._tail)
        return lines[0] if lines else f"{self.name} exited with status {self.proc.returncode}"

    def kill(self) -> None:
        """Stop the tool (and anything it started) at once; safe to call twice."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        self.wait()
