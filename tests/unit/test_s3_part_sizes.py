"""The multipart part-size schedule: no hint (or a wrong one) may cap the object below 5 TiB."""

from __future__ import annotations

import pytest

from lifeboat.worker.storage.s3 import (
    DEFAULT_MIN_PART_SIZE,
    FLAT_PARTS,
    MIB,
    S3_MAX_OBJECT_SIZE,
    S3_MAX_PART_SIZE,
    S3_MAX_PARTS,
    S3_MIN_PART_SIZE,
    first_part_size,
    part_size,
)

GIB = 1024 * MIB
TIB = 1024 * GIB


def parts_for(total: int, first: int) -> list[int]:
    """The part sizes the writer uses for an object of `total` bytes."""
    sizes: list[int] = []
    while total > 0:
        size = part_size(len(sizes) + 1, first)
        sizes.append(min(size, total))
        total -= size
    return sizes


def capacity(first: int) -> int:
    return sum(part_size(n, first) for n in range(1, S3_MAX_PARTS + 1))


@pytest.mark.parametrize("min_part_size", [S3_MIN_PART_SIZE, DEFAULT_MIN_PART_SIZE])
def test_ten_thousand_parts_hold_five_tib_without_a_hint(min_part_size: int) -> None:
    assert capacity(first_part_size(None, min_part_size)) >= S3_MAX_OBJECT_SIZE


@pytest.mark.parametrize(
    ("hint", "actual"),
    [
        (1 * GIB, 5 * TIB),  # hint 5000x too low
        (0, 5 * TIB),
        (100 * GIB, 5 * TIB),
        (5 * TIB, 5 * TIB),
    ],
)
def test_a_wrong_hint_never_caps_the_object(hint: int, actual: int) -> None:
    assert len(parts_for(actual, first_part_size(hint))) <= S3_MAX_PARTS


@pytest.mark.parametrize("hint", [None, 0, 1, 10 * MIB, 3 * GIB, 200 * GIB, 5 * TIB, 50 * TIB])
def test_every_part_is_within_s3_limits(hint: int | None) -> None:
    first = first_part_size(hint)
    sizes = [part_size(n, first) for n in range(1, S3_MAX_PARTS + 1)]
    assert min(sizes) >= S3_MIN_PART_SIZE
    assert max(sizes) <= S3_MAX_PART_SIZE
    assert all(size % MIB == 0 for size in sizes)
    assert sizes == sorted(sizes), "parts only ever grow"


@pytest.mark.parametrize("total", [1 * MIB, 1 * GIB, 10 * GIB, 39 * GIB])
def test_typical_objects_without_a_hint_use_8_mib_parts(total: int) -> None:
    # Two buffers alive (one filling, one uploading): 16 MiB of memory for the whole upload.
    assert max(parts_for(total, first_part_size(None))) <= 8 * MIB


@pytest.mark.parametrize("total", [50 * GIB, 200 * GIB, 1 * TIB])
def test_an_accurate_hint_keeps_parts_flat_and_small(total: int) -> None:
    sizes = parts_for(total, first_part_size(total))
    assert len(sizes) <= FLAT_PARTS
    assert max(sizes) <= max(DEFAULT_MIN_PART_SIZE, total // FLAT_PARTS + MIB)


@pytest.mark.parametrize(
    ("total", "largest"), [(45 * GIB, 16 * MIB), (82 * GIB, 64 * MIB), (132 * GIB, 128 * MIB)]
)
def test_without_a_hint_parts_grow_only_past_39_gib(total: int, largest: int) -> None:
    # The price of a missing hint: these are the sizes the s3 module docstring promises.
    assert max(parts_for(total, first_part_size(None))) == largest


def test_the_first_part_respects_a_larger_minimum() -> None:
    assert first_part_size(None, 16 * MIB) == 16 * MIB
    assert first_part_size(None, S3_MIN_PART_SIZE) == S3_MIN_PART_SIZE
    assert first_part_size(10 * MIB * FLAT_PARTS + 1) == 11 * MIB  # rounded up to whole MiB
