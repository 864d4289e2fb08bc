"""Feeding pg_restore when its pipe is closed under the feeder (a restart of the server found
by tests/integration/test_database_restarts.py): psql fails, the relay kills pg_restore and
closes its stdin while the main thread writes. That must read as "pg_restore stopped reading"
(the caller then asks psql why), never as an unexpected ValueError."""

from __future__ import annotations

import io

import pytest

from lifeboat.worker.engines.postgres.restore import feed


class _Source:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    def read(self, n: int = -1, /) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


class _ClosingSource:
    """Closes the sink before its second chunk is written, as the relay's kill of pg_restore
    does from its own thread."""

    def __init__(self, sink: io.BytesIO) -> None:
        self._sink = sink
        self._reads = 0

    def read(self, n: int = -1, /) -> bytes:
        self._reads += 1
        if self._reads == 2:
            self._sink.close()
        return b"x" * 10 if self._reads <= 3 else b""


def test_a_sink_closed_by_another_thread_is_a_stop_not_an_error() -> None:
    sink = io.BytesIO()

    assert feed(sink, _ClosingSource(sink)) is False


def test_a_broken_pipe_is_a_stop() -> None:
    class Broken(io.BytesIO):
        def write(self, data: object, /) -> int:
            raise BrokenPipeError

    assert feed(Broken(), _Source([b"x"])) is False


def test_the_whole_source_is_written_and_a_source_error_propagates() -> None:
    sink = io.BytesIO()
    assert feed(sink, _Source([b"ab", b"cd"])) is True
    assert sink.getvalue() == b"abcd"

    class Failing:
        def read(self, n: int = -1, /) -> bytes:
            raise ValueError("the source's own error")

    with pytest.raises(ValueError, match="the source's own error"):
        feed(io.BytesIO(), Failing())
