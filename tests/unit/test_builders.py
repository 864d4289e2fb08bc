"""Builders are pure: assert on the plain dicts they return."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lifeboat.api import Backup, BackupStore, Restore, StorageBackend
from lifeboat.api.job import JobTemplateOptions
from lifeboat.builders.jobs import (
    PROGRESS_INTERVAL_SECONDS,
    STORE_CHECK_DEADLINE_SECONDS,
    STORE_CHECK_TTL_SECONDS,
    JobDefaults,
    build_backup_job,
    build_cleanup_job,
    build_restore_job,
    build_store_check_job,
    database_url,
    storage_url,
    store_check_job_name,
    store_uri,
)
from lifeboat.builders.naming import child_name
from lifeboat.cli import build_parser
from tests.support.kubernetes_schemas import KUBERNETES_VERSIONS, kubernetes_errors

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


def inline(source: Backup) -> StorageBackend:
    """The Backup's inline spec.storage, as the controller resolves it."""
    backend = source.spec.storage.backend()
    assert backend is not None
    return backend


def backup_job(source: Backup, defaults: JobDefaults) -> dict[str, Any]:
    return build_backup_job(source, inline(source), defaults)


def cleanup_job(source: Backup, defaults: JobDefaults) -> dict[str, Any]:
    return build_cleanup_job(source, inline(source), defaults)


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_backup_job_runs_the_console_script_with_positional_urls() -> None:
    job = backup_job(backup(), JobDefaults(image="example/lifeboat:1"))
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
    job = backup_job(backup(), JobDefaults())
    env = env_of(job)
    assert env["LIFEBOAT_DB_PASSWORD"] == {"secretKeyRef": {"name": "shop-db", "key": "password"}}
    assert env["AWS_ACCESS_KEY_ID"] == {
        "secretKeyRef": {"name": "s3-credentials", "key": "AWS_ACCESS_KEY_ID"}
    }
    assert env["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"]["key"] == "AWS_SECRET_ACCESS_KEY"
    assert env["AWS_ENDPOINT_URL"] == "http://minio.storage.svc:9000"
    assert env["AWS_REGION"] == "us-east-1"


def test_job_is_owned_labelled_and_locked_down() -> None:
    job = backup_job(backup(), JobDefaults())
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
    container = pod["containers"][0]["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["containers"][0]["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_the_same_backup_builds_the_same_job() -> None:
    assert backup_job(backup(), JobDefaults()) == backup_job(backup(), JobDefaults())


def test_names_are_dns_labels_and_depend_on_the_uid() -> None:
    long = child_name("x" * 80, "uid-1", "backup")
    assert len(long) <= 63
    assert long == child_name("x" * 80, "uid-1", "backup")
    assert long != child_name("x" * 80, "uid-2", "backup")


def test_job_tuning_is_passed_through() -> None:
    job = backup_job(
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
    assert backup_job(backup(), defaults)["spec"]["activeDeadlineSeconds"] == 21600
    assert cleanup_job(backup(), defaults)["spec"]["activeDeadlineSeconds"] == 21600
    shorter = JobDefaults(active_deadline_seconds=900)
    assert backup_job(backup(), shorter)["spec"]["activeDeadlineSeconds"] == 900
    own = backup(job={"activeDeadlineSeconds": 86400})
    assert backup_job(own, shorter)["spec"]["activeDeadlineSeconds"] == 86400
    unbounded = JobDefaults(active_deadline_seconds=None)
    assert "activeDeadlineSeconds" not in backup_job(backup(), unbounded)["spec"]


def test_sqlite_database_and_volume_storage_mount_their_claims() -> None:
    spec_backup = backup(
        database={"engine": "sqlite", "persistentVolumeClaim": "app-data", "path": "db/app.db"},
        storage={"volume": {"persistentVolumeClaim": "backup-vol", "path": "nightly"}},
    )
    job = backup_job(spec_backup, JobDefaults())
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[1] == "sqlite:////var/lib/lifeboat/database/db/app.db"
    assert args[2] == "file:///var/lib/lifeboat/backups/nightly/shop/shop-db-0f1e2d3c/"
    claims = {
        v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]
    }
    assert claims == {"database": "app-data", "backups": "backup-vol", "tmp": None}


def test_cleanup_job_deletes_the_backup_location_and_has_no_owner() -> None:
    job = cleanup_job(backup(), JobDefaults())
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
        storage=inline(source),
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
        storage=inline(source),
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
    spec = inline(backup(storage={"s3": {"bucket": "bkt"}}))
    assert storage_url(spec, "ns/x-1/") == "s3://bkt/ns/x-1/"


# -- storage resolved by the controller (storeRef) and BackupStore checks ----------------------

STORE: dict[str, Any] = {
    "apiVersion": "lifeboat.dev/v1alpha1",
    "kind": "BackupStore",
    "metadata": {"name": "backups", "namespace": "shop", "uid": "5a5a5a5a-1111-2222-3333-4444"},
    "spec": {
        "s3": {
            "bucket": "team-backups",
            "prefix": "nightly",
            "endpoint": "http://minio.storage.svc:9000",
            "region": "eu-west-1",
            "credentialsSecretRef": {"name": "store-credentials", "accessKeyIdKey": "id"},
            "forcePathStyle": True,
        }
    },
}


def store(**spec: Any) -> BackupStore:
    body = copy.deepcopy(STORE)
    if spec:
        body["spec"] = spec
    return BackupStore.model_validate(body)


def store_backend(source: BackupStore) -> StorageBackend:
    return StorageBackend(s3=source.spec.s3, volume=source.spec.volume)


def test_a_backup_by_store_ref_is_built_from_the_resolved_store_not_its_spec() -> None:
    by_ref = backup(storage={"storeRef": {"name": "backups"}})
    assert by_ref.spec.storage.backend() is None  # the builders cannot resolve it themselves
    job = build_backup_job(by_ref, store_backend(store()), JobDefaults())
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][2] == "s3://team-backups/nightly/shop/shop-db-0f1e2d3c/"
    env = env_of(job)
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "store-credentials", "key": "id"}}
    assert env["AWS_SECRET_ACCESS_KEY"] == {
        "secretKeyRef": {"name": "store-credentials", "key": "AWS_SECRET_ACCESS_KEY"}
    }
    assert env["AWS_ENDPOINT_URL"] == "http://minio.storage.svc:9000"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["LIFEBOAT_S3_ADDRESSING_STYLE"] == "path"


