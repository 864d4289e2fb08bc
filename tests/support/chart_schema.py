"""The part of the chart's values.schema.json that the API models define: `worker.job`.

`worker.job` takes exactly what a Backup's `spec.job` takes for the pod (the model
`JobTemplateOptions`), so its JSON schema is generated from that model, as the CRDs are, and a
test keeps the committed file equal to it. After changing `lifeboat/api/job.py`:

    .venv/bin/python -m tests.support.chart_schema   # rewrites worker.job in values.schema.json

Everything else in values.schema.json is written by hand.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from lifeboat.api.job import JobTemplateOptions

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "charts" / "lifeboat" / "values.schema.json"
_DROPPED = {"title", "default", "$defs"}


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """`$ref`s inlined; titles, defaults (values.yaml has them) and Kubernetes-only keys
    (x-kubernetes-*: CEL rules, int-or-string) dropped: a plain JSON schema Helm can read."""
    if isinstance(node, list):
        return [_inline(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if ref is not None:
        target = copy.deepcopy(defs[ref.rsplit("/", 1)[-1]])
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return {
        key: _describe(value) if key == "description" else _inline(value, defs)
        for key, value in node.items()
        if key not in _DROPPED and not key.startswith("x-kubernetes-")
    }


def _describe(text: str) -> str:
    """A docstring as one line per paragraph, as the CRDs show it."""
    return "\n\n".join(" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip()))


def job_values_schema() -> dict[str, Any]:
    """The JSON schema of `worker.job`: JobTemplateOptions', null allowed where unset."""
    raw = JobTemplateOptions.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: dict[str, Any] = _inline(raw, defs)
    schema["description"] = (
        "What every Job's pod gets where a Backup's or Restore's spec.job says nothing: the "
        "fields of spec.job, with their meaning (kubectl explain backup.spec.job)."
    )
    return schema


def write() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    schema["properties"]["worker"]["properties"]["job"] = job_values_schema()
    SCHEMA_FILE.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write()
    print(f"wrote worker.job into {SCHEMA_FILE}")
