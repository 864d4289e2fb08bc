"""docs/privileges.md promises, per engine and operation, the smallest set of grants that works.
Every row of its tables names the test that proves it; this keeps those names honest."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "privileges.md"
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _rows() -> list[str]:
    return [
        line
        for line in DOC.read_text().splitlines()
        if line.startswith("|") and not set(line) <= set("|-: ") and "Test" not in line
    ]


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    }


def test_every_privilege_row_names_a_test_that_exists() -> None:
    rows = _rows()
    assert rows, "docs/privileges.md has no table rows"
    for row in rows:
        refs = TEST_REF.findall(row)
        assert refs, f"this privilege row names no test: {row}"
        for path, name in refs:
            assert (ROOT / path).exists(), f"{path} (named in docs/privileges.md) does not exist"
            assert name in _test_functions(ROOT / path), f"{path}::{name} does not exist"


def test_both_engines_have_rows() -> None:
    text = DOC.read_text()
    assert "## PostgreSQL" in text
    assert "## MySQL" in text
