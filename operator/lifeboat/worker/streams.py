"""The smallest stream vocabulary shared by engines, storage and the pipeline."""

from __future__ import annotations

from typing import Protocol

CHUNK_SIZE = 1024 * 1024


class Readable(Protocol):
    """Something with `read(n)` returning at most n bytes, and b"" at the end."""

    def read(self, n: int = -1, /) -> bytes: ...


class Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...
