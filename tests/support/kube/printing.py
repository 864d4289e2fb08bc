"""Server-side printing: `meta.k8s.io/v1` Tables, as `kubectl get` asks for them."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace. Is required when creating resources, "
    "although some resources may allow a client to request the generation of an appropriate "
    "name automatically. Name is primarily intended for creation idempotence and configuration "
    "definition. Cannot be updated.",
    "priority": 0,
}
_AGE_COLUMN = {
    "name": "Age",
    "type": "string",
    "format": "",
    "description": "CreationTimestamp is a timestamp representing the server time when this "
    "object was created.",
    "priority": 0,
}

_SEGMENT = re.compile(
    r"""\.(?P<field>[A-Za-z0-9_\-$/]+)
      | \[(?P<index>-?\d+|\*)\]
      | \[['"](?P<quoted>[^'"]+)['"]\]
      | \[\?\(@\.(?P<fpath>[A-Za-z0-9_.\-]+)\s*(?P<fop>==|!=)\s*['"]?(?P<fvalue>[^'")]*)['"]?\)\]
    """,
    re.VERBOSE,
)


class JSONPathError(ValueError):
    pass


def jsonpath(path: str, obj: Any) -> list[Any]:
    """Evaluate the simple JSONPath subset used in printer columns and `kubectl wait`."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    values = [obj]
    pos = 0
    while pos < len(path):
        match = _SEGMENT.match(path, pos)
        if match is None:
            raise JSONPathError(f"unsupported JSONPath {path!r} at {path[pos:]!r}")
        pos = match.end()
        next_values: list[Any] = []
        for value in values:
            if match["field"] is not None or match["quoted"] is not None:
                key = match["field"] if match["field"] is not None else match["quoted"]
                if isinstance(value, Mapping) and key in value:
                    next_values.append(value[key])
            elif match["index"] is not None:
                if isinstance(value, list):
                    if match["index"] == "*":
                        next_values.extend(value)
                    elif -len(value) <= int(match["index"]) < len(value):
                        next_values.append(value[int(match["index"])])
                elif isinstance(value, Mapping) and match["index"] == "*":
                    next_values.extend(value.values())
            else:
                if isinstance(value, list):
                    for item in value:
                        found = jsonpath("." + match["fpath"], item)
                        text = _as_text(found[0]) if found else None
                        equal = text == match["fvalue"]
                        if equal == (match["fop"] == "=="):
                            next_values.append(item)
        values = next_values
    return values


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_time(value: str) -> datetime.datetime | None:
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def human_duration(seconds: float) -> str:
    """Go's `duration.HumanDuration`, as kubectl shows ages."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rest = secs % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d{rest}h" if rest else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y{rest}d" if rest else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def age(timestamp: Any) -> str:
    parsed = parse_time(timestamp) if isinstance(timestamp, str) else None
    if parsed is None:
        return "<unknown>"
    return human_duration((datetime.datetime.now(datetime.UTC) - parsed).total_seconds())


def _cell(column_type: str, value: Any) -> Any:
    match column_type:
        case "date":
            return age(value) if isinstance(value, str) else None
        case "integer":
            return value if isinstance(value, int) and not isinstance(value, bool) else None
        case "number":
            return value if isinstance(value, int | float) and not isinstance(value, bool) else None
        case "boolean":
            return value if isinstance(value, bool) else None
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, separators=(",", ":"))
    return _as_text(value)


Printer = Callable[[Mapping[str, Any]], list[Any]]


def crd_columns(
    printer_columns: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], Printer]:
    """Column definitions and the row printer for a CRD version's `additionalPrinterColumns`."""
    if not printer_columns:
        return [_NAME_COLUMN, _AGE_COLUMN], lambda obj: [
            age(obj["metadata"].get("creationTimestamp"))
        ]
    definitions = [_NAME_COLUMN] + [
        {
            "name": column["name"],
            "type": "string" if column["type"] == "date" else column["type"],
            "format": column.get("format", "date" if column["type"] == "date" else ""),
            "description": column.get("description", ""),
            "priority": column.get("priority", 0),
        }
        for column in printer_columns
    ]

    def printer(obj: Mapping[str, Any]) -> list[Any]:
        cells = []
        for column in printer_columns:
            found = jsonpath(column["jsonPath"], obj)
            cells.append(_cell(column["type"], found[0]) if found else None)
        return cells

    return definitions, printer


