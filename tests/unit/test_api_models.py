"""The pydantic models: what they accept, what they reject (naming the field), what they write."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from lifeboat.api import (
    Backup,
    BackupArtifact,
    BackupPhase,
    BackupSpec,
    BackupStatus,
    Compression,
    Condition,
    ConditionStatus,
    ConditionType,
    DatabaseSpec,
    DeletionPolicy,
    Engine,
    Phase,
    ProgressStatus,
    Restore,
    RestoreSpec,
    RestoreStatus,
    RestoreVerification,
    S3Storage,
    describe_validation_error,
    format_bytes,
    format_percent,
)

POSTGRES = {
    "engine": "postgresql",
    "host": "postgres.shop.svc",
    "port": 5432,
    "name": "shop",
    "user": "backup",
    "passwordSecretRef": {"name": "shop-db", "key": "password"},
}
SQLITE = {"engine": "sqlite", "persistentVolumeClaim": "app-data", "path": "data/app.db"}
S3 = {
    "s3": {
        "bucket": "backups",
        "prefix": "shop/",
        "endpoint": "http://minio.storage.svc:9000",
        "region": "us-east-1",
        "credentialsSecretRef": {"name": "s3-credentials"},
    }
}
VOLUME = {"volume": {"persistentVolumeClaim": "backups", "path": "shop"}}
BACKUP_SPEC = {
    "database": POSTGRES,
    "storage": S3,
    "compression": "zstd",
    "deletionPolicy": "Delete",
}


def with_(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of base with the dotted path set to value, or removed when value is `...`."""
    result = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = result
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return result


def error_text(model: type[BackupSpec] | type[RestoreSpec], data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(data)
    return describe_validation_error(caught.value, prefix=("spec",))


# -- parsing ----------------------------------------------------------------------------------


def test_issue_backup_parses_with_defaults_filled() -> None:
    spec = BackupSpec.model_validate(BACKUP_SPEC)
    assert spec.database.engine is Engine.POSTGRESQL
    assert spec.database.password_secret_ref is not None
    assert spec.database.password_secret_ref.key == "password"
    assert spec.storage.s3 is not None
    credentials = spec.storage.s3.credentials_secret_ref
    assert credentials is not None
    assert (credentials.access_key_id_key, credentials.secret_access_key_key) == (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    )
    assert spec.storage.s3.force_path_style is False
    assert spec.compression is Compression.ZSTD
    assert spec.deletion_policy is DeletionPolicy.DELETE
    assert spec.job is None


def test_defaults_are_the_safe_ones() -> None:
    spec = BackupSpec.model_validate(
        with_(with_(BACKUP_SPEC, "compression", ...), "deletionPolicy", ...)
    )
    assert spec.compression is Compression.ZSTD
    assert spec.deletion_policy is DeletionPolicy.RETAIN
    restore = RestoreSpec.model_validate({"backupRef": {"name": "shop-db"}})
    assert restore.keep_extra_objects is False
    assert restore.verify_checksum_first is True
    assert restore.target is None


def test_whole_objects_parse_from_api_server_bodies() -> None:
    body = {
        "apiVersion": "lifeboat.dev/v1alpha1",
        "kind": "Backup",
        "metadata": {
            "name": "shop-db",
            "namespace": "shop",
            "uid": "3f2a",
            "generation": 1,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": BACKUP_SPEC,
        "status": {"phase": "Running", "kopf": {"progress": {}}},
    }
    backup = Backup.model_validate(body)
    assert backup.metadata.name == "shop-db"
    assert backup.metadata.generation == 1
    assert backup.status.phase is BackupPhase.RUNNING
    restore = Restore.model_validate(
        {
            "apiVersion": "lifeboat.dev/v1alpha1",
            "kind": "Restore",
            "metadata": {"name": "r"},
            "spec": {"backupRef": {"name": "shop-db"}},
        }
    )
    assert restore.status == RestoreStatus()
    with pytest.raises(ValidationError, match="kind"):
        Backup.model_validate({**body, "kind": "Restore"})


def test_snake_case_names_are_accepted_too() -> None:
    database = DatabaseSpec(
        engine=Engine.SQLITE, persistent_volume_claim="app-data", path="/data/app.db"
    )
    assert database.to_api_dict() == {
        "engine": "sqlite",
        "persistentVolumeClaim": "app-data",
        "path": "/data/app.db",
    }
    assert (
        DatabaseSpec.model_validate(
            {"engine": "sqlite", "persistent_volume_claim": "x", "path": "a.db"}
        ).persistent_volume_claim
        == "x"
    )


def test_helpers_for_the_builders() -> None:
    assert DatabaseSpec.model_validate(with_(POSTGRES, "port", ...)).effective_port == 5432
    assert DatabaseSpec.model_validate({**POSTGRES, "engine": "mariadb"}).effective_port == 5432
    mysql = {k: v for k, v in POSTGRES.items() if k != "port"} | {"engine": "mysql"}
    assert DatabaseSpec.model_validate(mysql).effective_port == 3306
    assert DatabaseSpec.model_validate(SQLITE).effective_port is None
    assert S3Storage(bucket="bkt").key_prefix == ""
    assert S3Storage(bucket="bkt", prefix="shop").key_prefix == "shop/"
    assert S3Storage(bucket="bkt", prefix="shop//").key_prefix == "shop/"


GOOD_BACKUP_SPECS = [
    pytest.param(BACKUP_SPEC, id="issue"),
    pytest.param({"database": SQLITE, "storage": VOLUME}, id="sqlite-to-volume"),
    pytest.param(with_(BACKUP_SPEC, "storage.s3.credentialsSecretRef", ...), id="ambient-creds"),
    pytest.param(with_(BACKUP_SPEC, "database.passwordSecretRef", ...), id="no-password"),
    pytest.param(
        with_(BACKUP_SPEC, "storage", {"volume": {"persistentVolumeClaim": "b"}}), id="volume-root"
    ),
    pytest.param(with_(BACKUP_SPEC, "database.engine", "mariadb"), id="mariadb"),
    pytest.param(
        with_(
            BACKUP_SPEC,
            "job",
            {
                "image": "registry.local/lifeboat:1.0",
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}},
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"operator": "Exists"}],
                "serviceAccountName": "backup-writer",
                "activeDeadlineSeconds": 3600,
                "backoffLimit": 0,
                "ttlSecondsAfterFinished": 0,
            },
        ),
        id="job-tuning",
    ),
]


