"""Streaming compression and decompression with bounded memory.

Compression is the pipeline's job, not the dump tool's: one codec for every engine, chosen per
backup (zstd by default). The decompressing reader also makes sure the compressed input is read to
its very end before it reports the end of the dump, so a checksum check on the raw artifact (which
happens at the artifact's end) always runs before an engine commits anything.

zstd runs in its multi-threaded mode: `compress` hands the input to zstd's own worker threads
(outside the GIL) and returns what they have finished, so compression overlaps the dump tool and
the upload instead of taking turns with them. One worker per CPU the worker may use (its cgroup
quota, not the node's CPU count), at least one: even then the compression runs beside the thread
that reads the dump. The default level is 2, chosen by measurement (docs/benchmarks.md): level 1
costs about as much CPU but made a PostgreSQL artifact larger than pigz's, and level 3 costs
twice the CPU and made a MariaDB artifact larger than gzip's.
"""

from __future__ import annotations

import math
import os
import zlib
from enum import StrEnum
from pathlib import Path
from typing import IO, Protocol, cast

import zstandard

from lifeboat.worker.errors import ChecksumMismatch, UsageError
from lifeboat.worker.streams import CHUNK_SIZE, Readable


class Compression(StrEnum):
    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"

    @property
    def extension(self) -> str:
        return {"zstd": ".zst", "gzip": ".gz", "none": ""}[self.value]

    @classmethod
    def parse(cls, value: str) -> Compression:
        try:
            return cls(value.lower())
        except ValueError:
            raise UsageError(
                f"--compression: {value!r} is not supported; use zstd, gzip or none"
            ) from None


DEFAULT_LEVELS = {Compression.ZSTD: 2, Compression.GZIP: 6, Compression.NONE: 0}
MAX_ZSTD_THREADS = 8
"""Beyond this, a backup is bound by the dump tool, never by compression."""


def usable_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota (a container's
    `resources.limits.cpu`), which `os.cpu_count()` does not see."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota: float | None = None
    try:  # cgroup v2: "max 100000" or "150000 100000"
        limit, period = (cgroup / "cpu.max").read_text().split()[:2]
        if limit != "max":
            quota = int(limit) / int(period)
    except (OSError, ValueError):
        try:  # cgroup v1
            limit_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
            period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
            if limit_us > 0 and period_us > 0:
                quota = limit_us / period_us
        except (OSError, ValueError):
            pass
    available = cpus or 1
    if quota is not None:
        available = min(available, max(1, math.ceil(quota)))
    return max(1, available)


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self, level: int, threads: int) -> None:
        # write_checksum: a flipped byte also fails decompression, not only the SHA-256 check.
        cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=threads)
        self._obj = cctx.compressobj()

    def compress(self, data: bytes) -> bytes:
        out: bytes = self._obj.compress(data)
        return out

    def flush(self) -> bytes:
        out: bytes = self._obj.flush()
        return out


class _Gzip:
    def __init__(self, level: int) -> None:
        self._obj = zlib.compressobj(level, zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._obj.compress(data)

    def flush(self) -> bytes:
        return self._obj.flush()


def make_compressor(
    compression: Compression, level: int | None = None, threads: int | None = None
) -> Compressor:
    """`threads`: zstd workers (default: one per usable CPU, see `usable_cpus`)."""
    chosen = DEFAULT_LEVELS[compression] if level is None else level
    if compression is Compression.ZSTD:
        if not 1 <= chosen <= 22:
            raise UsageError(f"--level: zstd levels are 1..22, not {chosen}")
        workers = min(usable_cpus(), MAX_ZSTD_THREADS) if threads is None else threads
        return _Zstd(chosen, max(1, workers))
    if compression is Compression.GZIP:
        if not 1 <= chosen <= 9:
            raise UsageError(f"--level: gzip levels are 1..9, not {chosen}")
        return _Gzip(chosen)
    return _Identity()


class DecompressingReader:
    """Reads decompressed bytes from a compressed `Readable`, holding at most ~2 chunks.

    Output per call is bounded whatever the compression ratio (a table of zeros compresses
    10,000:1). When the codec reports the end, the inner reader is drained to its own end, so
    its end-of-artifact check (size and SHA-256, which also catch truncation) always runs
    before the caller sees b"".
    """

    def __init__(self, inner: Readable, compression: Compression) -> None:
        self._inner = inner
        self._compression = compression
        self._done = False
        self._zstd = (
            zstandard.ZstdDecompressor().stream_reader(cast(IO[bytes], inner), read_size=256 * 1024)
            if compression is Compression.ZSTD
            else None
        )
        self._gzip = zlib.decompressobj(31) if compression is Compression.GZIP else None

    def read(self, n: int = -1, /) -> bytes:
        if self._done:
            return b""
        want = CHUNK_SIZE if n is None or n < 0 else n
        data = self._read_codec(want)
        if not data:
            self._drain()
            self._done = True
        return data

    def _read_codec(self, want: int) -> bytes:
        if self._zstd is not None:
            try:
                out: bytes = self._zstd.read(want)
            except zstandard.ZstdError as exc:
                raise ChecksumMismatch(f"the artifact is corrupt: zstd says {exc}") from None
            return out
        if self._gzip is not None:
            return self._read_gzip(want)
        return self._inner.read(want)

    def _read_gzip(self, want: int) -> bytes:
        assert self._gzip is not None
        while not self._gzip.eof:
            data = self._gzip.unconsumed_tail or self._inner.read(CHUNK_SIZE)
            if not data:
                return b""  # truncated: the inner reader's size/SHA-256 check will say so
            try:
                out = self._gzip.decompress(data, want)
            except zlib.error as exc:
                raise ChecksumMismatch(f"the artifact is corrupt: gzip says {exc}") from None
            if out:
                return out
        return b""

    def _drain(self) -> None:
        while self._inner.read(CHUNK_SIZE):
            pass