def _column(name: str, priority: int = 0, ctype: str = "string") -> dict[str, Any]:
    return {"name": name, "type": ctype, "format": "", "description": "", "priority": priority}


def _pod_cells(pod: Mapping[str, Any]) -> list[Any]:
    status = pod.get("status") or {}
    containers = (pod.get("spec") or {}).get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    reason = status.get("reason") or status.get("phase") or "Pending"
    for cstatus in statuses:
        state = cstatus.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(s.get("restartCount", 0) for s in statuses)
    return [
        f"{ready}/{len(containers)}",
        reason,
        restarts,
        age(pod["metadata"].get("creationTimestamp")),
    ]


def _job_cells(job: Mapping[str, Any]) -> list[Any]:
    status = job.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Complete") == "True":
        state = "Complete"
    elif conditions.get("Failed") == "True":
        state = "Failed"
    elif conditions.get("FailureTarget") == "True":
        state = "FailureTarget"
    elif conditions.get("SuccessCriteriaMet") == "True":
        state = "SuccessCriteriaMet"
    elif (job.get("spec") or {}).get("suspend"):
        state = "Suspended"
    else:
        state = "Running"
    completions = (job.get("spec") or {}).get("completions", 1)
    duration = ""
    start = parse_time(status.get("startTime", "")) if status.get("startTime") else None
    if start is not None:
        end = parse_time(status["completionTime"]) if status.get("completionTime") else None
        end = end or datetime.datetime.now(datetime.UTC)
        duration = human_duration((end - start).total_seconds())
    return [
        state,
        f"{status.get('succeeded', 0)}/{completions}",
        duration,
        age(job["metadata"].get("creationTimestamp")),
    ]


def _event_cells(event: Mapping[str, Any]) -> list[Any]:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    last = (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event["metadata"].get("creationTimestamp")
    )
    obj = f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}"
    return [
        age(last),
        event.get("type", ""),
        event.get("reason", ""),
        obj,
        event.get("message") or event.get("note") or "",
    ]


_BUILTIN_PRINTERS: dict[tuple[str, str], tuple[list[dict[str, Any]], Printer]] = {
    ("", "pods"): (
        [
            _NAME_COLUMN,
            _column("Ready"),
            _column("Status"),
            _column("Restarts", ctype="integer"),
            _column("Age"),
        ],
        _pod_cells,
    ),
    ("batch", "jobs"): (
        [
            _NAME_COLUMN,
            _column("Status"),
            _column("Completions"),
            _column("Duration"),
            _column("Age"),
        ],
        _job_cells,
    ),
    ("", "events"): (
        [
            _column("Last Seen"),
            _column("Type"),
            _column("Reason"),
            _column("Object"),
            _column("Message"),
        ],
        _event_cells,
    ),
    ("", "namespaces"): (
        [_NAME_COLUMN, _column("Status"), _column("Age")],
        lambda ns: [
            (ns.get("status") or {}).get("phase", "Active"),
            age(ns["metadata"].get("creationTimestamp")),
        ],
    ),
}


def builtin_columns(group: str, plural: str) -> tuple[list[dict[str, Any]], Printer]:
    if (group, plural) in _BUILTIN_PRINTERS:
        return _BUILTIN_PRINTERS[group, plural]
    return [_NAME_COLUMN, _AGE_COLUMN], lambda obj: [age(obj["metadata"].get("creationTimestamp"))]


def table(
    columns: tuple[list[dict[str, Any]], Printer],
    objects: Sequence[Mapping[str, Any]],
    *,
    resource_version: str,
    include_object: str = "Metadata",
    continue_token: str | None = None,
) -> dict[str, Any]:
    definitions, printer = columns
    has_name = definitions[0] is _NAME_COLUMN
    rows = []
    for obj in objects:
        cells = ([obj["metadata"]["name"]] if has_name else []) + printer(obj)
        row: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    }