@pytest.mark.parametrize("spec", GOOD_BACKUP_SPECS)
def test_good_backup_specs_parse_and_round_trip(spec: dict[str, Any]) -> None:
    parsed = BackupSpec.model_validate(spec)
    assert BackupSpec.model_validate(parsed.to_api_dict()) == parsed


BAD_BACKUP_SPECS = [
    pytest.param(
        with_(BACKUP_SPEC, "database.engine", "oracle"),
        "spec.database.engine: Input",
        id="engine-oracle",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "database.port", -1),
        "spec.database.port: Input should be greater than or equal to 1",
        id="negative-port",
    ),
    pytest.param(with_(BACKUP_SPEC, "database.port", 70000), "spec.database.port", id="big-port"),
    pytest.param(with_(BACKUP_SPEC, "compression", "lz4"), "spec.compression: Input", id="lz4"),
    pytest.param(with_(BACKUP_SPEC, "deletionPolicy", "Keep"), "spec.deletionPolicy", id="keep"),
    pytest.param(
        with_(BACKUP_SPEC, "storage", {**S3, **VOLUME}),
        "spec.storage: set exactly one storage backend",
        id="both-backends",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "storage", {}), "spec.storage: set exactly one", id="no-backend"
    ),
    pytest.param(
        with_(BACKUP_SPEC, "storage.s3.bucket", ...),
        "spec.storage.s3.bucket: Field required",
        id="missing-bucket",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "storage.s3.bucket", "s3://backups/shop"),
        "spec.storage.s3.bucket: 's3://backups/shop' is not a bare bucket name",
        id="bucket-url",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "storage.s3.prefix", "/shop"),
        "spec.storage.s3.prefix: '/shop' is not a key prefix: drop the leading /",
        id="prefix-slash",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "storage.s3.endpoint", "minio:9000"),
        "spec.storage.s3.endpoint: 'minio:9000' is not a URL",
        id="endpoint-no-scheme",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "database.host", "postgres://db"),
        "spec.database.host: 'postgres://db' is not a host name",
        id="host-url",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "database.host", ...),
        "spec.database: engines postgresql, mysql and mariadb need host, name (the "
        "database) and user; missing: host",
        id="no-host",
    ),
    pytest.param(
        with_(with_(BACKUP_SPEC, "database.name", ...), "database.user", ...),
        "missing: name, user",
        id="no-name-no-user",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "database", {"engine": "sqlite"}),
        "spec.database: engine sqlite needs persistentVolumeClaim",
        id="sqlite-no-file",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "database", {**SQLITE, "host": "x", "port": 1}),
        "spec.database: host, port not used by engine sqlite: remove them",
        id="sqlite-with-host",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "database.persistentVolumeClaim", "data"),
        "spec.database: persistentVolumeClaim and path are for engine sqlite, not postgresql",
        id="postgres-with-pvc",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "database", {**SQLITE, "path": "../../etc/passwd"}),
        "spec.database.path: '../../etc/passwd' is not a safe path",
        id="dotdot",
    ),
    pytest.param(
        with_(
            BACKUP_SPEC, "storage", {"volume": {"persistentVolumeClaim": "b", "path": "a/../../b"}}
        ),
        "spec.storage.volume.path: 'a/../../b' is not a safe path",
        id="volume-dotdot",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "database.passwordSecretRef.name", "Shop_DB"),
        "spec.database.passwordSecretRef.name: 'Shop_DB' is not a Kubernetes object name",
        id="secret-name",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "database.passwordSecret", {"name": "x"}),
        "spec.database.passwordSecret: unknown field",
        id="typo",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "job", {"resources": {"requests": {"cpu": "lots"}}}),
        "spec.job.resources.requests.cpu: 'lots' is not a Kubernetes quantity",
        id="bad-cpu",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "job", {"resources": {"limits": {"memory": -1}}}),
        "spec.job.resources.limits.memory: must not be negative",
        id="negative-memory",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "job", {"resources": {"limits": {"gpu": 1}}}),
        "spec.job.resources.limits.gpu: unknown field",
        id="gpu",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "job", {"tolerations": [{"operator": "Exists", "value": "x"}]}),
        "spec.job.tolerations[0]: operator Exists matches any value: remove value",
        id="toleration-value",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "job", {"tolerations": [{"key": "k", "tolerationSeconds": 5}]}),
        "spec.job.tolerations[0]: tolerationSeconds works only with effect NoExecute",
        id="toleration-seconds",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "job", {"backoffLimit": -1}),
        "spec.job.backoffLimit",
        id="negative-backoff",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "job", {"activeDeadlineSeconds": 0}),
        "spec.job.activeDeadlineSeconds",
        id="zero-deadline",
    ),
    pytest.param(
        with_(BACKUP_SPEC, "database", ...), "spec.database: Field required", id="no-database"
    ),
]


