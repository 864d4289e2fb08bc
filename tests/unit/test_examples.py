"""examples/: every manifest is one the API server and the operator accept, and safe to copy.

Backups and Restores are checked three ways: the pydantic models (what the operator parses),
the committed CRD's openAPIV3Schema with server-side defaults (jsonschema), and its CEL rules
(the evaluators test_crds.py uses). Secrets hold placeholders only, and every Secret a resource
reads is in the same file, with the keys it reads.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from lifeboat.api import (
    API_VERSION,
    BACKUP_PLURAL,
    DRILL_PLURAL,
    GROUP,
    RESTORE_PLURAL,
    SCHEDULE_PLURAL,
    STORE_PLURAL,
    Backup,
    BackupSchedule,
    BackupStore,
    ConditionType,
    Restore,
    RestoreDrill,
)
from lifeboat.api.database import DatabaseSpec
from lifeboat.api.storage import StorageBackend, StorageSpec
from lifeboat.controller.slots import Schedule
from tests.unit.test_crds import apply_defaults, cel_failures, to_json_schema

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MODELS = {
    "Backup": Backup,
    "Restore": Restore,
    "BackupStore": BackupStore,
    "BackupSchedule": BackupSchedule,
    "RestoreDrill": RestoreDrill,
}
PLURALS = {
    "Backup": BACKUP_PLURAL,
    "Restore": RESTORE_PLURAL,
    "BackupStore": STORE_PLURAL,
    "BackupSchedule": SCHEDULE_PLURAL,
    "RestoreDrill": DRILL_PLURAL,
}
OTHER_KINDS = {"Secret", "PersistentVolumeClaim"}
PLACEHOLDER = "change-me"


def load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


FILES = sorted(EXAMPLES.glob("*.yaml"))
DOCUMENTS = [(path.name, doc) for path in FILES for doc in load(path)]
CUSTOM = [(name, doc) for name, doc in DOCUMENTS if doc["apiVersion"] == API_VERSION]
SECRETS = [(name, doc) for name, doc in DOCUMENTS if doc["kind"] == "Secret"]


def ident(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}:{item[1]['kind']}/{item[1]['metadata']['name']}"


def committed_schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of the committed CRD (crds/), as the API server has it."""
    path = ROOT / "crds" / f"{PLURALS[kind]}.{GROUP}.yaml"
    version = yaml.safe_load(path.read_text(encoding="utf-8"))["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_the_examples_are_there() -> None:
    names = {path.name for path in FILES}
    assert names == {
        "postgresql-backup.yaml",
        "postgresql-restore.yaml",
        "postgresql-restore-dry-run.yaml",
        "mysql-backup.yaml",
        "mysql-restore.yaml",
        "sqlite-volume-backup.yaml",
        "restore-from-bucket.yaml",
        "backup-store.yaml",
        "nightly-schedule.yaml",
        "restore-latest.yaml",
        "restore-drill.yaml",
    }
    kinds = {doc["kind"] for _, doc in DOCUMENTS}
    assert kinds <= MODELS.keys() | OTHER_KINDS, kinds


@pytest.mark.parametrize("item", CUSTOM, ids=[ident(item) for item in CUSTOM])
def test_custom_resource_is_accepted_by_the_models(item: tuple[str, dict[str, Any]]) -> None:
    _, doc = item
    MODELS[doc["kind"]].model_validate(doc)


@pytest.mark.parametrize("item", CUSTOM, ids=[ident(item) for item in CUSTOM])
def test_custom_resource_is_accepted_by_the_crd_schema(item: tuple[str, dict[str, Any]]) -> None:
    _, doc = item
    schema = committed_schema(doc["kind"])
    defaulted = apply_defaults(schema, doc)
    validator = jsonschema.Draft7Validator(to_json_schema(schema))
    errors = [
        f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(defaulted)
    ]
    assert errors == []
    assert cel_failures(schema, defaulted) == []


def test_schema_check_can_fail() -> None:
    """The check above rejects a bad example: it is not vacuous."""
    _, backup = next(item for item in CUSTOM if item[1]["kind"] == "Backup")
    broken = {**backup, "spec": {**backup["spec"], "compression": "lz4"}}
    schema = committed_schema("Backup")
    validator = jsonschema.Draft7Validator(to_json_schema(schema))
    assert list(validator.iter_errors(apply_defaults(schema, broken)))


@pytest.mark.parametrize("item", SECRETS, ids=[ident(item) for item in SECRETS])
def test_secrets_hold_placeholders_only(item: tuple[str, dict[str, Any]]) -> None:
    _, secret = item
    assert "data" not in secret, "use stringData: readable, and obviously a placeholder"
    assert secret["stringData"], "an empty Secret"
    assert set(secret["stringData"].values()) == {PLACEHOLDER}


@pytest.mark.parametrize("path", FILES, ids=[path.name for path in FILES])
def test_nothing_looks_like_a_real_credential(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), "an AWS access key id"
    assert not re.search(r"[A-Za-z0-9/+]{30,}", text), "a long random-looking string"
    assert "-----BEGIN" not in text


def secrets_read_by(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(Secret name, key) pairs a Backup, Restore or BackupStore makes its Jobs read, defaults
    included. A storeRef's credentials are the store's: its own file holds them."""
    model = MODELS[doc["kind"]].model_validate(doc)
    refs: list[tuple[str, str]] = []
    databases: list[DatabaseSpec] = []
    storages: list[StorageSpec | StorageBackend] = []
    if isinstance(model, BackupStore):
        storages.append(model.spec)
    elif isinstance(model, BackupSchedule):
        databases.append(model.spec.template.database)
        storages.append(model.spec.template.storage)
        target = model.spec.drill.target if model.spec.drill else None
        if target is not None and target.password_secret_ref is not None:
            refs.append((target.password_secret_ref.name, target.password_secret_ref.key))
    elif isinstance(model, RestoreDrill):
        target = model.spec.target
        if target is not None and target.password_secret_ref is not None:
            refs.append((target.password_secret_ref.name, target.password_secret_ref.key))
    elif isinstance(model, Backup):
        databases.append(model.spec.database)
        storages.append(model.spec.storage)
    else:
        databases += [model.spec.target] if model.spec.target else []
        storages += [model.spec.source.storage] if model.spec.source else []
    refs += [
        (d.password_secret_ref.name, d.password_secret_ref.key)
        for d in databases
        if d.password_secret_ref
    ]
    for storage in storages:
        credentials = storage.s3.credentials_secret_ref if storage.s3 else None
        if credentials:
            refs.append((credentials.name, credentials.access_key_id_key))
            refs.append((credentials.name, credentials.secret_access_key_key))
    return refs


@pytest.mark.parametrize("item", CUSTOM, ids=[ident(item) for item in CUSTOM])
def test_every_secret_a_resource_reads_is_in_its_file(item: tuple[str, dict[str, Any]]) -> None:
    file, doc = item
    namespace = doc["metadata"]["namespace"]
    in_file = {
        secret["metadata"]["name"]: secret
        for name, secret in SECRETS
        if name == file and secret["metadata"]["namespace"] == namespace
    }
    for secret_name, key in secrets_read_by(doc):
        assert secret_name in in_file, f"{file} lacks the Secret {secret_name}"
        assert key in in_file[secret_name]["stringData"], f"Secret {secret_name} lacks {key}"


def test_secrets_with_the_same_name_are_the_same_everywhere() -> None:
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for _, secret in SECRETS:
        key = (secret["metadata"]["namespace"], secret["metadata"]["name"])
        assert seen.setdefault(key, secret) == secret, f"two different Secrets {key}"


def test_backup_refs_name_a_backup_of_the_examples() -> None:
    backups = {
        (doc["metadata"]["namespace"], doc["metadata"]["name"])
        for _, doc in CUSTOM
        if doc["kind"] == "Backup"
    }
    for _, doc in CUSTOM:
        ref = doc.get("spec", {}).get("backupRef")
        if ref:
            assert (doc["metadata"]["namespace"], ref["name"]) in backups, ref


def test_schedule_refs_name_a_schedule_of_the_examples() -> None:
    schedules = {
        (doc["metadata"]["namespace"], doc["metadata"]["name"])
        for _, doc in CUSTOM
        if doc["kind"] == "BackupSchedule"
    }
    refs = [
        (doc["metadata"]["namespace"], doc["spec"]["scheduleRef"]["name"])
        for _, doc in CUSTOM
        if doc.get("spec", {}).get("scheduleRef")
    ]
    assert refs, "no example restores by scheduleRef"
    assert set(refs) <= schedules


def test_the_nightly_schedule_is_what_its_comments_say() -> None:
    """02:00 in a named time zone, a grandfather-father-son retention that frees space, and a
    weekly restore drill with the drills' own login."""
    [(_, doc)] = [item for item in CUSTOM if item[1]["kind"] == "BackupSchedule"]
    spec = BackupSchedule.model_validate(doc).spec
    assert (spec.schedule, spec.time_zone) == ("0 2 * * *", "Europe/Berlin")
    assert spec.retention is not None
    kept = (spec.retention.keep_daily, spec.retention.keep_weekly, spec.retention.keep_monthly)
    assert kept == (7, 4, 6)
    assert spec.template.deletion_policy.value == "Delete"
    Schedule.parse(spec.schedule, spec.time_zone)  # what the operator checks beyond the schema
    drill = spec.drill
    assert drill is not None
    assert drill.schedule == "0 4 * * 0"
    Schedule.parse(drill.schedule, spec.time_zone)
    assert drill.target is not None
    assert drill.target.user == "lifeboat_drill"
    assert [check.name for check in drill.checks or ()] == ["orders-present", "fresh-orders"]
    assert "${BACKUP_TIME}" in (drill.checks or [])[1].query


def test_store_refs_name_a_store_of_the_examples() -> None:
    stores = {
        (doc["metadata"]["namespace"], doc["metadata"]["name"])
        for _, doc in CUSTOM
        if doc["kind"] == "BackupStore"
    }
    named = 0
    for _, doc in CUSTOM:
        spec = doc.get("spec", {})
        for storage in (spec.get("storage"), (spec.get("source") or {}).get("storage")):
            ref = (storage or {}).get("storeRef")
            if ref:
                named += 1
                assert (doc["metadata"]["namespace"], ref["name"]) in stores, ref
    assert named, "no example uses a storeRef"


def test_commands_in_the_docs_name_objects_of_the_examples() -> None:
    """`kubectl wait ... backup/NAME`, `kubectl describe backup NAME`: in the README, in each
    file's comments and in the chart's NOTES.txt, they name objects the examples create."""
    objects = {(doc["kind"].lower(), doc["metadata"]["name"]) for _, doc in CUSTOM}
    paths = [
        EXAMPLES / "README.md",
        *FILES,
        ROOT / "charts" / "lifeboat" / "templates" / "NOTES.txt",
    ]
    text = "\n".join(path.read_text(encoding="utf-8") for path in paths)
    name = r"([a-z0-9][-a-z0-9]*[a-z0-9])"
    kinds = "backupstore|backupschedule|backup|restoredrill|restore"
    mentioned = set(re.findall(rf"\b({kinds})/{name}", text))
    mentioned |= set(re.findall(rf"kubectl describe ({kinds})\s+(?:-n \S+\s+)?{name}", text))
    assert len(mentioned) >= len(FILES), "the commands are no longer found: is the regex right?"
    assert mentioned <= objects, sorted(mentioned - objects)
    for condition in re.findall(r"--for=condition=(\w+)", text):
        assert condition in {c.value for c in ConditionType}, condition


def test_readme_explains_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\(([-a-z]+\.yaml)\)", readme))
    assert linked == {path.name for path in FILES}
    for command in (
        "kubectl get backups -o wide",
        "kubectl wait --for=condition=Ready backup/shop-db --timeout=1h",
        "kubectl describe backup shop-db",
    ):
        assert command in readme, command
