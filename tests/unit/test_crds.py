"""The generated CRDs: committed, structural, documented, and as strict as the models.

Manifests are checked the way an API server would: defaults applied, then the OpenAPI schema
(with jsonschema), then the CEL rules (with the test server's evaluator, cross-checked with
cel-python when it is installed); and the models must agree with the schema on every case.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from lifeboat.api import Backup, BackupSchedule, BackupSpec, Restore
from lifeboat.api.backup import BACKUP_IMMUTABLE_RULE, BACKUP_MUTABLE_FIELDS
from lifeboat.api.common import describe_validation_error
from lifeboat.api.crd import (
    BACKUP_CRD_NAME,
    BACKUP_PLURAL,
    DRILL_PLURAL,
    GROUP,
    RESTORE_CRD_NAME,
    RESTORE_PLURAL,
    VERSION,
    crds,
    render_crds,
    write_crds,
)
from lifeboat.api.database import DATABASE_RULES
from lifeboat.api.job import TOLERATION_RULES
from lifeboat.api.restore import RESTORE_SPEC_RULES
from lifeboat.api.schedule import SCHEDULE_PLURAL
from lifeboat.api.storage import STORAGE_RULES
from lifeboat.api.store import STORE_PLURAL, BackupStore
from lifeboat.controller.slots import InvalidSchedule, Schedule
from tests.support.kube.cel import Program

try:  # optional: a full CEL implementation to cross-check the test server's evaluator
    import celpy  # type: ignore[import-untyped, unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    celpy = None

CRDS_DIR = Path(__file__).resolve().parents[2] / "crds"

ISSUE_MANIFESTS = """
apiVersion: lifeboat.dev/v1alpha1
kind: Backup
metadata: {name: shop-db, namespace: shop}
spec:
  database:
    engine: postgresql            # postgresql | mysql | mariadb | sqlite
    host: postgres.shop.svc
    port: 5432
    name: shop
    user: backup
    passwordSecretRef: {name: shop-db, key: password}
  storage:
    s3:
      bucket: backups
      prefix: shop/
      endpoint: http://minio.storage.svc:9000
      region: us-east-1
      credentialsSecretRef: {name: s3-credentials}   # keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
  compression: zstd
  deletionPolicy: Delete
---
apiVersion: lifeboat.dev/v1alpha1
kind: Restore
metadata: {name: shop-db-restore, namespace: shop}
spec:
  backupRef: {name: shop-db}
"""
ISSUE_BACKUP, ISSUE_RESTORE = yaml.safe_load_all(ISSUE_MANIFESTS)

# -- an API server's checks, in miniature -----------------------------------------------------


def open_api_schema(plural: str) -> dict[str, Any]:
    version = crds()[f"{plural}.{GROUP}.yaml"]["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def to_json_schema(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes flavour) -> JSON Schema: `nullable` becomes a null type."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: to_json_schema(value)
        for key, value in node.items()
        if not key.startswith("x-kubernetes-") and key != "nullable"
    }
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        elif "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    return out


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """Server-side defaulting: fill absent properties that have a default, at every depth."""
    if isinstance(value, dict):
        value = dict(value)
        for name, prop in schema.get("properties", {}).items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                value[name] = apply_defaults(prop, value[name])
        if isinstance(schema.get("additionalProperties"), dict):
            for key in value:
                value[key] = apply_defaults(schema["additionalProperties"], value[key])
    elif isinstance(value, list) and "items" in schema:
        value = [apply_defaults(schema["items"], item) for item in value]
    return value


def evaluate_rule(rule: str, variables: dict[str, Any]) -> bool:
    """Run a CEL rule with the test server's evaluator and, when installed, with cel-python (a
    full CEL implementation): both must agree, so the test server judges our rules right."""
    result = Program(rule).evaluate(variables)
    assert isinstance(result, bool), f"{rule} -> {result!r}"
    if celpy is not None:
        env = celpy.Environment()
        activation = {name: celpy.json_to_cel(value) for name, value in variables.items()}
        reference = env.program(env.compile(rule)).evaluate(activation)
        assert bool(reference) is result, f"cel-python says {reference} for {rule} on {variables}"
    return result


def cel_failures(schema: dict[str, Any], value: Any, old: Any = None, path: str = "") -> list[str]:
    """Evaluate every x-kubernetes-validations rule that applies to `value` (and `old`)."""
    failures = []
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"] and old is None:
            continue  # transition rules run on updates only, where an old value exists
        variables = {"self": value} if old is None else {"self": value, "oldSelf": old}
        if not evaluate_rule(rule["rule"], variables):
            failures.append(f"{path or '<root>'}: {rule['message']}")
    if isinstance(value, dict):
        old_map = old if isinstance(old, dict) else {}
        for name, prop in schema.get("properties", {}).items():
            if name in value:
                failures += cel_failures(prop, value[name], old_map.get(name), f"{path}.{name}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            failures += cel_failures(schema["items"], item, None, f"{path}[{index}]")
    return failures


def api_server_errors(
    plural: str, obj: dict[str, Any], old: dict[str, Any] | None = None
) -> list[str]:
    """What `kubectl apply` would print for `obj`, or [] when it would be accepted."""
    schema = open_api_schema(plural)
    obj = apply_defaults(schema, obj)
    validator = jsonschema.Draft7Validator(to_json_schema(schema))
    errors = [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(obj)
    ]
    if errors:
        return errors
    if old is not None:
        old = apply_defaults(schema, old)
    return cel_failures(schema, obj, old)


def walk(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path."""
    if isinstance(node, dict):
        yield path, node
        for name, prop in node.get("properties", {}).items():
            yield from walk(prop, f"{path}.{name}")
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                yield from walk(node[key], f"{path}[{key}]")
        for index, branch in enumerate(node.get("anyOf", [])):
            yield from walk(branch, f"{path}<anyOf {index}>")


