"""The scheduler, for the Job runner's one node: can a Pod go there, and if not, why.

The runner runs every Pod on one local node. Like the real scheduler's filters, a Pod does not
fit when the node is cordoned, when the node has a NoSchedule/NoExecute taint the Pod does not
tolerate, or when the node's labels do not match the Pod's `nodeSelector` or its required node
affinity. The reason is worded as the scheduler words it in the Pod's `PodScheduled` condition
and its FailedScheduling Events.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Mapping
from typing import Any

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
_PREEMPTION = "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."


def _default_labels() -> dict[str, str]:
    return {
        "kubernetes.io/hostname": "local",
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": _ARCH.get(platform.machine().lower(), platform.machine().lower()),
    }


@dataclasses.dataclass
class Node:
    """The runner's node: change `labels`, `taints` or `unschedulable` (cordon) at any time;
    Pods waiting to be scheduled are tried again."""

    name: str = "local"
    labels: dict[str, str] = dataclasses.field(default_factory=_default_labels)
    taints: list[dict[str, str]] = dataclasses.field(default_factory=list)
    unschedulable: bool = False


def _tolerates(tolerations: list[Mapping[str, Any]], taint: Mapping[str, str]) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration["key"] == taint.get("key"):
                return True
        elif toleration.get("key") == taint.get("key") and toleration.get("value", "") == (
            taint.get("value", "")
        ):
            return True
    return False


def _term_matches(term: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for expression in term.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        value = labels.get(key)
        match operator:
            case "In":
                ok = value in values
            case "NotIn":
                ok = value not in values
            case "Exists":
                ok = key in labels
            case "DoesNotExist":
                ok = key not in labels
            case "Gt" | "Lt":
                try:
                    number, limit = int(value or ""), int(values[0])
                except (ValueError, IndexError):
                    ok = False
                else:
                    ok = number > limit if operator == "Gt" else number < limit
            case _:
                ok = False
        if not ok:
            return False
    return True


def _affinity_matches(spec: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    required = (
        ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution"
        )
        or {}
    ).get("nodeSelectorTerms")
    return not required or any(_term_matches(term, labels) for term in required)


def problem(spec: Mapping[str, Any], node: Node) -> str | None:
    """Why the Pod with this spec cannot be scheduled onto `node`; None when it can."""
    if node.unschedulable:
        why = "1 node(s) were unschedulable"
    else:
        tolerations = spec.get("tolerations") or []
        untolerated = [
            t
            for t in node.taints
            if t.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(tolerations, t)
        ]
        if untolerated:
            taint = untolerated[0]
            shown = f"{taint['key']}: {taint['value']}" if taint.get("value") else taint["key"]
            why = f"1 node(s) had untolerated taint {{{shown}}}"
        elif not _affinity_matches(spec, node.labels):
            why = "1 node(s) didn't match Pod's node affinity/selector"
        else:
            return None
    return f"0/1 nodes are available: {why}. {_PREEMPTION}"
