"""docs/troubleshooting.md explains every reason Lifeboat can write.

The reasons are collected from the code, not from a list kept by hand:

- the worker's: the `reason` of every `LifeboatError` subclass (worker and CLI modules), and
  any `x.reason = "..."` assignment;
- the controller's: every CamelCase literal of two or more words in `lifeboat/controller/`
  (verdicts, Kubernetes' reasons it passes on, schedule and store reasons, Event reasons), and
  the one-word ones in a reason's place: the reason argument of `Verdict(...)`,
  `CheckResult(...)` and `_cleanup_condition(...)`, and module-level string constants.

A new reason fails this test until the page has a table row for it; a literal that is not a
reason goes into NOT_REASONS with why.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import lifeboat
from lifeboat.worker.errors import LifeboatError

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "troubleshooting.md"
CONTROLLER = ROOT / "operator" / "lifeboat" / "controller"
PACKAGE = ROOT / "operator" / "lifeboat"
CAMEL = re.compile(r"^[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+$")
WORD = re.compile(r"^[A-Z][a-z]+$")
NOT_REASONS = {
    "PodScheduled": "a Pod condition type the controller reads",
    "SuccessCriteriaMet": "a Job condition type the controller reads",
    "FailureTarget": "a Job condition type the controller reads",
    "MetricsServer": "a class name in metrics.__all__",
    "NotDue": "a slot decision, never written",
}
REASON_ARGUMENT = {"Verdict": 1, "CheckResult": 1, "_cleanup_condition": 3}


def documented() -> set[str]:
    """The code-formatted words in the first column of the page's tables."""
    words: set[str] = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2:
            words.update(re.findall(r"`([A-Za-z]+)`", cells[1]))
    return words


def _subclasses(cls: type) -> Iterator[type]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def worker_reasons() -> set[str]:
    for module in pkgutil.walk_packages(lifeboat.__path__, "lifeboat."):
        if module.name.startswith(("lifeboat.worker", "lifeboat.cli")):
            importlib.import_module(module.name)
    reasons = {str(cls.reason) for cls in _subclasses(LifeboatError)}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Attribute) and t.attr == "reason" for t in node.targets)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                reasons.add(node.value.value)
    return reasons


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


def controller_reasons() -> set[str]:
    reasons: set[str] = set()
    for path in CONTROLLER.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module = importlib.import_module(f"lifeboat.controller.{path.stem}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and CAMEL.match(node.value)
                and node.value not in NOT_REASONS
            ):
                reasons.add(node.value)
            if isinstance(node, ast.Call) and _call_name(node) in REASON_ARGUMENT:
                index = REASON_ARGUMENT[_call_name(node) or ""]
                if len(node.args) > index:
                    argument = node.args[index]
                    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                        reasons.add(argument.value)
                    elif isinstance(argument, ast.Name) and isinstance(
                        getattr(module, argument.id, None), str
                    ):
                        reasons.add(getattr(module, argument.id))
        for statement in tree.body:  # module-level constants: REACHABLE = "Reachable"
            targets = (
                [statement.target]
                if isinstance(statement, ast.AnnAssign)
                else statement.targets
                if isinstance(statement, ast.Assign)
                else []
            )
            value = getattr(statement, "value", None)
            if (
                any(isinstance(t, ast.Name) and t.id.isupper() for t in targets)
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
                and (WORD.match(value.value) or CAMEL.match(value.value))
            ):
                reasons.add(value.value)
    return reasons - set(NOT_REASONS)


def test_the_collectors_find_the_reasons_they_should() -> None:
    """Guards against a collector that silently finds nothing."""
    assert {"AuthenticationFailed", "ChecksumMismatch", "Unexpected", "DemoFailed"} <= (
        worker_reasons()
    )
    assert {
        "Completed",
        "Running",
        "Deleting",
        "Reachable",
        "Unschedulable",
        "AlreadyRestored",
        "BackupStillRunning",
        "ImagePullBackOff",
        "BackupPruned",
    } <= controller_reasons()


def test_every_reason_lifeboat_can_write_is_explained() -> None:
    missing = (worker_reasons() | controller_reasons()) - documented()
    assert not missing, f"explain these in docs/troubleshooting.md: {sorted(missing)}"


def test_every_alert_has_a_section_its_runbook_url_points_to() -> None:
    rules = (ROOT / "charts" / "lifeboat" / "files" / "prometheus" / "rules.yaml").read_text()
    alerts = re.findall(r"- alert: (\w+)", rules)
    assert len(alerts) == 8
    headings = set(re.findall(r"^### (\w+)$", DOC.read_text(encoding="utf-8"), re.MULTILINE))
    for alert in alerts:
        assert alert in headings
        assert f"#{alert.lower()}" in rules