@pytest.mark.parametrize(("spec", "expected"), BAD_BACKUP_SPECS)
def test_bad_backup_specs_are_rejected_naming_the_field(
    spec: dict[str, Any], expected: str
) -> None:
    assert expected in error_text(BackupSpec, spec)


RESTORE_SOURCE = {"storage": S3, "path": "shop-db-3f2a"}
GOOD_RESTORE_SPECS = [
    pytest.param({"backupRef": {"name": "shop-db"}}, id="issue"),
    pytest.param(
        {
            "backupRef": {"name": "shop-db"},
            "target": SQLITE,
            "keepExtraObjects": True,
            "verifyChecksumFirst": False,
            "job": {"backoffLimit": 0},
        },
        id="options",
    ),
    pytest.param({"source": RESTORE_SOURCE, "target": POSTGRES}, id="from-source"),
    pytest.param({"source": {"storage": VOLUME}, "target": SQLITE}, id="from-volume-root"),
]


@pytest.mark.parametrize("spec", GOOD_RESTORE_SPECS)
def test_good_restore_specs_parse_and_round_trip(spec: dict[str, Any]) -> None:
    parsed = RestoreSpec.model_validate(spec)
    assert RestoreSpec.model_validate(parsed.to_api_dict()) == parsed


BAD_RESTORE_SPECS = [
    pytest.param({}, "spec: set exactly one of backupRef", id="neither"),
    pytest.param(
        {"backupRef": {"name": "shop-db"}, "source": RESTORE_SOURCE, "target": POSTGRES},
        "spec: set exactly one of backupRef",
        id="both",
    ),
    pytest.param(
        {"source": RESTORE_SOURCE}, "spec: target is required with source", id="no-target"
    ),
    pytest.param({"backupRef": {}}, "spec.backupRef.name: Field required", id="no-name"),
    pytest.param(
        {"backupRef": {"name": "Shop"}}, "spec.backupRef.name: 'Shop' is not", id="bad-name"
    ),
    pytest.param(
        {"backupRef": {"name": "x"}, "target": {"engine": "sqlite"}},
        "spec.target: engine sqlite needs",
        id="bad-target",
    ),
    pytest.param(
        {"source": {"storage": {**S3, **VOLUME}}, "target": POSTGRES},
        "spec.source.storage: set exactly one storage backend",
        id="source-two-backends",
    ),
    pytest.param(
        {"source": {**RESTORE_SOURCE, "path": "../x"}, "target": POSTGRES},
        "spec.source.path: '../x' is not a safe path",
        id="source-dotdot",
    ),
    pytest.param(
        {"backupRef": {"name": "x"}, "keepExtraObjects": "maybe"},
        "spec.keepExtraObjects",
        id="not-a-bool",
    ),
]


@pytest.mark.parametrize(("spec", "expected"), BAD_RESTORE_SPECS)
def test_bad_restore_specs_are_rejected_naming_the_field(
    spec: dict[str, Any], expected: str
) -> None:
    assert expected in error_text(RestoreSpec, spec)