def test_cleanup_and_restore_use_the_storage_they_are_given() -> None:
    """The controller passes where the backup was written (status.storage): a store edited
    since must not send the cleanup or the restore elsewhere."""
    by_ref = backup(storage={"storeRef": {"name": "backups"}})
    recorded = store_backend(store())
    cleanup = build_cleanup_job(by_ref, recorded, JobDefaults())
    assert cleanup["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "delete",
        "s3://team-backups/nightly/shop/shop-db-0f1e2d3c/",
    ]
    assert env_of(cleanup)["AWS_ACCESS_KEY_ID"]["secretKeyRef"]["name"] == "store-credentials"


def test_a_volume_backend_mounts_its_claim_for_a_backup_by_store_ref() -> None:
    volume = store(volume={"persistentVolumeClaim": "backup-vol", "path": "/team/"})
    job = build_backup_job(
        backup(storage={"storeRef": {"name": "backups"}}), store_backend(volume), JobDefaults()
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"][2] == (
        "file:///var/lib/lifeboat/backups/team/shop/shop-db-0f1e2d3c/"
    )
    assert {"name": "backups", "persistentVolumeClaim": {"claimName": "backup-vol"}} in pod[
        "volumes"
    ]


def test_store_check_job_runs_lifeboat_check_with_the_stores_credentials_as_refs() -> None:
    source = store()
    name = store_check_job_name(source, "1/never")
    job = build_store_check_job(source, name, JobDefaults(image="example/lifeboat:1"))
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert job["metadata"]["name"] == name
    assert container["command"] == ["lifeboat"]
    assert container["args"] == ["check", "s3://team-backups/nightly/"]
    assert container["image"] == "example/lifeboat:1"
    assert pod["serviceAccountName"] == "lifeboat-worker"
    env = env_of(job)
    assert env["AWS_ACCESS_KEY_ID"] == {"secretKeyRef": {"name": "store-credentials", "key": "id"}}
    assert env["AWS_SECRET_ACCESS_KEY"]["secretKeyRef"]["name"] == "store-credentials"
    assert [e["name"] for e in container["env"] if "KEY" in e["name"] and "value" in e] == []
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == STORE_CHECK_DEADLINE_SECONDS
    assert job["spec"]["ttlSecondsAfterFinished"] == STORE_CHECK_TTL_SECONDS
    assert job["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "lifeboat.dev/v1alpha1",
            "kind": "BackupStore",
            "name": "backups",
            "uid": STORE["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    labels = job["metadata"]["labels"]
    assert labels["lifeboat.dev/owner-kind"] == "backupstore"
    assert labels["lifeboat.dev/owner-name"] == "backups"
    assert labels["app.kubernetes.io/component"] == "check"


def test_store_check_job_names_are_one_per_store_and_check() -> None:
    source = store()
    first = store_check_job_name(source, "1/never")
    assert first == store_check_job_name(store(), "1/never")  # a restart adopts it
    assert first.startswith("backups-check-")
    assert first != store_check_job_name(source, "1/2026-01-01T00:00:00Z")
    assert first != store_check_job_name(source, "2/never")
    recreated = BackupStore.model_validate({**STORE, "metadata": {**STORE["metadata"], "uid": "x"}})
    assert first != store_check_job_name(recreated, "1/never")
    long = BackupStore.model_validate(
        {**STORE, "metadata": {**STORE["metadata"], "name": "s" * 90}}
    )
    assert len(store_check_job_name(long, "1/never")) <= 63


def test_volume_store_check_mounts_the_claim_at_the_stores_path() -> None:
    volume = store(volume={"persistentVolumeClaim": "backup-vol", "path": "team"})
    job = build_store_check_job(volume, "backups-check-x", JobDefaults())
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["check", "file:///var/lib/lifeboat/backups/team/"]
    assert {"name": "backups", "persistentVolumeClaim": {"claimName": "backup-vol"}} in pod[
        "volumes"
    ]


@pytest.mark.parametrize(
    ("spec", "uri"),
    [
        ({"s3": {"bucket": "bkt", "prefix": "shop"}}, "s3://bkt/shop/"),
        ({"s3": {"bucket": "bkt"}}, "s3://bkt/"),
        ({"volume": {"persistentVolumeClaim": "vol", "path": "/a/b/"}}, "pvc://vol/a/b/"),
        ({"volume": {"persistentVolumeClaim": "vol"}}, "pvc://vol/"),
    ],
)
def test_store_uri_says_where_backups_go_without_secrets(spec: dict[str, Any], uri: str) -> None:
    assert store_uri(store_backend(store(**spec))) == uri


# -- Job pod options: the operator's defaults, spec.job over them --------------------------------


def template(**fields: Any) -> JobTemplateOptions:
    return JobTemplateOptions.model_validate(fields)


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = job["spec"]["template"]
    return pod


def test_default_jobs_skip_the_istio_sidecar_and_request_resources() -> None:
    """The operator's built-in defaults (the chart's too): an injected sidecar would keep the
    pod running after the worker exits, and every Job states what it needs."""
    pod = pod_of(backup_job(backup(), JobDefaults()))
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert pod["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert "cpu" not in pod["spec"]["containers"][0]["resources"]["limits"]


def test_operator_defaults_fill_what_spec_job_leaves_unset() -> None:
    defaults = JobDefaults(
        template=template(
            podAnnotations={"a": "operator"},
            podLabels={"team": "platform"},
            nodeSelector={"pool": "backup"},
            tolerations=[{"key": "backup", "operator": "Exists", "effect": "NoSchedule"}],
            affinity={
                "podAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 50,
                            "podAffinityTerm": {"topologyKey": "topology.kubernetes.io/zone"},
                        }
                    ]
                }
            },
            priorityClassName="backups",
            ttlSecondsAfterFinished=3600,
            resources={"limits": {"memory": "2Gi"}},
        )
    )
    job = backup_job(backup(), defaults)
    pod = pod_of(job)
    assert pod["metadata"]["annotations"] == {"a": "operator"}
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert pod["spec"]["nodeSelector"] == {"pool": "backup"}
    assert pod["spec"]["tolerations"] == [
        {"key": "backup", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert (
        pod["spec"]["affinity"]["podAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][
            0
        ]["weight"]
        == 50
    )
    assert pod["spec"]["priorityClassName"] == "backups"
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"memory": "2Gi"}}
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    # the Job's own labels stay Lifeboat's: the pod labels are for the pod
    assert "team" not in job["metadata"]["labels"]


