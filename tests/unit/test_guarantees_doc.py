"""docs/guarantees.md names, for every guarantee, the tests that prove it: each must exist.

A test renamed or removed fails here until the page is updated, so the page never points at
proof that is gone."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "guarantees.md"
TEST_REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
GUARANTEES = [
    "Exactly one Job per request",
    "The operator survives being killed",
    "Kubernetes API errors are retried, never doubled",
    "One active operator",
    "No half-written artifact looks valid",
    "Restores are atomic, or the target is unchanged",
    "A database restart fails cleanly",
    "Checksum before commit",
    "Damaged or mismatched backups are refused",
    "Leftovers are cleaned",
    "Bounded retries",
    "Bad input is refused, naming the field",
    "No injection",
    "Encryption at rest",
    "Secrets never leak",
    "Namespace isolation",
    "Tenancy",
    "TLS in transit",
    "Least privilege at run time",
]


def table_rows() -> dict[str, str]:
    """Guarantee -> its 'Proven by' cell."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        if line.startswith("| ") and len(cells) >= 5 and cells[1] not in ("Guarantee", "---"):
            rows[cells[1]] = cells[3]
    return rows


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def references() -> list[tuple[str, str]]:
    return TEST_REFERENCE.findall(DOC.read_text(encoding="utf-8"))


def test_every_guarantee_has_a_row_with_tests() -> None:
    rows = table_rows()
    assert sorted(rows) == sorted(GUARANTEES)
    for guarantee, proof in rows.items():
        assert TEST_REFERENCE.search(proof), f"{guarantee!r} names no test"


@pytest.mark.parametrize(("path", "name"), references(), ids=lambda v: str(v))
def test_every_named_test_exists(path: str, name: str) -> None:
    file = ROOT / path
    assert file.is_file(), f"docs/guarantees.md names {path}, which does not exist"
    assert name in defined_tests(file), f"docs/guarantees.md names {path}::{name}: not found"


def test_the_page_is_linked_from_the_readme() -> None:
    assert "(docs/guarantees.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
