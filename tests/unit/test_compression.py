import io
import os

import pytest

from lifeboat.worker.compression import (
    DEFAULT_LEVELS,
    Compression,
    DecompressingReader,
    make_compressor,
    usable_cpus,
)
from lifeboat.worker.errors import ChecksumMismatch, UsageError


def compress_all(data: bytes, compression: Compression) -> bytes:
    c = make_compressor(compression)
    return c.compress(data) + c.flush()


class CountingReader:
    """Records how far the inner stream was read: the checksum check depends on reaching b""."""

    def __init__(self, data: bytes) -> None:
        self._io = io.BytesIO(data)
        self.saw_end = False

    def read(self, n: int = -1) -> bytes:
        out = self._io.read(n)
        if not out:
            self.saw_end = True
        return out


def read_all(reader: DecompressingReader) -> int:
    total = 0
    while chunk := reader.read(65536):
        total += len(chunk)
    return total


@pytest.mark.parametrize("compression", list(Compression))
def test_round_trip(compression: Compression) -> None:
    data = os.urandom(300_000) + b"table data\n" * 200_000
    reader = CountingReader(compress_all(data, compression))
    out = DecompressingReader(reader, compression)
    chunks = []
    while chunk := out.read(65536):
        assert len(chunk) <= 65536
        chunks.append(chunk)
    assert b"".join(chunks) == data
    assert reader.saw_end


@pytest.mark.parametrize("compression", [Compression.ZSTD, Compression.GZIP])
def test_output_per_read_is_bounded_for_extreme_ratios(compression: Compression) -> None:
    data = bytes(64 * 1024 * 1024)  # compresses thousands to one
    out = DecompressingReader(CountingReader(compress_all(data, compression)), compression)
    total = 0
    while chunk := out.read(1 << 20):
        assert len(chunk) <= 1 << 20
        total += len(chunk)
    assert total == len(data)


@pytest.mark.parametrize("compression", [Compression.ZSTD, Compression.GZIP])
def test_flipped_byte_is_reported_as_corruption(compression: Compression) -> None:
    blob = bytearray(compress_all(os.urandom(50_000) + b"x" * 100_000, compression))
    blob[len(blob) // 2] ^= 0xFF
    out = DecompressingReader(CountingReader(bytes(blob)), compression)
    with pytest.raises(ChecksumMismatch):
        read_all(out)


def test_truncated_zstd_stream_still_reads_the_inner_stream_to_its_end() -> None:
    blob = compress_all(os.urandom(200_000), Compression.ZSTD)
    reader = CountingReader(blob[: len(blob) // 2])
    out = DecompressingReader(reader, Compression.ZSTD)
    while out.read(65536):
        pass
    assert reader.saw_end  # so the size/SHA-256 check of the artifact runs and fails


def test_bad_names_and_levels_name_the_option() -> None:
    with pytest.raises(UsageError, match="--compression"):
        Compression.parse("lz4")
    with pytest.raises(UsageError, match="--level"):
        make_compressor(Compression.ZSTD, 40)


def test_zstd_defaults_to_the_measured_level_on_every_usable_cpu() -> None:
    assert DEFAULT_LEVELS[Compression.ZSTD] == 2  # docs/benchmarks.md: chosen by measurement
    data = os.urandom(100_000) + b"row\tvalue\n" * 400_000
    for threads in (1, 2):
        c = make_compressor(Compression.ZSTD, threads=threads)
        # Fed in chunks, as the pipeline does: workers return output as they finish it.
        blob = b"".join(c.compress(data[i : i + 65536]) for i in range(0, len(data), 65536))
        blob += c.flush()
        out = DecompressingReader(CountingReader(blob), Compression.ZSTD)
        chunks = []
        while chunk := out.read(1 << 20):
            chunks.append(chunk)
        assert b"".join(chunks) == data


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 2),
        ({"cpu.max": "50000 100000\n"}, 1),
        ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
    ],
)
def test_usable_cpus_follow_the_containers_cpu_limit(
    tmp_path, files: dict[str, str], expected: int | None
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == (affinity if expected is None else min(expected, affinity))
