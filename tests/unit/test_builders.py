"""Builders are pure: assert on the plain dicts they return."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lifeboat.api import Backup, Restore
from lifeboat.builders.jobs import (
    JobDefaults,
    build_backup_job,
    build_cleanup_job,
    build_restore_job,
    database_url,
    storage_url,
)
from lifeboat.builders.naming import child_name

BACKUP: dict[str, Any] = {
    "apiVersion": "lifeboat.dev/v1alpha1",
    "kind": "Backup",
    "metadata": {"name": "shop-db", "namespace": "shop", "uid": "0f1e2d3c-aaaa-bbbb-cccc-1234"},
    "spec": {
        "database": {
            "engine": "postgresql",
            "host": "postgres.shop.svc",
            "port": 5432,
            "name": "shop",
            "user": "backup",
            "passwordSecretRef": {"name": "shop-db", "key": "password"},
        },
        "storage": {
            "s3": {
                "bucket": "backups",
                "prefix": "shop/",
                "endpoint": "http://minio.storage.svc:9000",
                "region": "us-east-1",
                "credentialsSecretRef": {"name": "s3-credentials"},
            }
        },
        "compression": "zstd",
        "deletionPolicy": "Delete",
    },
}


def backup(**spec_changes: Any) -> Backup:
    body = copy.deepcopy(BACKUP)
    body["spec"].update(spec_changes)
    return Backup.model_validate(body)


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_backup_job_runs_the_console_script_with_positional_urls() -> None:
    job = build_backup_job(backup(), JobDefaults(image="example/lifeboat:1"))
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert job["metadata"]["name"] == child_name("shop-db", BACKUP["metadata"]["uid"], "backup")
    assert container["command"] == ["lifeboat"]
    assert container["args"][:3] == [
        "backup",
        "postgresql://backup@postgres.shop.svc:5432/shop",
        "s3://backups/shop/shop/shop-db-0f1e2d3c/",
    ]
    assert container["args"][-2:] == ["--report-status", "backups/shop/shop-db"]
    assert container["image"] == "example/lifeboat:1"


def test_credentials_are_secret_refs_never_values() -> None:
    job = build_backup_job(backup(), JobDefaults())
    env = env_of(job)
    assert env["LIFEBOAT_DB_PASSWORD"] == {"secretKeyRef": {"name": "shop-db", "key": "password"}}
    assert env["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "s3-credentials", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert env["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"]["key"] == "AWS_SECRET_ACCESS_KEY"
    assert env["AWS_ENDPOINT_URL"] == "http://minio.storage.svc:9000"
    assert env["AWS_REGION"] == "us-east-1"


def test_job_is_owned_labelled_and_locked_down() -> None:
    job = build_backup_job(backup(), JobDefaults())
    meta = job["metadata"]
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "lifeboat.dev/v1alpha1",
            "kind": "Backup",
            "name": "shop-db",
            "uid": BACKUP["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "lifeboat-operator"
    assert meta["labels"]["app.kubernetes.io/instance"] == "shop-db"
    assert meta["labels"]["app.kubernetes.io/component"] == "backup"
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_the_same_backup_builds_the_same_job() -> None:
    assert build_backup_job(backup(), JobDefaults()) == build_backup_job(backup(), JobDefaults())


def test_names_are_dns_labels_and_depend_on_the_uid() -> None:
    long = child_name("x" * 80, "uid-1", "backup")
    assert len(long) <= 63
    assert long == child_name("x" * 80, "uid-1", "backup")
    assert long != child_name("x" * 80, "uid-2", "backup")


def test_job_tuning_is_passed_through() -> None:
    job = build_backup_job(
        backup(
            job={
                "resources": {"limits": {"memory": "256Mi"}},
                "nodeSelector": {"disk": "ssd"},
                "tolerations": [{"key": "db", "operator": "Exists", "effect": "NoSchedule"}],
                "serviceAccountName": "custom",
                "activeDeadlineSeconds": 600,
                "backoffLimit": 0,
            }
        ),
        JobDefaults(),
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"limits": {"memory": "256Mi"}}
    assert pod["nodeSelector"] == {"disk": "ssd"}
    assert pod["tolerations"] == [{"key": "db", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["serviceAccountName"] == "custom"
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert job["spec"]["backoffLimit"] == 0


def test_every_job_has_a_deadline_the_operators_default_unless_spec_job_sets_one() -> None:
    """A worker that hangs must end: Jobs get the operator's default activeDeadlineSeconds
    (6 hours unless --job-active-deadline-seconds says otherwise); spec.job's own wins."""
    defaults = JobDefaults()
    assert defaults.active_deadline_seconds == 6 * 3600
    assert build_backup_job(backup(), defaults)["spec"]["activeDeadlineSeconds"] == 21600
    assert build_cleanup_job(backup(), defaults)["spec"]["activeDeadlineSeconds"] == 21600
    shorter = JobDefaults(active_deadline_seconds=900)
    assert build_backup_job(backup(), shorter)["spec"]["activeDeadlineSeconds"] == 900
    own = backup(job={"activeDeadlineSeconds": 86400})
    assert build_backup_job(own, shorter)["spec"]["activeDeadlineSeconds"] == 86400
    unbounded = JobDefaults(active_deadline_seconds=None)
    assert "activeDeadlineSeconds" not in build_backup_job(backup(), unbounded)["spec"]