def test_spec_job_wins_field_by_field_and_merges_annotations_and_labels_key_by_key() -> None:
    defaults = JobDefaults(
        template=template(
            podAnnotations={"sidecar.istio.io/inject": "false", "keep": "me"},
            podLabels={"team": "platform", "cost-center": "ops"},
            nodeSelector={"pool": "backup"},
            tolerations=[{"operator": "Exists"}],
            priorityClassName="backups",
            ttlSecondsAfterFinished=3600,
            resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        )
    )
    own = backup(
        job={
            "podAnnotations": {"sidecar.istio.io/inject": "true"},
            "podLabels": {"team": "shop"},
            "nodeSelector": {},
            "tolerations": [],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": ["node-7"],
                                    }
                                ]
                            }
                        ]
                    }
                }
            },
            "priorityClassName": "critical",
            "ttlSecondsAfterFinished": 60,
            "resources": {"limits": {"memory": "4Gi"}},
        }
    )
    job = backup_job(own, defaults)
    pod = pod_of(job)
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "true", "keep": "me"}
    assert pod["metadata"]["labels"]["team"] == "shop"
    assert pod["metadata"]["labels"]["cost-center"] == "ops"
    # set, even empty: the object's own choice replaces the operator's
    assert "nodeSelector" not in pod["spec"]
    assert "tolerations" not in pod["spec"]
    assert pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == ["node-7"]
    assert pod["spec"]["priorityClassName"] == "critical"
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    # resources replace the default as a whole: no request above the new limit is left behind
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"memory": "4Gi"}}


