"""Resolving spec.storage: inline as it is, a storeRef to its BackupStore, what a Backup recorded
first; a missing store waits, then fails naming the field; a store that failed its check is said,
not obeyed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from lifeboat.api import Phase, StorageBackend, StorageSpec
from lifeboat.controller.storage import (
    BACKUP_STORE_FIELD,
    STORE_INVALID,
    STORE_NOT_FOUND,
    WAITING_FOR_STORE,
    ResolvedStorage,
    age_seconds,
    decide_storage,
    store_note,
)
from lifeboat.controller.transitions import Verdict

S3 = {"bucket": "team-backups", "prefix": "nightly", "credentialsSecretRef": {"name": "s3"}}
OTHER_S3 = {"bucket": "elsewhere"}
BY_REF = StorageSpec.model_validate({"storeRef": {"name": "backups"}})
INLINE = StorageSpec.model_validate({"s3": OTHER_S3})


def store_obj(spec: dict[str, Any], ready: tuple[str, str, str] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "BackupStore",
        "metadata": {"name": "backups", "namespace": "shop", "generation": 1},
        "spec": spec,
    }
    if ready is not None:
        status, reason, message = ready
        obj["status"] = {
            "conditions": [
                {
                    "type": "Ready",
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
    return obj


def decide(
    storage: StorageSpec,
    store: dict[str, Any] | None,
    *,
    waited: float = 0.0,
    recorded: StorageBackend | None = None,
) -> ResolvedStorage | Verdict:
    return decide_storage(
        storage,
        store,
        kind="Backup",
        field=BACKUP_STORE_FIELD,
        namespace="shop",
        waited_seconds=waited,
        wait_seconds=60.0,
        recorded=recorded,
    )


def test_inline_storage_is_used_as_it_is_and_no_store_matters() -> None:
    resolved = decide(INLINE, store_obj({"s3": S3}, ("False", "AccessDenied", "no")))
    assert resolved == ResolvedStorage(StorageBackend.model_validate({"s3": OTHER_S3}))


def test_a_store_ref_resolves_to_the_stores_settings() -> None:
    resolved = decide(BY_REF, store_obj({"s3": S3}, ("True", "Reachable", "ok")))
    assert isinstance(resolved, ResolvedStorage)
    assert resolved.backend.to_api_dict() == {
        "s3": {
            "bucket": "team-backups",
            "prefix": "nightly",
            "credentialsSecretRef": {
                "name": "s3",
                "accessKeyIdKey": "AWS_ACCESS_KEY_ID",
                "secretAccessKeyKey": "AWS_SECRET_ACCESS_KEY",
            },
            "forcePathStyle": False,
        }
    }
    assert resolved.note is None


def test_what_a_backup_recorded_wins_over_the_store_as_it_is_now() -> None:
    recorded = StorageBackend.model_validate({"s3": OTHER_S3})
    edited = store_obj({"s3": S3}, ("True", "Reachable", "ok"))
    assert decide(BY_REF, edited, recorded=recorded) == ResolvedStorage(recorded)
    # ... and the store may be gone since: the backup is still found.
    assert decide(BY_REF, None, waited=3600, recorded=recorded) == ResolvedStorage(recorded)


@pytest.mark.parametrize(
    ("waited", "phase", "reason"),
    [
        (0.0, Phase.PENDING, WAITING_FOR_STORE),
        (59.9, Phase.PENDING, WAITING_FOR_STORE),
        (60.0, Phase.FAILED, STORE_NOT_FOUND),
        (86400.0, Phase.FAILED, STORE_NOT_FOUND),
    ],
)
def test_a_missing_store_waits_then_fails_naming_the_field(
    waited: float, phase: Phase, reason: str
) -> None:
    verdict = decide(BY_REF, None, waited=waited)
    assert isinstance(verdict, Verdict)
    assert (verdict.phase, verdict.reason) == (phase, reason)
    assert "BackupStore backups" in verdict.message
    assert "spec.storage.storeRef.name" in verdict.message
    assert "namespace shop" in verdict.message


def test_store_not_found_says_what_to_do() -> None:
    verdict = decide(BY_REF, None, waited=61)
    assert isinstance(verdict, Verdict)
    assert verdict.message.endswith("create the BackupStore, then create a new Backup")


def test_a_store_that_failed_its_check_does_not_block_but_is_said() -> None:
    failing = store_obj({"s3": S3}, ("False", "BucketNotFound", "bucket 'team-backups' is gone"))
    resolved = decide(BY_REF, failing)
    assert isinstance(resolved, ResolvedStorage)
    assert resolved.backend.s3 is not None
    assert resolved.note == (
        "BackupStore backups was not Ready at its last check "
        "(BucketNotFound: bucket 'team-backups' is gone)"
    )


@pytest.mark.parametrize(
    "ready",
    [None, ("True", "Reachable", "ok"), ("Unknown", "Checking", "checking")],
    ids=["never-checked", "ready", "checking"],
)
def test_no_note_unless_the_last_check_failed(ready: tuple[str, str, str] | None) -> None:
    assert store_note("backups", store_obj({"s3": S3}, ready)) is None


def test_a_note_travels_with_a_recorded_backend_too() -> None:
    recorded = StorageBackend.model_validate({"s3": S3})
    failing = store_obj({"s3": S3}, ("False", "AccessDenied", "refused"))
    resolved = decide(BY_REF, failing, recorded=recorded)
    assert isinstance(resolved, ResolvedStorage)
    assert resolved.note is not None
    assert "AccessDenied: refused" in resolved.note


def test_an_invalid_store_fails_with_the_field_named() -> None:
    both = store_obj({"s3": S3, "volume": {"persistentVolumeClaim": "v"}})
    verdict = decide(BY_REF, both)
    assert isinstance(verdict, Verdict)
    assert (verdict.phase, verdict.reason) == (Phase.FAILED, STORE_INVALID)
    assert "exactly one storage backend" in verdict.message


def test_age_is_measured_from_creation() -> None:
    now = datetime(2026, 1, 1, 0, 1, 30, tzinfo=UTC)
    obj = {"metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}}
    assert age_seconds(obj, now) == 90.0
    assert age_seconds({"metadata": {}}, now) == 0.0