def test_describe_validation_error_lists_every_problem() -> None:
    text = error_text(
        BackupSpec,
        with_(with_(BACKUP_SPEC, "database.port", 0), "compression", "lz4"),
    )
    assert text.splitlines()[0].startswith("spec.database.port: ")
    assert text.splitlines()[1].startswith("spec.compression: ")


# -- status -----------------------------------------------------------------------------------

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_backup_status_round_trips_to_camel_case_json_without_none() -> None:
    status = BackupStatus(
        phase=Phase.RUNNING,
        progress=ProgressStatus(
            percent=42.7, bytes_done=1024, bytes_total=None, stage="dumping", updated_at=NOW
        ),
        start_time=NOW,
        job_name="shop-db-backup-3f2a",
        attempts=1,
        observed_generation=1,
        conditions=[
            Condition(
                type=ConditionType.RECONCILING,
                status=ConditionStatus.TRUE,
                reason="JobRunning",
                last_transition_time=NOW,
                observed_generation=1,
            )
        ],
        artifact=BackupArtifact(
            size=5 * 1024**3 // 2,
            sha256="a" * 64,
            compression=Compression.ZSTD,
            engine=Engine.POSTGRESQL,
        ),
    )
    body = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert body == status.to_api_dict()
    assert body == {
        "phase": "Running",
        "progress": {
            "percent": 42.7,
            "bytesDone": 1024,
            "stage": "dumping",
            "updatedAt": "2025-01-02T03:04:05Z",
            "percentText": "42%",
        },
        "startTime": "2025-01-02T03:04:05Z",
        "jobName": "shop-db-backup-3f2a",
        "attempts": 1,
        "observedGeneration": 1,
        "conditions": [
            {
                "type": "Reconciling",
                "status": "True",
                "reason": "JobRunning",
                "message": "",
                "lastTransitionTime": "2025-01-02T03:04:05Z",
                "observedGeneration": 1,
            }
        ],
        "artifact": {
            "size": 2684354560,
            "sha256": "a" * 64,
            "compression": "zstd",
            "engine": "postgresql",
            "sizeText": "2.5 GiB",
        },
    }
    assert BackupStatus.model_validate(body) == status
    assert status.condition("Reconciling") is not None
    assert status.condition("Ready") is None


def test_empty_status_dumps_to_empty_dict() -> None:
    assert BackupStatus().to_api_dict() == {}
    assert RestoreStatus().to_api_dict() == {}
    assert ProgressStatus().to_api_dict() == {}


def test_restore_status_round_trips() -> None:
    status = RestoreStatus(
        phase=Phase.FAILED,
        reason="RowCountMismatch",
        message="public.orders: 1200 rows, expected 1250",
        completion_time=NOW,
        engine=Engine.MARIADB,
        database="mariadb.shop.svc/shop",
        verification=RestoreVerification(
            checksum_verified=True,
            row_counts_matched=False,
            tables_verified=3,
            rows_verified=1200,
            backup_name="shop-db",
            mismatches=["public.orders: 1200 rows, expected 1250"],
        ),
    )
    body = status.to_api_dict()
    assert body["verification"] == {
        "checksumVerified": True,
        "rowCountsMatched": False,
        "tablesVerified": 3,
        "rowsVerified": 1200,
        "backupName": "shop-db",
        "mismatches": ["public.orders: 1200 rows, expected 1250"],
    }
    assert body["completionTime"] == "2025-01-02T03:04:05Z"
    assert RestoreStatus.model_validate(body) == status


def test_status_rejects_naive_timestamps_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="startTime"):
        BackupStatus.model_validate({"startTime": "2025-01-01T00:00:00"})
    with pytest.raises(ValidationError, match="phase"):
        BackupStatus.model_validate({"phase": "running"})
    with pytest.raises(ValidationError, match="percent"):
        ProgressStatus(percent=101)


@pytest.mark.parametrize(
    ("percent", "text"), [(0, "0%"), (41.99, "41%"), (99.9, "99%"), (100, "100%"), (120, "100%")]
)
def test_percent_text_only_says_100_when_done(percent: float, text: str) -> None:
    assert format_percent(percent) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (3 * 1024**4, "3.0 TiB")],
)
def test_size_text(size: int, text: str) -> None:
    assert format_bytes(size) == text


def test_worker_progress_snapshot_fits_status_progress() -> None:
    """The worker's ProgressSnapshot maps onto status.progress field by field."""
    from lifeboat.worker.progress import Progress

    progress = Progress("backup", clock=lambda: 0.0)
    progress.set_totals(bytes_total=100, items_total=2)
    progress.add_bytes(50)
    snapshot = progress.snapshot().to_json()
    status = ProgressStatus.model_validate(snapshot)
    body = status.to_api_dict()
    assert body["bytesDone"] == 50
    assert body["percentText"] == "50%"
    unmapped = set(snapshot) - set(ProgressStatus.model_fields)
    assert unmapped <= {"operation", "done"}, unmapped
