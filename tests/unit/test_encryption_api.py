"""The encryption API: `encryption` and `serverSideEncryption` in Backups, stores, schedules and
Restores; what the API server and the models accept; what the Jobs get (the key only through
`secretKeyRef`, and only the Jobs that need it); how the controller chooses the key."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from lifeboat.api import (
    Backup,
    BackupSchedule,
    BackupStore,
    Restore,
    StorageBackend,
    StorageSpec,
)
from lifeboat.api.crd import crds
from lifeboat.builders.jobs import (
    JobDefaults,
    build_backup_job,
    build_cleanup_job,
    build_restore_job,
    build_store_check_job,
)
from lifeboat.contract import (
    ENV_ENCRYPTION_KEY,
    ENV_ENCRYPTION_KEY_FILE,
    ENV_ENCRYPTION_KEY_SOURCE,
    ENV_S3_SSE,
    ENV_S3_SSE_KMS_KEY_ID,
)
from lifeboat.controller.storage import decide_storage, store_backend
from tests.support.kubernetes_schemas import KUBERNETES_VERSIONS, kubernetes_errors
from tests.unit.test_crds import (
    ISSUE_BACKUP,
    ISSUE_RESTORE,
    SOURCE_RESTORE,
    api_server_errors,
    edited,
)

KEY_REF = {"keySecretRef": {"name": "backup-key", "key": "key"}}
KMS = {"type": "aws:kms", "kmsKeyId": "arn:aws:kms:eu-central-1:111122223333:key/abcd"}
ENCRYPTED_BACKUP = edited(
    edited(ISSUE_BACKUP, "spec.storage.encryption", KEY_REF),
    "spec.storage.s3.serverSideEncryption",
    KMS,
)
ENCRYPTED_BACKUP["metadata"]["uid"] = "0f1e2d3c-aaaa-bbbb-cccc-1234"
STORE: dict[str, Any] = {
    "apiVersion": "lifeboat.dev/v1alpha1",
    "kind": "BackupStore",
    "metadata": {"name": "backups", "namespace": "shop", "uid": "5a5a-store"},
    "spec": {
        "s3": {
            "bucket": "backups",
            "credentialsSecretRef": {"name": "s3-credentials"},
            "serverSideEncryption": {"type": "AES256"},
        },
        "encryption": {"keySecretRef": {"name": "store-key"}},
    },
}


def env_list(job: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env_list(job)}


def backend_of(obj: Backup) -> StorageBackend:
    backend = obj.spec.storage.backend()
    assert backend is not None
    return backend


# -- schema and models --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plural", "manifest"),
    [
        pytest.param("backups", ENCRYPTED_BACKUP, id="backup-kms-and-client-side"),
        pytest.param(
            "backups",
            edited(ISSUE_BACKUP, "spec.storage.s3.serverSideEncryption", {"type": "AES256"}),
            id="backup-sse-s3",
        ),
        pytest.param(
            "backups",
            edited(ISSUE_BACKUP, "spec.storage.s3.serverSideEncryption", {"type": "aws:kms"}),
            id="backup-sse-kms-default-key",
        ),
        pytest.param(
            "backups",
            edited(
                edited(ISSUE_BACKUP, "spec.storage", {"storeRef": {"name": "backups"}}),
                "spec.storage.encryption",
                KEY_REF,
            ),
            id="backup-store-ref-with-its-own-key",
        ),
        pytest.param("restores", edited(ISSUE_RESTORE, "spec.encryption", KEY_REF), id="restore"),
        pytest.param(
            "restores",
            edited(SOURCE_RESTORE, "spec.source.storage.encryption", KEY_REF),
            id="restore-source",
        ),
        pytest.param("backupstores", STORE, id="store"),
    ],
)
def test_encrypted_manifests_are_accepted_by_schema_and_models(
    plural: str, manifest: dict[str, Any]
) -> None:
    assert api_server_errors(plural, manifest) == []
    model = {"backups": Backup, "restores": Restore, "backupstores": BackupStore}[plural]
    model.model_validate(manifest)


def test_a_schedule_template_carries_encryption_to_its_backups() -> None:
    schedule = {
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupSchedule",
        "metadata": {"name": "nightly", "namespace": "shop"},
        "spec": {"schedule": "0 2 * * *", "template": ENCRYPTED_BACKUP["spec"]},
    }
    assert api_server_errors("backupschedules", schedule) == []
    template = BackupSchedule.model_validate(schedule).spec.template
    assert template.storage.encryption is not None
    assert template.storage.encryption.key_secret_ref.name == "backup-key"
    assert template.storage.s3 is not None
    assert template.storage.s3.server_side_encryption is not None


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        pytest.param(
            "spec.storage.s3.serverSideEncryption",
            {"type": "AES256", "kmsKeyId": "alias/x"},
            "kmsKeyId is for type aws:kms",
            id="kms-key-with-sse-s3",
        ),
        pytest.param(
            "spec.storage.s3.serverSideEncryption",
            {"type": "aws:kms:dsse"},
            "type",
            id="unknown-sse-type",
        ),
        pytest.param(
            "spec.storage.s3.serverSideEncryption", {"kmsKeyId": "k"}, "type", id="no-sse-type"
        ),
        pytest.param("spec.storage.encryption", {}, "keySecretRef", id="encryption-without-key"),
        pytest.param(
            "spec.storage.encryption",
            {"keySecretRef": {"name": "Backup_Key"}},
            "name",
            id="bad-secret-name",
        ),
        pytest.param(
            "spec.storage.encryption",
            {"keySecretRef": {"name": "k", "key": "a/b"}},
            "key",
            id="bad-secret-key",
        ),
    ],
)
def test_bad_encryption_is_rejected_by_schema_and_models(
    path: str, value: Any, expected: str
) -> None:
    manifest = edited(ISSUE_BACKUP, path, value)
    errors = api_server_errors("backups", manifest)
    assert errors, f"the API server would accept {path}={value!r}"
    assert any(expected in error for error in errors), errors
    with pytest.raises(ValidationError):
        Backup.model_validate(manifest)


def test_there_is_no_field_for_a_literal_key() -> None:
    """A key pasted into the spec is never stored: the schema has no field for it (the API
    server prunes it, or refuses it under strict field validation) and the operator's model
    refuses it, naming the field."""
    schema = crds()["backups.lifeboat.dev.yaml"]["spec"]["versions"][0]["schema"]
    storage = schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["storage"]
    assert set(storage["properties"]["encryption"]["properties"]) == {"keySecretRef"}
    assert set(storage["properties"]["encryption"]["properties"]["keySecretRef"]["properties"]) == {
        "name",
        "key",
    }
    pasted = edited(ENCRYPTED_BACKUP, "spec.storage.encryption.key", "c2VjcmV0")
    with pytest.raises(ValidationError, match=r"Extra inputs"):
        Backup.model_validate(pasted)


def test_a_backups_encryption_cannot_change_once_created() -> None:
    changed = edited(ENCRYPTED_BACKUP, "spec.storage.encryption.keySecretRef.name", "other")
    assert any(
        "cannot change" in e for e in api_server_errors("backups", changed, ENCRYPTED_BACKUP)
    )
    unencrypted = edited(ENCRYPTED_BACKUP, "spec.storage.encryption", ...)
    assert any(
        "cannot change" in e for e in api_server_errors("backups", unencrypted, ENCRYPTED_BACKUP)
    )


def test_the_artifact_status_records_algorithm_key_id_and_sse_and_the_server_keeps_them() -> None:
    status = {
        "artifact": {
            "sha256": "a" * 64,
            "encryption": {"algorithm": "AES-256-GCM", "keyId": "0123456789abcdef" * 2},
            "serverSideEncryption": {"type": "aws:kms", "kmsKeyId": KMS["kmsKeyId"]},
        },
        "storage": backend_of(Backup.model_validate(ENCRYPTED_BACKUP)).to_api_dict(),
    }
    body = {**ENCRYPTED_BACKUP, "status": status}
    assert api_server_errors("backups", body) == []
    parsed = Backup.model_validate(body).status
    assert parsed.artifact is not None
    assert parsed.artifact.encryption is not None
    assert parsed.artifact.encryption.key_id == "0123456789abcdef" * 2
    assert parsed.storage is not None
    assert parsed.storage.encryption is not None
    assert parsed.storage.encryption.key_secret_ref.name == "backup-key"
    schema = crds()["backups.lifeboat.dev.yaml"]["spec"]["versions"][0]["schema"]
    artifact = schema["openAPIV3Schema"]["properties"]["status"]["properties"]["artifact"]
    assert {"encryption", "serverSideEncryption"} <= set(artifact["properties"])
    # A key id is a fingerprint: anything longer (a key pasted by mistake) does not fit.
    leaked = copy.deepcopy(body)
    leaked["status"]["artifact"]["encryption"]["keyId"] = (
        "c2VjcmV0a2V5c2VjcmV0a2V5c2VjcmV0a2V5MTIzNA=="
    )
    assert api_server_errors("backups", leaked) != []


# -- Jobs ---------------------------------------------------------------------------------------


def test_the_backup_job_gets_the_key_only_through_a_secret_key_ref() -> None:
    backup = Backup.model_validate(ENCRYPTED_BACKUP)
    job = build_backup_job(backup, backend_of(backup), JobDefaults())
    env = env_of(job)
    assert env[ENV_ENCRYPTION_KEY] == {"secretKeyRef": {"name": "backup-key", "key": "key"}}
    key_entries = [e for e in env_list(job) if e["name"] == ENV_ENCRYPTION_KEY]
    assert len(key_entries) == 1
    assert "value" not in key_entries[0]
    assert env[ENV_ENCRYPTION_KEY_SOURCE] == "Secret backup-key, key key: encryption.keySecretRef"
    assert ENV_ENCRYPTION_KEY_FILE not in env
    assert env[ENV_S3_SSE] == "aws:kms"
    assert env[ENV_S3_SSE_KMS_KEY_ID] == KMS["kmsKeyId"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert not any("key" in arg.lower() and "secret" in arg.lower() for arg in container["args"])
    assert "--encryption-key-file" not in container["args"]
    for version in KUBERNETES_VERSIONS:
        assert kubernetes_errors(job, version) == []


def test_only_backup_and_restore_jobs_get_the_key() -> None:
    backup = Backup.model_validate(ENCRYPTED_BACKUP)
    cleanup = build_cleanup_job(backup, backend_of(backup), JobDefaults())
    assert ENV_ENCRYPTION_KEY not in env_of(cleanup)
    assert env_of(cleanup)[ENV_S3_SSE] == "aws:kms"
    store = BackupStore.model_validate(STORE)
    check = build_store_check_job(store, "backups-check-1", JobDefaults())
    assert ENV_ENCRYPTION_KEY not in env_of(check)
    restore = Restore.model_validate({**ISSUE_RESTORE, "metadata": {"name": "r", "uid": "u"}})
    restored = build_restore_job(
        restore,
        storage=backend_of(backup),
        source_url="s3://backups/shop/x/",
        target=backup.spec.database,
        defaults=JobDefaults(),
    )
    assert env_of(restored)[ENV_ENCRYPTION_KEY] == {
        "secretKeyRef": {"name": "backup-key", "key": "key"}
    }


def test_a_job_without_encryption_gets_no_key_variables() -> None:
    backup = Backup.model_validate({**ISSUE_BACKUP, "metadata": {"name": "b", "uid": "u"}})
    env = env_of(build_backup_job(backup, backend_of(backup), JobDefaults()))
    assert not {ENV_ENCRYPTION_KEY, ENV_ENCRYPTION_KEY_SOURCE, ENV_S3_SSE} & set(env)


# -- which key the controller chooses -----------------------------------------------------------


def decide(storage: dict[str, Any], store: dict[str, Any] | None) -> StorageBackend:
    resolved = decide_storage(
        StorageSpec.model_validate(storage),
        store,
        kind="Backup",
        field="spec.storage.storeRef.name",
        namespace="shop",
        waited_seconds=0,
        wait_seconds=60,
    )
    backend = getattr(resolved, "backend", None)
    assert isinstance(backend, StorageBackend), resolved
    return backend


def test_a_store_ref_takes_the_stores_key_unless_the_backup_names_its_own() -> None:
    assert store_backend(STORE).encryption is not None
    from_store = decide({"storeRef": {"name": "backups"}}, STORE)
    assert from_store.encryption is not None
    assert from_store.encryption.key_secret_ref.name == "store-key"
    assert from_store.s3 is not None
    assert from_store.s3.server_side_encryption is not None
    own = decide({"storeRef": {"name": "backups"}, "encryption": KEY_REF}, STORE)
    assert own.encryption is not None
    assert own.encryption.key_secret_ref.name == "backup-key"
    plain_store = edited(STORE, "spec.encryption", ...)
    assert decide({"storeRef": {"name": "backups"}}, plain_store).encryption is None