def test_lifeboat_labels_cannot_be_overridden_by_pod_labels() -> None:
    own = backup(
        job={
            "podLabels": {
                "app.kubernetes.io/managed-by": "someone-else",
                "lifeboat.dev/owner-name": "other",
                "extra": "yes",
            }
        }
    )
    labels = pod_of(backup_job(own, JobDefaults()))["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "lifeboat-operator"
    assert labels["lifeboat.dev/owner-name"] == "shop-db"
    assert labels["extra"] == "yes"


def test_store_checks_keep_their_own_ttl_and_take_the_operators_pod_options() -> None:
    defaults = JobDefaults(template=template(ttlSecondsAfterFinished=5, nodeSelector={"a": "b"}))
    job = build_store_check_job(store(), "backups-check-x", defaults)
    assert job["spec"]["ttlSecondsAfterFinished"] == STORE_CHECK_TTL_SECONDS
    assert job["spec"]["template"]["spec"]["nodeSelector"] == {"a": "b"}


def test_backup_and_restore_jobs_log_json_progress_at_the_interval() -> None:
    """The worker's own parser reads the Job's args: JSON progress lines, thinned out."""
    parser = build_parser()
    restore = Restore.model_validate(
        {
            "metadata": {"name": "r", "namespace": "shop", "uid": "u"},
            "spec": {"backupRef": {"name": "b"}},
        }
    )
    source = backup()
    jobs = [
        backup_job(source, JobDefaults()),
        build_restore_job(
            restore,
            storage=inline(source),
            source_url="s3://backups/x/",
            target=source.spec.database,
            defaults=JobDefaults(),
        ),
    ]
    for job in jobs:
        args = parser.parse_args(job["spec"]["template"]["spec"]["containers"][0]["args"])
        assert args.progress == "json"
        assert args.progress_interval == PROGRESS_INTERVAL_SECONDS


FULL_OPTIONS: dict[str, Any] = {
    "image": "registry.local/lifeboat:1.0",
    "podAnnotations": {"sidecar.istio.io/inject": "false"},
    "podLabels": {"team": "db"},
    "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"cpu": 2}},
    "nodeSelector": {"kubernetes.io/arch": "amd64"},
    "tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"},
        {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
    ],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]},
                ]
            },
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "preference": {
                        "matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]
                    },
                }
            ],
        },
        "podAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "postgres"}},
                    "namespaces": ["shop"],
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        },
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchExpressions": [{"key": "r", "operator": "Exists"}]},
                        "namespaceSelector": {"matchLabels": {"env": "prod"}},
                        "topologyKey": "topology.kubernetes.io/zone",
                    },
                }
            ]
        },
    },
    "priorityClassName": "backup-critical",
    "serviceAccountName": "backup-writer",
    "activeDeadlineSeconds": 3600,
    "backoffLimit": 2,
    "ttlSecondsAfterFinished": 86400,
}


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "job",
    [
        pytest.param(lambda: backup_job(backup(), JobDefaults()), id="backup-defaults"),
        pytest.param(lambda: backup_job(backup(job=FULL_OPTIONS), JobDefaults()), id="backup-full"),
        pytest.param(lambda: cleanup_job(backup(job=FULL_OPTIONS), JobDefaults()), id="cleanup"),
        pytest.param(
            lambda: build_store_check_job(store(), "backups-check-x", JobDefaults()), id="check"
        ),
        pytest.param(
            lambda: backup_job(
                backup(
                    database={"engine": "sqlite", "persistentVolumeClaim": "d", "path": "a.db"},
                    storage={"volume": {"persistentVolumeClaim": "b"}},
                ),
                JobDefaults(template=JobTemplateOptions()),
            ),
            id="sqlite-no-defaults",
        ),
    ],
)
def test_jobs_are_valid_kubernetes_jobs(job: Any, kubernetes_version: str) -> None:
    """Every field the builders write exists in batch/v1 Job, with its type (strict schemas:
    a misspelt field fails), in the oldest Kubernetes the chart supports and the newest."""
    assert kubernetes_errors(job(), kubernetes_version) == []


def test_the_kubernetes_schema_check_can_fail() -> None:
    job = backup_job(backup(), JobDefaults())
    pod = job["spec"]["template"]["spec"]
    pod["nodeSelecter"] = {"disk": "ssd"}
    pod["containers"][0]["resources"]["limits"]["memory"] = ["1Gi"]
    job["spec"]["backoffLimit"] = "2"
    for version in KUBERNETES_VERSIONS:
        errors = "\n".join(kubernetes_errors(job, version))
        assert "'nodeSelecter' was unexpected" in errors, errors
        assert "spec.template.spec.containers.0.resources.limits.memory" in errors, errors
        assert "spec.backoffLimit" in errors, errors
