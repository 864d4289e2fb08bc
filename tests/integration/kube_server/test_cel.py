"""The tiny CEL evaluator: the rules our CRDs use work, anything unknown fails loudly."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from tests.support.kube.cel import CELEvalError, CELSyntaxError, Program
from tests.support.kube.registry import CRDError, load_crd_documents, resources_from_crd
from tests.support.kube.server import KubeServer


@pytest.mark.parametrize(
    ("rule", "self_", "old", "expected"),
    [
        ("self == oldSelf", {"a": 1}, {"a": 1}, True),
        ("self == oldSelf", {"a": 1}, {"a": 2}, False),
        ("self.engine == oldSelf.engine", {"engine": "pg", "x": 1}, {"engine": "pg"}, True),
        ("has(self.schedule) || self.once", {"once": True}, None, True),
        ("!has(self.schedule)", {"schedule": "x"}, None, False),
        ("size(self.name) <= 63 && self.name.matches('^[a-z]+$')", {"name": "abc"}, None, True),
        ("self.name.startsWith('t-') && !self.name.endsWith('-')", {"name": "t-1"}, None, True),
        ("self.items.all(i, i.size > 0)", {"items": [{"size": 1}, {"size": 2}]}, None, True),
        ("self.items.exists(i, i.size == 0)", {"items": [{"size": 1}]}, None, False),
        ("self.items.map(i, i.size).sum() == 3", {"items": [{"size": 1}, {"size": 2}]}, None, True),
        ("self.tags.filter(t, t != 'x').size() == 1", {"tags": ["x", "y"]}, None, True),
        (
            "self.replicas >= 1 ? self.mode in ['a', 'b'] : true",
            {"replicas": 2, "mode": "b"},
            None,
            True,
        ),
        (
            "self.a + self.b * 2 - 1 == 4 && 7 / 2 == 3 && -7 % 3 == -1",
            {"a": 1, "b": 2},
            None,
            True,
        ),
        ("'key' in self.labels", {"labels": {"key": "v"}}, None, True),
        ("self.missing == 1 || true", {}, None, True),
        ("int(self.n) + 1 == 2 && string(self.n) == '1'", {"n": 1}, None, True),
        ("self.s.lowerAscii() == 'abc' && self.s.size() == 3", {"s": "AbC"}, None, True),
    ],
)
def test_rules_evaluate_as_cel_does(rule: str, self_: Any, old: Any, expected: bool) -> None:
    assert Program(rule).evaluate({"self": self_, "oldSelf": old}) is expected


def test_runtime_errors_are_errors_not_false() -> None:
    with pytest.raises(CELEvalError, match="no such key: missing"):
        Program("self.missing == 1").evaluate({"self": {}, "oldSelf": None})


@pytest.mark.parametrize(
    "rule",
    [
        "quantity(self.size).isGreaterThan(quantity('1Gi'))",
        "self.?optional.orValue(1) == 1",
        "isURL(self.url)",
        "self.x == unknownVariable",
        "duration(self.timeout) > duration('1s')",
    ],
)
def test_unsupported_rules_fail_at_compile_time(rule: str) -> None:
    with pytest.raises(CELSyntaxError):
        Program(rule)


def crd_with_rule(rule: str) -> dict[str, Any]:
    [crd] = load_crd_documents([pathlib.Path(__file__).parents[2] / "support/kube/testdata"])
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
        "x-kubernetes-validations"
    ] = [{"rule": rule}]
    return crd


def test_a_crd_with_an_unsupported_rule_cannot_be_loaded(tmp_path: pathlib.Path) -> None:
    crd = crd_with_rule("quantity(self.size) > quantity('1')")
    with pytest.raises(CRDError, match="quantity"):
        resources_from_crd(crd)
    import yaml

    (tmp_path / "crd.yaml").write_text(yaml.safe_dump(crd))
    with pytest.raises(CRDError, match="not supported by the test server"):
        KubeServer(crd_paths=[tmp_path])
