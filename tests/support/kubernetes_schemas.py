"""Kubernetes' own API schemas, offline: what the chart renders and the builders build is
checked against them, as an API server would check its types and field names.

The schemas are those of the `kubernetes-validate` package (pinned in constraints.txt): the JSON
schemas generated from each Kubernetes release's OpenAPI document, in their strict flavour, where
an unknown field is an error (a misspelt `nodeSelecter` fails). Objects are checked against the
oldest Kubernetes the chart supports (Chart.yaml's kubeVersion) and the newest the package
knows.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils as kubernetes_validate
from referencing import Registry, Resource

CHART_YAML = Path(__file__).resolve().parents[2] / "charts" / "lifeboat" / "Chart.yaml"


def _oldest_supported() -> str:
    kube_version = yaml.safe_load(CHART_YAML.read_text(encoding="utf-8"))["kubeVersion"]
    found = re.fullmatch(r">=\s*(\d+\.\d+)\.\d+(-0)?", kube_version)
    assert found, f"Chart.yaml kubeVersion {kube_version!r} is not '>=X.Y.Z-0'"
    return f"{found.group(1)}.0"


KUBERNETES_VERSIONS = (_oldest_supported(), kubernetes_validate.latest_version())


# Where the OpenAPI document says more than the API server checks: (last version, error pattern,
# why). In Kubernetes 1.26 podFailurePolicy rules declare onPodConditions without +optional,
# so the schema requires it, while the server takes a rule with onExitCodes alone (and refuses
# one that has both); 1.27 made the schema say so.
SCHEMA_QUIRKS: tuple[tuple[str, str, str], ...] = (
    (
        "1.26",
        r"spec\.(jobTemplate\.spec\.)?podFailurePolicy\.rules\.\d+: "
        r"'onPodConditions' is a required property",
        "onPodConditions was not marked optional before 1.27",
    ),
)


def _quirk(version: str, error: str) -> bool:
    major_minor = tuple(int(part) for part in version.split(".")[:2])
    return any(
        major_minor <= tuple(int(part) for part in last.split(".")) and re.search(pattern, error)
        for last, pattern, _ in SCHEMA_QUIRKS
    )


@cache
def _validator(kind: str, api_version: str, version: str) -> jsonschema.Draft202012Validator | None:
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    directory = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = kubernetes_validate.schema_contents(
            f"{directory}/{kind.lower()}-{group_version}.json", version
        )
    except FileNotFoundError:
        return None
    definitions = kubernetes_validate.schema_contents(f"{directory}/_definitions.json", version)
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def kubernetes_errors(obj: dict[str, Any], version: str) -> list[str]:
    """Every way `obj` breaks the schema of its kind in Kubernetes `version` ([]: none)."""
    validator = _validator(obj["kind"], obj["apiVersion"], version)
    if validator is None:
        return [f"Kubernetes {version} has no {obj['apiVersion']} {obj['kind']}"]
    name = f"{obj['kind']} {obj.get('metadata', {}).get('name')}"
    errors = (
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(obj)
    )
    return sorted(f"{name}: {error}" for error in errors if not _quirk(version, error))
