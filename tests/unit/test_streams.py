"""The stream helpers the dump tools' pipes go through."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lifeboat.worker.streams import PIPE_SIZE, block_buffered, tool_name, widen_pipe

F_GETPIPE_SZ = getattr(fcntl, "F_GETPIPE_SZ", 1032)


def test_a_dump_tools_pipe_holds_a_whole_chunk() -> None:
    read_fd, write_fd = os.pipe()
    with os.fdopen(read_fd, "rb") as reader, os.fdopen(write_fd, "wb"):
        assert fcntl.fcntl(reader.fileno(), F_GETPIPE_SZ) < PIPE_SIZE
        widen_pipe(reader)
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
        assert fcntl.fcntl(reader.fileno(), F_GETPIPE_SZ) == min(PIPE_SIZE, limit)


def test_widening_a_closed_pipe_is_not_an_error() -> None:
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "rb")
    os.close(write_fd)
    reader.close()
    widen_pipe(reader)  # best effort: nothing to widen, nothing raised


@pytest.mark.skipif(shutil.which("stdbuf") is None, reason="coreutils' stdbuf is not installed")
def test_block_buffered_tools_write_everything_and_keep_their_name() -> None:
    argv = [sys.executable, "-c", "import sys\nfor i in range(100000): print(i)"]
    wrapped = block_buffered(argv)
    assert wrapped[0] == shutil.which("stdbuf")
    assert wrapped[1] == f"--output={PIPE_SIZE}"
    assert wrapped[2:] == argv
    assert tool_name(argv) == os.path.basename(sys.executable)
    done = subprocess.run(wrapped, capture_output=True, check=True)
    assert done.stdout == b"".join(b"%d\n" % i for i in range(100000))


def test_without_stdbuf_the_tool_runs_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert block_buffered(["pg_dump", "--version"]) == ["pg_dump", "--version"]