def test_sqlite_database_and_volume_storage_mount_their_claims() -> None:
    spec_backup = backup(
        database={"engine": "sqlite", "persistentVolumeClaim": "app-data", "path": "db/app.db"},
        storage={"volume": {"persistentVolumeClaim": "backup-vol", "path": "nightly"}},
    )
    job = build_backup_job(spec_backup, JobDefaults())
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[1] == "sqlite:////var/lib/lifeboat/database/db/app.db"
    assert args[2] == "file:///var/lib/lifeboat/backups/nightly/shop/shop-db-0f1e2d3c/"
    claims = {
        v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]
    }
    assert claims == {"database": "app-data", "backups": "backup-vol", "tmp": None}


def test_cleanup_job_deletes_the_backup_location_and_has_no_owner() -> None:
    job = build_cleanup_job(backup(), JobDefaults())
    assert "ownerReferences" not in job["metadata"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "delete",
        "s3://backups/shop/shop/shop-db-0f1e2d3c/",
    ]


def test_restore_job_carries_options_and_the_target() -> None:
    restore = Restore.model_validate(
        {
            "apiVersion": "lifeboat.dev/v1alpha1",
            "kind": "Restore",
            "metadata": {"name": "r1", "namespace": "shop", "uid": "u-2"},
            "spec": {
                "backupRef": {"name": "shop-db"},
                "keepExtraObjects": True,
                "verifyChecksumFirst": False,
            },
        }
    )
    source = backup()
    job = build_restore_job(
        restore,
        storage=source.spec.storage,
        source_url="s3://backups/shop/shop/shop-db-0f1e2d3c/",
        target=source.spec.database,
        defaults=JobDefaults(),
    )
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:3] == [
        "restore",
        "s3://backups/shop/shop/shop-db-0f1e2d3c/",
        "postgresql://backup@postgres.shop.svc:5432/shop",
    ]
    assert "--keep-extra-objects" in args
    assert "--no-verify-first" in args
    assert "--dry-run" not in args
    assert job["spec"]["backoffLimit"] == 0


def test_dry_run_and_owner_options_reach_the_worker() -> None:
    restore = Restore.model_validate(
        {
            "apiVersion": "lifeboat.dev/v1alpha1",
            "kind": "Restore",
            "metadata": {"name": "r2", "namespace": "shop", "uid": "u-3"},
            "spec": {
                "backupRef": {"name": "shop-db"},
                "dryRun": True,
                "noOwner": True,
                "noPrivileges": True,
            },
        }
    )
    source = backup()
    job = build_restore_job(
        restore,
        storage=source.spec.storage,
        source_url="s3://backups/shop/shop/shop-db-0f1e2d3c/",
        target=source.spec.database,
        defaults=JobDefaults(),
    )
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {"--dry-run", "--no-owner", "--no-privileges"} <= set(args)


@pytest.mark.parametrize(
    ("database", "url"),
    [
        (
            {"engine": "mysql", "host": "h", "name": "d b", "user": "u@x"},
            "mysql://u%40x@h:3306/d%20b",
        ),
        (
            {"engine": "mariadb", "host": "h", "port": 3307, "name": "d", "user": "u"},
            "mariadb://u@h:3307/d",
        ),
    ],
)
def test_database_urls_are_quoted_and_password_free(database: dict[str, Any], url: str) -> None:
    assert database_url(backup(database=database).spec.database) == url


def test_storage_url_without_prefix_uses_the_bucket_root() -> None:
    spec = backup(storage={"s3": {"bucket": "bkt"}}).spec.storage
    assert storage_url(spec, "ns/x-1/") == "s3://bkt/ns/x-1/"
