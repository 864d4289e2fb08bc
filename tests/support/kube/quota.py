"""ResourceQuota admission for Pods, as the API server's `ResourceQuota` plugin does it.

A Pod whose creation would take a namespace past a quota's `spec.hard` is refused with 403
Forbidden and the plugin's own words (`exceeded quota: NAME, requested: ..., used: ...,
limited: ...`); a Pod that leaves a constrained compute resource unspecified is refused with
`failed quota: NAME: must specify ...`. The Job controller turns such refusals into FailedCreate
Events on the Job, which is what operators see in a cluster with quotas.

Supported: `pods`/`count/pods`, and `cpu`/`memory` with `requests.` and `limits.` prefixes.
Usage is computed from the namespace's live Pods (the real plugin reads `status.used`, which the
quota controller keeps equal to that). Scopes and scope selectors are not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
}
_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))(?:(?P<exp>[eE][+-]?\d+)|(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]))?$"
)
_COUNTS = {"pods", "count/pods"}
# quota resource -> (container resource, which of requests/limits)
_COMPUTE = {
    "cpu": ("cpu", "requests"),
    "memory": ("memory", "requests"),
    "requests.cpu": ("cpu", "requests"),
    "requests.memory": ("memory", "requests"),
    "limits.cpu": ("cpu", "limits"),
    "limits.memory": ("memory", "limits"),
}


def parse_quantity(text: Any) -> Decimal:
    """A Kubernetes quantity ('500m', '1.5Gi', '2', '1e3') as a number of base units."""
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        raise ValueError(f"quantities must match the regular expression: {text!r}")
    number = Decimal(match["number"])
    if match["exp"]:
        return number * Decimal(10) ** int(match["exp"][1:])
    suffix = match["suffix"] or ""
    return number * (_BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix])


def format_quantity(resource: str, value: Decimal) -> str:
    """Canonical-ish form: '500m' or '2' for CPU, '512Mi' for memory, '3' for counts."""
    if resource in _COMPUTE and _COMPUTE[resource][0] == "cpu":
        milli = value * 1000
        if milli == milli.to_integral_value() and milli % 1000:
            return f"{int(milli)}m"
    if resource in _COMPUTE and _COMPUTE[resource][0] == "memory" and value:
        for suffix, factor in reversed(_BINARY.items()):
            if value % factor == 0:
                return f"{int(value // factor)}{suffix}"
    return str(int(value)) if value == value.to_integral_value() else str(value.normalize())


def _live(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def _container_amount(container: Mapping[str, Any], name: str, kind: str) -> Any:
    resources = container.get("resources") or {}
    amount = (resources.get(kind) or {}).get(name)
    if amount is None and kind == "requests":  # requests default to limits
        amount = (resources.get("limits") or {}).get(name)
    return amount


def pod_usage(pod: Mapping[str, Any], resource: str) -> Decimal:
    if resource in _COUNTS:
        return Decimal(1)
    name, kind = _COMPUTE[resource]
    containers = (pod.get("spec") or {}).get("containers") or []
    return sum(
        (parse_quantity(a) for c in containers if (a := _container_amount(c, name, kind))),
        Decimal(0),
    )


def _unspecified(pod: Mapping[str, Any], resources: Iterable[str]) -> list[str]:
    """'limits.memory for: worker' for each constrained compute resource a container lacks."""
    missing = []
    containers = (pod.get("spec") or {}).get("containers") or []
    for resource in sorted(r for r in resources if r in _COMPUTE):
        name, kind = _COMPUTE[resource]
        lacking = [c["name"] for c in containers if _container_amount(c, name, kind) is None]
        if lacking:
            label = resource if "." in resource else f"{kind}.{resource}"
            missing.append(f"{label} for: {','.join(lacking)}")
    return missing


def _pretty(values: Mapping[str, Decimal]) -> str:
    return ",".join(f"{k}={format_quantity(k, v)}" for k, v in sorted(values.items()))


def refusal(
    pod: Mapping[str, Any],
    quotas: Iterable[Mapping[str, Any]],
    pods_in_namespace: Iterable[Mapping[str, Any]],
) -> str | None:
    """Why the ResourceQuota plugin refuses this new Pod (the text after 'is forbidden: '), or
    None when every quota of the namespace admits it."""
    live = [p for p in pods_in_namespace if _live(p)]
    for quota in sorted(quotas, key=lambda q: q["metadata"]["name"]):
        name = quota["metadata"]["name"]
        hard = {
            resource: parse_quantity(value)
            for resource, value in ((quota.get("spec") or {}).get("hard") or {}).items()
            if resource in _COUNTS or resource in _COMPUTE
        }
        missing = _unspecified(pod, hard)
        if missing:
            return f"failed quota: {name}: must specify {'; '.join(missing)}"
        requested, used, limited = {}, {}, {}
        for resource, limit in hard.items():
            asked = pod_usage(pod, resource)
            in_use = sum((pod_usage(p, resource) for p in live), Decimal(0))
            if asked and in_use + asked > limit:
                requested[resource], used[resource], limited[resource] = asked, in_use, limit
        if requested:
            return (
                f"exceeded quota: {name}, requested: {_pretty(requested)}, "
                f"used: {_pretty(used)}, limited: {_pretty(limited)}"
            )
    return None