def edited(obj: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of obj with the dotted path set to value (or removed when value is ...)."""
    obj = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node = obj
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return obj


SQLITE_BACKUP = edited(
    edited(
        ISSUE_BACKUP,
        "spec.database",
        {"engine": "sqlite", "persistentVolumeClaim": "app-data", "path": "data/app.db"},
    ),
    "spec.storage",
    {"volume": {"persistentVolumeClaim": "backups", "path": "shop"}},
)
SOURCE_RESTORE = edited(
    edited(
        ISSUE_RESTORE,
        "spec",
        {"source": {"storage": ISSUE_BACKUP["spec"]["storage"], "path": "shop-db-3f2a"}},
    ),
    "spec.target",
    ISSUE_BACKUP["spec"]["database"],
)

# -- the committed files ----------------------------------------------------------------------


def test_committed_crds_equal_the_generated_ones() -> None:
    for name, text in render_crds().items():
        path = CRDS_DIR / name
        assert path.exists(), f"{path} is missing: run make crds"
        assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run make crds"
    assert sorted(p.name for p in CRDS_DIR.glob("*.lifeboat.dev.yaml")) == sorted(render_crds())


def test_rendering_is_deterministic_and_parses_back() -> None:
    first, second = render_crds(), render_crds()
    assert first == second
    for name, text in first.items():
        assert text.startswith("# Generated by `make crds`")
        assert yaml.safe_load(text) == crds()[name]


def test_write_crds_writes_every_file(tmp_path: Path) -> None:
    written = write_crds(tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(
        [
            f"{BACKUP_CRD_NAME}.yaml",
            f"{RESTORE_CRD_NAME}.yaml",
            f"{SCHEDULE_PLURAL}.{GROUP}.yaml",
            f"{STORE_PLURAL}.{GROUP}.yaml",
            f"{DRILL_PLURAL}.{GROUP}.yaml",
        ]
    )
    for path in written:
        assert path.read_text(encoding="utf-8") == render_crds()[path.name]


# -- the shape of the CRDs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plural", "kind", "short_name"),
    [
        (BACKUP_PLURAL, "Backup", "lbb"),
        (RESTORE_PLURAL, "Restore", "lbr"),
        (SCHEDULE_PLURAL, "BackupSchedule", "lbs"),
        (STORE_PLURAL, "BackupStore", "lbst"),
        (DRILL_PLURAL, "RestoreDrill", "lbd"),
    ],
)
def test_names_scope_and_version(plural: str, kind: str, short_name: str) -> None:
    crd = crds()[f"{plural}.{GROUP}.yaml"]
    assert crd["metadata"]["name"] == f"{plural}.{GROUP}"
    spec = crd["spec"]
    assert spec["group"] == GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "shortNames": [short_name],
        "categories": ["lifeboat"],  # not "all": `kubectl delete all --all` must spare them
    }
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == (VERSION, True, True)
    assert version["subresources"] == {"status": {}}
    assert version["schema"]["openAPIV3Schema"]["required"] == ["spec"]


ALL_PLURALS = [BACKUP_PLURAL, RESTORE_PLURAL, SCHEDULE_PLURAL, STORE_PLURAL, DRILL_PLURAL]


@pytest.mark.parametrize("plural", ALL_PLURALS)
def test_every_property_at_every_depth_has_a_description(plural: str) -> None:
    undocumented = [
        f"{path}.{name}"
        for path, node in walk(open_api_schema(plural))
        for name, prop in node.get("properties", {}).items()
        if not prop.get("description", "").strip()
    ]
    assert undocumented == []


@pytest.mark.parametrize("plural", ALL_PLURALS)
def test_schema_is_structural(plural: str) -> None:
    for path, node in walk(open_api_schema(plural)):
        assert "$ref" not in node, path
        assert "$defs" not in node, path
        assert "title" not in node, path
        assert "readOnly" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        assert node.get("default", "no default") is not None, path
        if "anyOf" in node:
            assert {"type": "null"} not in node["anyOf"], path
            assert node.get("x-kubernetes-int-or-string") is True, path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        elif "<anyOf" not in path:
            assert "type" in node, f"{path} has no type"
        if "required" in node:
            assert set(node["required"]) <= set(node["properties"]), path


def test_optional_fields_are_nullable_and_required_ones_are_not() -> None:
    spec = open_api_schema(BACKUP_PLURAL)["properties"]["spec"]
    assert "nullable" not in spec
    assert "nullable" not in spec["properties"]["database"]
    assert "nullable" not in spec["properties"]["database"]["properties"]["engine"]
    assert spec["properties"]["database"]["properties"]["port"]["nullable"] is True
    assert spec["properties"]["job"]["nullable"] is True


def test_defaults_are_kept() -> None:
    backup = open_api_schema(BACKUP_PLURAL)["properties"]["spec"]["properties"]
    assert backup["compression"]["default"] == "zstd"
    assert backup["deletionPolicy"]["default"] == "Retain"
    s3 = backup["storage"]["properties"]["s3"]["properties"]
    credentials = s3["credentialsSecretRef"]["properties"]
    assert credentials["accessKeyIdKey"]["default"] == "AWS_ACCESS_KEY_ID"
    assert credentials["secretAccessKeyKey"]["default"] == "AWS_SECRET_ACCESS_KEY"
    restore = open_api_schema(RESTORE_PLURAL)["properties"]["spec"]["properties"]
    assert restore["keepExtraObjects"]["default"] is False
    assert restore["verifyChecksumFirst"]["default"] is True


def test_enums_patterns_and_bounds_are_kept() -> None:
    database = open_api_schema(BACKUP_PLURAL)["properties"]["spec"]["properties"]["database"]
    props = database["properties"]
    assert props["engine"]["enum"] == ["postgresql", "mysql", "mariadb", "sqlite"]
    assert (props["port"]["minimum"], props["port"]["maximum"]) == (1, 65535)
    assert props["passwordSecretRef"]["properties"]["name"]["pattern"].startswith("^[a-z0-9]")
    assert database["required"] == ["engine"]


def test_status_declares_every_field_the_writers_send() -> None:
    status = open_api_schema(BACKUP_PLURAL)["properties"]["status"]
    progress = status["properties"]["progress"]
    assert "percentText" in progress["properties"]
    assert "required" not in progress  # computed, yet absent from what a reader may send
    assert "sizeText" in status["properties"]["artifact"]["properties"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["required"] == ["type", "status", "reason", "lastTransitionTime"]
    restore = open_api_schema(RESTORE_PLURAL)["properties"]["status"]["properties"]
    assert set(restore["verification"]["properties"]) >= {
        "checksumVerified",
        "rowCountsMatched",
        "mismatches",
    }


# -- CEL rules --------------------------------------------------------------------------------


def rules_at(schema: dict[str, Any], *path: str) -> list[dict[str, str]]:
    node = schema
    for name in path:
        node = node["properties"][name]
    rules: list[dict[str, str]] = node["x-kubernetes-validations"]
    return rules


def test_cel_rules_are_attached_with_their_messages() -> None:
    backup = open_api_schema(BACKUP_PLURAL)
    assert rules_at(backup, "spec") == [BACKUP_IMMUTABLE_RULE.as_schema()]
    assert rules_at(backup, "spec", "database") == [r.as_schema() for r in DATABASE_RULES]
    assert rules_at(backup, "spec", "storage") == [r.as_schema() for r in STORAGE_RULES]
    tolerations = backup["properties"]["spec"]["properties"]["job"]["properties"]["tolerations"]
    assert tolerations["items"]["x-kubernetes-validations"] == [
        r.as_schema() for r in TOLERATION_RULES
    ]
    restore = open_api_schema(RESTORE_PLURAL)
    assert rules_at(restore, "spec") == [r.as_schema() for r in RESTORE_SPEC_RULES]
    assert rules_at(restore, "spec", "target") == [r.as_schema() for r in DATABASE_RULES]
    assert rules_at(restore, "spec", "source", "storage") == [r.as_schema() for r in STORAGE_RULES]
    assert "create a new Backup" in BACKUP_IMMUTABLE_RULE.message
    assert "create a new Restore" in RESTORE_SPEC_RULES[0].message
    assert RESTORE_SPEC_RULES[0].rule == "self == oldSelf"


def test_backup_immutability_rule_covers_every_spec_field_but_deletion_policy() -> None:
    aliases = {field.alias or name for name, field in BackupSpec.model_fields.items()}
    for alias in aliases - BACKUP_MUTABLE_FIELDS:
        assert f"self.{alias} == oldSelf.{alias}" in BACKUP_IMMUTABLE_RULE.rule, alias
    for alias in BACKUP_MUTABLE_FIELDS:
        assert alias not in BACKUP_IMMUTABLE_RULE.rule


# -- printer columns --------------------------------------------------------------------------


def columns(plural: str) -> dict[str, dict[str, Any]]:
    version = crds()[f"{plural}.{GROUP}.yaml"]["spec"]["versions"][0]
    return {column["name"]: column for column in version["additionalPrinterColumns"]}


def json_path_exists(schema: dict[str, Any], json_path: str) -> bool:
    node = schema
    for name in json_path.lstrip(".").split("."):
        if name == "metadata":
            return True
        if name not in node.get("properties", {}):
            return False
        node = node["properties"][name]
    return True


@pytest.mark.parametrize(
    ("plural", "expected"),
    [
        (
            BACKUP_PLURAL,
            {
                "Phase": (".status.phase", "string", 0),
                "Progress": (".status.progress.percentText", "string", 0),
                "Size": (".status.artifact.sizeText", "string", 0),
                "Age": (".metadata.creationTimestamp", "date", 0),
                "Engine": (".spec.database.engine", "string", 1),
                "Database": (".status.database", "string", 1),
                "Job": (".status.jobName", "string", 1),
                "Message": (".status.message", "string", 1),
            },
        ),
        (
            RESTORE_PLURAL,
            {
                "Phase": (".status.phase", "string", 0),
                "Progress": (".status.progress.percentText", "string", 0),
                "Age": (".metadata.creationTimestamp", "date", 0),
                "Backup": (".status.resolvedBackup", "string", 1),
                "Engine": (".status.engine", "string", 1),
                "Database": (".status.database", "string", 1),
                "Job": (".status.jobName", "string", 1),
                "Message": (".status.message", "string", 1),
            },
        ),
        (
            DRILL_PLURAL,
            {
                "Phase": (".status.phase", "string", 0),
                "Progress": (".status.progress.percentText", "string", 0),
                "Backup": (".status.resolvedBackup", "string", 0),
                "Restore Seconds": (".status.report.restoreSeconds", "number", 0),
                "Rows": (".status.report.rowsVerified", "integer", 0),
                "Age": (".metadata.creationTimestamp", "date", 0),
                "Engine": (".status.engine", "string", 1),
                "Drill Database": (".status.database", "string", 1),
                "Failed Check": (".status.report.failedCheck", "string", 1),
                "Job": (".status.jobName", "string", 1),
                "Message": (".status.message", "string", 1),
            },
        ),
    ],
)
def test_printer_columns(plural: str, expected: dict[str, tuple[str, str, int]]) -> None:
    found = columns(plural)
    assert {
        name: (c["jsonPath"], c["type"], c.get("priority", 0)) for name, c in found.items()
    } == expected
    schema = open_api_schema(plural)
    for column in found.values():
        assert json_path_exists(schema, column["jsonPath"]), column


# -- the issue's manifests, and bad ones ------------------------------------------------------


def test_issue_manifests_are_accepted() -> None:
    assert api_server_errors(BACKUP_PLURAL, ISSUE_BACKUP) == []
    assert api_server_errors(RESTORE_PLURAL, ISSUE_RESTORE) == []
    Backup.model_validate(ISSUE_BACKUP)
    Restore.model_validate(ISSUE_RESTORE)


def test_server_defaults_match_the_models_defaults() -> None:
    schema = open_api_schema(RESTORE_PLURAL)
    defaulted = apply_defaults(schema, ISSUE_RESTORE)["spec"]
    assert defaulted == Restore.model_validate(ISSUE_RESTORE).spec.to_api_dict()
    schema = open_api_schema(BACKUP_PLURAL)
    defaulted = apply_defaults(schema, ISSUE_BACKUP)["spec"]
    assert defaulted == Backup.model_validate(ISSUE_BACKUP).spec.to_api_dict()


JOB_POD_OPTIONS: dict[str, Any] = {
    "podAnnotations": {"sidecar.istio.io/inject": "false", "example.com/note": "a: b {c}"},
    "podLabels": {"team": "db", "app.example.com/tier": ""},
    "priorityClassName": "backup-critical",
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "topology.kubernetes.io/zone",
                                "operator": "In",
                                "values": ["a"],
                            },
                            {"key": "spot", "operator": "DoesNotExist"},
                            {"key": "cores", "operator": "Gt", "values": ["3"]},
                        ]
                    },
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "preference": {
                        "matchExpressions": [
                            {"key": "disk", "operator": "NotIn", "values": ["hdd"]}
                        ]
                    },
                }
            ],
        },
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "postgres"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 1,
                    "podAffinityTerm": {
                        "labelSelector": {
                            "matchExpressions": [{"key": "role", "operator": "Exists"}]
                        },
                        "namespaceSelector": {},
                        "namespaces": ["shop"],
                        "topologyKey": "topology.kubernetes.io/zone",
                    },
                }
            ]
        },
    },
}
NODE_TERM = "spec.job.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"


def node_requirement(requirement: dict[str, Any]) -> dict[str, Any]:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [requirement]}]
            }
        }
    }


def pod_term(term: dict[str, Any]) -> dict[str, Any]:
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}


GOOD = [
    pytest.param(BACKUP_PLURAL, SQLITE_BACKUP, id="sqlite-to-volume"),
    pytest.param(
        BACKUP_PLURAL,
        edited(ISSUE_BACKUP, "spec.storage.s3.credentialsSecretRef", ...),
        id="s3-with-ambient-credentials",
    ),
    pytest.param(
        BACKUP_PLURAL,
        edited(
            ISSUE_BACKUP,
            "spec.job",
            {
                "image": "registry.local/lifeboat:1.0",
                "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": 2}},
                "nodeSelector": {"kubernetes.io/arch": "amd64"},
                "tolerations": [
                    {
                        "key": "dedicated",
                        "operator": "Equal",
                        "value": "db",
                        "effect": "NoSchedule",
                    },
                    {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
                ],
                "serviceAccountName": "backup-writer",
                "activeDeadlineSeconds": 3600,
                "backoffLimit": 2,
                "ttlSecondsAfterFinished": 86400,
            },
        ),
        id="job-tuning",
    ),
    pytest.param(BACKUP_PLURAL, edited(ISSUE_BACKUP, "spec.job", JOB_POD_OPTIONS), id="job-pod"),
    pytest.param(RESTORE_PLURAL, SOURCE_RESTORE, id="restore-from-source"),
    pytest.param(
        RESTORE_PLURAL,
        edited(ISSUE_RESTORE, "spec.target", SQLITE_BACKUP["spec"]["database"]),
        id="restore-into-other-target",
    ),
]


@pytest.mark.parametrize(("plural", "manifest"), GOOD)
def test_good_manifests_are_accepted_by_schema_and_models(
    plural: str, manifest: dict[str, Any]
) -> None:
    assert api_server_errors(plural, manifest) == []
    (Backup if plural == BACKUP_PLURAL else Restore).model_validate(manifest)


BAD = [
    pytest.param(BACKUP_PLURAL, "spec.database.engine", "oracle", "engine", id="engine-oracle"),
    pytest.param(
        BACKUP_PLURAL,
        "spec.storage.volume",
        {"persistentVolumeClaim": "backups"},
        "exactly one storage backend",
        id="both-storage-backends",
    ),
    pytest.param(BACKUP_PLURAL, "spec.storage.s3", ..., "exactly one", id="no-storage-backend"),
    pytest.param(BACKUP_PLURAL, "spec.storage.s3.bucket", ..., "bucket", id="missing-bucket"),
    pytest.param(BACKUP_PLURAL, "spec.storage.s3.bucket", "s3://b", "bucket", id="bucket-url"),
    pytest.param(BACKUP_PLURAL, "spec.database.port", -1, "port", id="negative-port"),
    pytest.param(BACKUP_PLURAL, "spec.compression", "lz4", "compression", id="bad-compression"),
    pytest.param(BACKUP_PLURAL, "spec.deletionPolicy", "delete", "deletionPolicy", id="lc-policy"),
    pytest.param(BACKUP_PLURAL, "spec.database.host", ..., "need host", id="no-host"),
    pytest.param(
        BACKUP_PLURAL, "spec.database.engine", "sqlite", "sqlite needs", id="sqlite-no-file"
    ),
    pytest.param(
        BACKUP_PLURAL,
        "spec.database.persistentVolumeClaim",
        "data",
        "persistentVolumeClaim and path are for sqlite",
        id="postgres-with-pvc",
    ),
    pytest.param(
        BACKUP_PLURAL,
        "spec.database.passwordSecretRef.name",
        "Shop_DB",
        "name",
        id="bad-secret-name",
    ),
    pytest.param(BACKUP_PLURAL, "spec.job.resources.requests.cpu", "lots", "cpu", id="bad-cpu"),
    pytest.param(BACKUP_PLURAL, "spec.job.backoffLimit", -1, "backoffLimit", id="neg-backoff"),
    pytest.param(
        BACKUP_PLURAL,
        "spec.job.tolerations",
        [{"operator": "Exists", "value": "x"}],
        "remove value",
        id="toleration-exists-with-value",
    ),
    pytest.param(
        BACKUP_PLURAL,
        "spec.job.affinity",
        node_requirement({"key": "zone", "operator": "In"}),
        "In and NotIn need at least one value",
        id="node-in-without-values",
    ),
    pytest.param(
        BACKUP_PLURAL,
        "spec.job.affinity",
        node_requirement({"key": "zone", "operator": "Exists", "values": ["a"]}),
        "Exists and DoesNotExist take no values",
        id="node-exists-with-values",
    ),
    pytest.param(
        BACKUP_PLURAL,
        "spec.job.affinity",
        node_requirement({"key": "cores", "operator": "Lt", "values": ["many"]}),
        "exactly one value, an integer",
        id="node-lt-not-an-integer",
    ),
    pytest.param(
        BACKUP_PLURAL,
        "spec.job.affinity",
        node_requirement({"key": "zone", "operator": "Near", "values": ["a"]}),
        "operator",
        id="node-unknown-operator",
    ),
    pytest.param(
        BACKUP_PLURAL,
        "spec.job.affinity",
        {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}
            }
        },
        "nodeSelectorTerms",
        id="no-node-selector-terms",
    ),
    pytest.param(
        BACKUP_PLURAL,
        "spec.job.affinity",
        pod_term(
            {
                "labelSelector": {"matchExpressions": [{"key": "a", "operator": "NotIn"}]},
                "topologyKey": "kubernetes.io/hostname",
            }
        ),
        "In and NotIn need at least one value",
        id="pod-selector-notin-without-values",
    ),
    pytest.param(
        BACKUP_PLURAL,
        "spec.job.affinity",
        pod_term({"labelSelector": {"matchLabels": {"app": "db"}}}),
        "topologyKey",
        id="pod-term-without-topology",
    ),
    pytest.param(
        BACKUP_PLURAL,
        "spec.job.affinity",
        {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 101, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}
                ]
            }
        },
        "weight",
        id="weight-over-100",
    ),
    pytest.param(
        BACKUP_PLURAL, "spec.job.podLabels", {"team": "db ops"}, "podLabels", id="label-value"
    ),
    pytest.param(
        BACKUP_PLURAL, "spec.job.podAnnotations", {"a": 1}, "podAnnotations", id="annotation-int"
    ),
    pytest.param(
        BACKUP_PLURAL,
        "spec.job.priorityClassName",
        "Critical",
        "priorityClassName",
        id="priority-class-name",
    ),
    pytest.param(
        BACKUP_PLURAL,
        "spec.job.ttlSecondsAfterFinished",
        -1,
        "ttlSecondsAfterFinished",
        id="negative-ttl",
    ),
    pytest.param(BACKUP_PLURAL, "spec.database", ..., "database", id="no-database"),
    pytest.param(RESTORE_PLURAL, "spec.backupRef", ..., "exactly one of backupRef", id="neither"),
    pytest.param(
        RESTORE_PLURAL,
        "spec.source",
        SOURCE_RESTORE["spec"]["source"],
        "exactly one of backupRef",
        id="backup-ref-and-source",
    ),
    pytest.param(RESTORE_PLURAL, "spec.backupRef.name", "", "name", id="empty-backup-name"),
    pytest.param(RESTORE_PLURAL, "spec.dryRun", {"on": 1}, "dryRun", id="dry-run-not-a-boolean"),
    pytest.param(
        RESTORE_PLURAL,
        "spec.target",
        {**SQLITE_BACKUP["spec"]["database"]},
        "noOwner and noPrivileges are postgresql options",
        id="no-owner-for-sqlite",
    ),
]


@pytest.mark.parametrize(("plural", "path", "value", "expected"), BAD)
def test_bad_manifests_are_rejected_by_schema_and_models(
    plural: str, path: str, value: Any, expected: str
) -> None:
    base = ISSUE_BACKUP if plural == BACKUP_PLURAL else ISSUE_RESTORE
    if "noOwner" in expected:
        base = edited(ISSUE_RESTORE, "spec.noOwner", True)
    manifest = edited(base, path, value)
    errors = api_server_errors(plural, manifest)
    assert errors, f"the API server would accept {path}={value!r}"
    assert any(expected in error for error in errors), errors
    with pytest.raises(ValidationError):
        (Backup if plural == BACKUP_PLURAL else Restore).model_validate(manifest)


def test_bad_pod_label_and_annotation_keys_are_refused_by_the_operator_with_the_field_named() -> (
    None
):
    """A CRD schema cannot check map keys without costly CEL; the model does, so the operator
    fails such a Backup with the field named before it builds a Job the API server would
    refuse."""
    for field, value in (("podLabels", {"-team": "db"}), ("podAnnotations", {"a/b/c": "x"})):
        manifest = edited(ISSUE_BACKUP, "spec.job", {field: value})
        assert api_server_errors(BACKUP_PLURAL, manifest) == []
        with pytest.raises(ValidationError) as refused:
            Backup.model_validate(manifest)
        assert describe_validation_error(refused.value).startswith(f"spec.job.{field}: "), field


def test_restore_from_source_needs_a_target() -> None:
    manifest = edited(SOURCE_RESTORE, "spec.target", ...)
    assert api_server_errors(RESTORE_PLURAL, manifest) == [
        ".spec: target is required with source: there is no Backup to take the database from"
    ]
    with pytest.raises(ValidationError, match="target is required with source"):
        Restore.model_validate(manifest)


# -- immutability -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.database.host", "postgres-2.shop.svc"),
        ("spec.storage.s3.bucket", "other"),
        ("spec.compression", "gzip"),
        ("spec.job", {"backoffLimit": 1}),
    ],
)
def test_backup_spec_cannot_change(path: str, value: Any) -> None:
    errors = api_server_errors(BACKUP_PLURAL, edited(ISSUE_BACKUP, path, value), old=ISSUE_BACKUP)
    assert errors == [f".spec: {BACKUP_IMMUTABLE_RULE.message}"]


def test_backup_deletion_policy_can_change_and_unchanged_updates_pass() -> None:
    retain = edited(ISSUE_BACKUP, "spec.deletionPolicy", "Retain")
    assert api_server_errors(BACKUP_PLURAL, retain, old=ISSUE_BACKUP) == []
    labelled = edited(ISSUE_BACKUP, "metadata.labels", {"team": "shop"})
    assert api_server_errors(BACKUP_PLURAL, labelled, old=ISSUE_BACKUP) == []
    # Defaults written by the server do not count as a change.
    defaulted = edited(ISSUE_BACKUP, "spec.compression", ...)
    assert api_server_errors(BACKUP_PLURAL, defaulted, old=ISSUE_BACKUP) == []


def test_dry_run_and_owner_options_are_accepted_for_postgresql() -> None:
    manifest = edited(
        edited(edited(ISSUE_RESTORE, "spec.dryRun", True), "spec.noOwner", True),
        "spec.noPrivileges",
        True,
    )
    assert api_server_errors(RESTORE_PLURAL, manifest) == []
    spec = Restore.model_validate(manifest).spec
    assert (spec.dry_run, spec.no_owner, spec.no_privileges) == (True, True, True)


def test_restore_spec_cannot_change() -> None:
    for path in ("spec.keepExtraObjects", "spec.dryRun", "spec.noOwner"):
        changed = edited(ISSUE_RESTORE, path, True)
        assert api_server_errors(RESTORE_PLURAL, changed, old=ISSUE_RESTORE) == [
            f".spec: {RESTORE_SPEC_RULES[0].message}"
        ]
    assert api_server_errors(RESTORE_PLURAL, ISSUE_RESTORE, old=ISSUE_RESTORE) == []


# -- status written by the models is accepted by the schema -----------------------------------


def test_status_written_by_the_models_validates() -> None:
    backup = Backup.model_validate(ISSUE_BACKUP)
    backup.status = backup.status.model_validate(
        {
            "phase": "Completed",
            "progress": {"percent": 100, "bytesDone": 10, "updatedAt": "2025-01-01T00:00:00Z"},
            "jobName": "shop-db-backup-3f2a",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "BackupCompleted",
                    "lastTransitionTime": "2025-01-01T00:00:00Z",
                }
            ],
            "artifact": {"uri": "s3://backups/shop/x", "size": 2048, "sha256": "0" * 64},
        }
    )
    body = backup.to_api_dict()
    assert body["status"]["progress"]["percentText"] == "100%"
    assert body["status"]["artifact"]["sizeText"] == "2.0 KiB"
    assert api_server_errors(BACKUP_PLURAL, body) == []


# -- BackupSchedule and Restore by schedule ---------------------------------------------------

SCHEDULE = {
    "apiVersion": "lifeboat.dev/v1alpha1",
    "kind": "BackupSchedule",
    "metadata": {"name": "nightly", "namespace": "shop"},
    "spec": {
        "schedule": "0 2 * * *",
        "timeZone": "Europe/Berlin",
        "template": ISSUE_BACKUP["spec"],
        "retention": {"keepDaily": 7, "keepWeekly": 4, "keepMonthly": 6, "maxAge": "2160h"},
    },
}
SCHEDULE_RESTORE = edited(ISSUE_RESTORE, "spec", {"scheduleRef": {"name": "nightly"}})


@pytest.mark.parametrize(
    "manifest",
    [
        pytest.param(SCHEDULE, id="gfs"),
        pytest.param(edited(SCHEDULE, "spec.schedule", "@daily"), id="macro"),
        pytest.param(edited(SCHEDULE, "spec.schedule", " */15  *  * * 1-5 "), id="spaced"),
        pytest.param(edited(SCHEDULE, "spec.timeZone", "America/Argentina/Buenos_Aires"), id="tz"),
        pytest.param(edited(SCHEDULE, "spec.timeZone", "Etc/GMT+5"), id="tz-offset"),
        pytest.param(edited(SCHEDULE, "spec.retention", ...), id="no-retention"),
        pytest.param(edited(SCHEDULE, "spec.concurrencyPolicy", "Replace"), id="replace"),
    ],
)
def test_good_schedules_are_accepted_by_schema_and_models(manifest: dict[str, Any]) -> None:
    assert api_server_errors(SCHEDULE_PLURAL, manifest) == []
    BackupSchedule.model_validate(manifest)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        pytest.param("spec.schedule", "0 2 * *", "schedule", id="four-fields"),
        pytest.param("spec.schedule", "0 2 * * * *", "schedule", id="six-fields"),
        pytest.param("spec.schedule", "", "schedule", id="empty"),
        pytest.param("spec.schedule", "@fortnightly", "schedule", id="unknown-macro"),
        pytest.param("spec.timeZone", "../etc/passwd", "timeZone", id="tz-path"),
        pytest.param("spec.timeZone", "Europe Berlin", "timeZone", id="tz-space"),
        pytest.param("spec.retention.keepLast", 0, "keepLast", id="keep-last-zero"),
        pytest.param("spec.retention.keepDaily", -1, "keepDaily", id="keep-daily-negative"),
        pytest.param("spec.retention.maxAge", "30 days", "maxAge", id="max-age-words"),
        pytest.param("spec.retention.maxAge", "1.5h", "maxAge", id="max-age-fraction"),
        pytest.param("spec.retention.maxAge", "0h", "maxAge must be longer", id="max-age-zero"),
        pytest.param("spec.failedBackupsHistoryLimit", -1, "failedBackups", id="neg-limit"),
        pytest.param("spec.concurrencyPolicy", "forbid", "concurrencyPolicy", id="lc-policy"),
        pytest.param("spec.startingDeadlineSeconds", 0, "startingDeadline", id="zero-deadline"),
        pytest.param("spec.template.database.engine", "oracle", "engine", id="bad-template"),
        pytest.param("spec.template", ..., "template", id="no-template"),
    ],
)
def test_bad_schedules_are_rejected_by_schema_and_models(
    path: str, value: Any, expected: str
) -> None:
    manifest = edited(SCHEDULE, path, value)
    errors = api_server_errors(SCHEDULE_PLURAL, manifest)
    assert errors, f"the API server would accept {path}={value!r}"
    assert any(expected in error for error in errors), errors
    with pytest.raises(ValidationError):
        BackupSchedule.model_validate(manifest)


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        pytest.param("spec.schedule", "61 * * * *", "spec.schedule", id="minute-61"),
        pytest.param("spec.schedule", "0 25 * * *", "spec.schedule", id="hour-25"),
        pytest.param("spec.schedule", "0 2 31 2-13 *", "spec.schedule", id="month-13"),
        pytest.param("spec.timeZone", "Mars/Olympus", "spec.timeZone", id="tz-unknown"),
    ],
)
def test_what_the_schema_cannot_refuse_the_operator_refuses_with_the_field_named(
    path: str, value: Any, field: str
) -> None:
    """Valid in shape, so the API server accepts them; the operator marks the schedule Stalled
    with these messages (tests/integration/operator/test_schedules.py shows it end to end)."""
    manifest = edited(SCHEDULE, path, value)
    assert api_server_errors(SCHEDULE_PLURAL, manifest) == []
    spec = BackupSchedule.model_validate(manifest).spec
    with pytest.raises(InvalidSchedule, match=rf"^{field}: "):
        Schedule.parse(spec.schedule, spec.time_zone)


def test_restore_by_schedule_is_accepted_and_exclusive() -> None:
    assert api_server_errors(RESTORE_PLURAL, SCHEDULE_RESTORE) == []
    assert Restore.model_validate(SCHEDULE_RESTORE).spec.schedule_ref is not None
    both = edited(SCHEDULE_RESTORE, "spec.backupRef", {"name": "shop-db"})
    assert api_server_errors(RESTORE_PLURAL, both) == [f".spec: {RESTORE_SPEC_RULES[1].message}"]
    exclusive = r"exactly one of backupRef \(a Backup in this namespace\), scheduleRef"
    with pytest.raises(ValidationError, match=exclusive):
        Restore.model_validate(both)
    unnamed = edited(SCHEDULE_RESTORE, "spec.scheduleRef.name", "Nightly")
    assert api_server_errors(RESTORE_PLURAL, unnamed)


def test_schedule_status_written_by_the_operator_validates() -> None:
    status = {
        "lastScheduleTime": "2026-12-03T01:00:00Z",
        "nextScheduleTime": "2026-12-04T01:00:00Z",
        "lastSkippedTime": "2026-12-02T01:00:00Z",
        "lastSkippedReason": "BackupStillRunning",
        "lastSkippedMessage": "slot 2026-12-02 02:00 Europe/Berlin skipped: ...",
        "lastSuccessfulTime": "2026-12-03T01:04:00Z",
        "lastBackup": "nightly-20261203-0200",
        "lastSuccessfulBackup": "nightly-20261203-0200",
        "active": ["nightly-20261203-0200"],
        "kept": [{"name": "nightly-20261203-0200", "time": "2026-12-03T01:00:00Z", "rules": ["a"]}],
        "keptCount": 1,
        "lastTrigger": "before-upgrade",
        "observedGeneration": 2,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Scheduled",
                "message": "next Backup at 2026-12-04 02:00 Europe/Berlin",
                "lastTransitionTime": "2026-12-01T00:00:00Z",
                "observedGeneration": 2,
            }
        ],
    }
    body = {**SCHEDULE, "status": status}
    assert api_server_errors(SCHEDULE_PLURAL, body) == []
    assert BackupSchedule.model_validate(body).to_api_dict()["status"] == status


# -- storage: exactly one of s3, volume, storeRef; a BackupStore: exactly one of s3, volume -----

STORE_REF = {"storeRef": {"name": "backups"}}
ISSUE_S3 = ISSUE_BACKUP["spec"]["storage"]
ISSUE_STORE = {
    "apiVersion": "lifeboat.dev/v1alpha1",
    "kind": "BackupStore",
    "metadata": {"name": "backups", "namespace": "shop"},
    "spec": ISSUE_S3,
}
STORAGE_MODELS: dict[str, type[Backup] | type[Restore] | type[BackupStore]] = {
    BACKUP_PLURAL: Backup,
    RESTORE_PLURAL: Restore,
    STORE_PLURAL: BackupStore,
}
VOLUME = {"volume": {"persistentVolumeClaim": "backups"}}


@pytest.mark.parametrize(
    ("plural", "manifest"),
    [
        pytest.param(BACKUP_PLURAL, edited(ISSUE_BACKUP, "spec.storage", STORE_REF), id="backup"),
        pytest.param(
            RESTORE_PLURAL,
            edited(SOURCE_RESTORE, "spec.source.storage", STORE_REF),
            id="restore-source",
        ),
        pytest.param(STORE_PLURAL, ISSUE_STORE, id="store-s3"),
        pytest.param(STORE_PLURAL, edited(ISSUE_STORE, "spec", VOLUME), id="store-volume"),
    ],
)
def test_store_refs_and_stores_are_accepted(plural: str, manifest: dict[str, Any]) -> None:
    assert api_server_errors(plural, manifest) == []
    STORAGE_MODELS[plural].model_validate(manifest)


STORAGE_MESSAGE = STORAGE_RULES[0].message
STORE_MESSAGE = "set exactly one storage backend: s3 (a bucket) or volume"


@pytest.mark.parametrize(
    ("plural", "manifest", "expected"),
    [
        pytest.param(
            BACKUP_PLURAL,
            edited(ISSUE_BACKUP, "spec.storage", {**ISSUE_S3, **STORE_REF}),
            STORAGE_MESSAGE,
            id="backup-s3-and-store-ref",
        ),
        pytest.param(
            BACKUP_PLURAL,
            edited(ISSUE_BACKUP, "spec.storage", {**VOLUME, **STORE_REF}),
            STORAGE_MESSAGE,
            id="backup-volume-and-store-ref",
        ),
        pytest.param(
            BACKUP_PLURAL, edited(ISSUE_BACKUP, "spec.storage", {}), STORAGE_MESSAGE, id="none"
        ),
        pytest.param(
            BACKUP_PLURAL,
            edited(ISSUE_BACKUP, "spec.storage", {"storeRef": {"name": "Not_A_Name"}}),
            "storeRef.name",
            id="store-ref-bad-name",
        ),
        pytest.param(
            BACKUP_PLURAL,
            edited(ISSUE_BACKUP, "spec.storage", {"storeRef": {}}),
            "name",
            id="store-ref-without-name",
        ),
        pytest.param(
            RESTORE_PLURAL,
            edited(SOURCE_RESTORE, "spec.source.storage", {**ISSUE_S3, **STORE_REF}),
            STORAGE_MESSAGE,
            id="restore-source-s3-and-store-ref",
        ),
        pytest.param(
            STORE_PLURAL,
            edited(ISSUE_STORE, "spec", {**ISSUE_S3, **VOLUME}),
            STORE_MESSAGE,
            id="store-s3-and-volume",
        ),
        pytest.param(STORE_PLURAL, edited(ISSUE_STORE, "spec", {}), STORE_MESSAGE, id="store-none"),
        pytest.param(
            # A store cannot name another store: the server prunes the unknown field (then
            # neither backend is set); the model refuses it outright.
            STORE_PLURAL,
            edited(ISSUE_STORE, "spec", STORE_REF),
            STORE_MESSAGE,
            id="store-naming-a-store",
        ),
    ],
)
def test_storage_needs_exactly_one_backend(
    plural: str, manifest: dict[str, Any], expected: str
) -> None:
    errors = api_server_errors(plural, manifest)
    assert any(expected in error for error in errors), errors
    with pytest.raises(ValidationError):
        STORAGE_MODELS[plural].model_validate(manifest)


def test_a_backups_spec_storage_cannot_switch_to_a_store_ref() -> None:
    """status.storage records where the backup went; the spec that says so never changes."""
    moved = edited(ISSUE_BACKUP, "spec.storage", STORE_REF)
    assert api_server_errors(BACKUP_PLURAL, moved, old=ISSUE_BACKUP) == [
        f".spec: {BACKUP_IMMUTABLE_RULE.message}"
    ]


def test_recorded_storage_and_store_status_validate_and_are_declared() -> None:
    """What the controller writes into a Backup's status.storage and a store's status is in
    the schema (a real server would prune what it does not declare)."""
    backup = edited(ISSUE_BACKUP, "spec.storage", STORE_REF)
    backup["status"] = {
        "phase": "Running",
        "storage": Backup.model_validate(ISSUE_BACKUP).spec.storage.model_dump(
            by_alias=True, exclude_none=True, mode="json"
        ),
    }
    assert api_server_errors(BACKUP_PLURAL, backup) == []
    assert Backup.model_validate(backup).status.storage is not None
    status_schema = open_api_schema(BACKUP_PLURAL)["properties"]["status"]["properties"]
    # The encryption is recorded too: Restores take the Backup's key reference from here.
    assert set(status_schema["storage"]["properties"]) == {"s3", "volume", "encryption"}

    store = dict(ISSUE_STORE)
    store["status"] = {
        "uri": "s3://backups/shop/",
        "lastCheckTime": "2026-01-01T00:00:00Z",
        "lastSuccessTime": "2026-01-01T00:00:00Z",
        "reason": "Reachable",
        "message": "s3://backups/shop/ is reachable with the store's settings",
        "checkJobName": "backups-check-1a2b3c4d",
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Reachable",
                "message": "ok",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
                "observedGeneration": 1,
            }
        ],
    }
    assert api_server_errors(STORE_PLURAL, store) == []
    declared = set(open_api_schema(STORE_PLURAL)["properties"]["status"]["properties"])
    assert declared == set(store["status"])
