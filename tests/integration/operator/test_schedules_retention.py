"""A schedule's history: retention prunes Backups through the API and each pruned Backup's
deletionPolicy decides whether its files in S3 go; deleting the schedule keeps its Backups,
unless it is deleted in the foreground (`kubectl delete --cascade=foreground`)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.operator.conftest import Cluster, SqliteShop
from tests.integration.operator.test_schedules import Scheduling, at, scheduling_stage
from tests.support.e2e import E2E_SETTINGS


def s3_template(cluster: Cluster, shop: SqliteShop, s3: Any, **extra: Any) -> dict[str, Any]:
    """The SQLite database of `shop`, backed up to S3 (where files can be seen going)."""
    cluster.secret(
        "s3",
        {
            "AWS_ACCESS_KEY_ID": s3.env["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": s3.env["AWS_SECRET_ACCESS_KEY"],
        },
    )
    return {
        "database": shop.spec()["database"],
        "storage": {
            "s3": {
                "bucket": s3.bucket,
                "prefix": "team/",
                "endpoint": E2E_SETTINGS.reachable_url(s3.endpoint),
                "region": "us-east-1",
                "credentialsSecretRef": {"name": "s3"},
                "forcePathStyle": True,
            }
        },
        **extra,
    }


def stored(s3: Any) -> set[str]:
    """The Backups whose files are in the bucket, by name (directories are <name>-<uid[:8]>)."""
    manifests = [key for key in s3.keys() if key.endswith("/manifest.json")]  # noqa: SIM118
    return {key.split("/")[2].rsplit("-", 1)[0] for key in manifests}


@pytest.fixture
def scheduling(cluster: Cluster, sqlite_shop: SqliteShop) -> Iterator[Scheduling]:
    with scheduling_stage(cluster) as stage:
        yield stage


def name(hour: int) -> str:
    return f"nightly-20261203-{hour:02d}00"


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_retention_prunes_backups_and_their_deletion_policy_decides_the_files(
    scheduling: Scheduling, sqlite_shop: SqliteShop, s3_bucket: Any, policy: str
) -> None:
    cluster = scheduling.cluster
    template = s3_template(cluster, sqlite_shop, s3_bucket, deletionPolicy=policy)
    scheduling.create("nightly", template, retention={"keepLast": 2})
    scheduling.wait_planned("nightly", at(2))
    for hour in (2, 3, 4, 5):
        scheduling.completed(scheduling.fire("nightly", at(hour)))

    cluster.wait_for(lambda: set(scheduling.backups("nightly")) == {name(4), name(5)})
    status = scheduling.status("nightly")
    assert [(k["name"], k["rules"]) for k in status["kept"]] == [
        (name(5), ["last", "newest"]),
        (name(4), ["last"]),
    ]
    assert status["keptCount"] == 2
    assert status["kept"][0]["time"] == "2026-12-03T05:00:00Z"
    pruned = [m for r, m in cluster.events_for("nightly") if r == "BackupPruned"]
    assert sorted(m.split()[2] for m in pruned) == [name(2), name(3)]
    if policy == "Delete":
        assert all("deletes its files" in m for m in pruned), pruned
        cluster.wait_for(lambda: stored(s3_bucket) == {name(4), name(5)}, timeout=30)
    else:
        assert all("keeps its files in storage" in m for m in pruned), pruned
        assert stored(s3_bucket) == {name(h) for h in (2, 3, 4, 5)}


def test_failed_backups_go_by_their_limit_and_the_newest_completed_always_stays(
    scheduling: Scheduling, sqlite_shop: SqliteShop
) -> None:
    cluster = scheduling.cluster
    scheduling.create(
        "nightly",
        sqlite_shop.spec(),
        retention={"maxAge": "1h"},
        failedBackupsHistoryLimit=1,
    )
    scheduling.wait_planned("nightly", at(2))
    good = scheduling.fire("nightly", at(2))
    scheduling.completed(good)
    # A broken template (the file moved): later slots fail; the Backup made before is untouched.
    broken = sqlite_shop.spec()
    broken["database"]["path"] = "moved.db"
    scheduling.patch("nightly", {"spec": {"template": broken}})
    for hour in (3, 4):
        failed = scheduling.fire("nightly", at(hour))
        assert cluster.wait_phase("backups", failed, "Completed", "Failed")["phase"] == "Failed"

    cluster.wait_for(lambda: set(scheduling.backups("nightly")) == {good, name(4)})
    assert scheduling.backups("nightly")[good]["spec"]["database"]["path"] == "shop.db"
    kept = scheduling.status("nightly")["kept"]
    assert [(k["name"], k["rules"]) for k in kept] == [(good, ["newest"])]  # 2 h > maxAge 1 h
    pruned = [m for r, m in cluster.events_for("nightly") if r == "BackupPruned"]
    assert len(pruned) == 1
    assert name(3) in pruned[0]
    assert "failedBackupsHistoryLimit 1" in pruned[0]


def test_deleting_a_schedule_keeps_its_backups_and_their_files(
    scheduling: Scheduling, sqlite_shop: SqliteShop, s3_bucket: Any
) -> None:
    cluster = scheduling.cluster
    template = s3_template(cluster, sqlite_shop, s3_bucket, deletionPolicy="Delete")
    scheduling.create("nightly", template)
    scheduling.wait_planned("nightly", at(2))
    for hour in (2, 3):
        scheduling.completed(scheduling.fire("nightly", at(hour)))

    cluster.delete("backupschedules", "nightly")  # kubectl delete backupschedule nightly

    cluster.wait_for(lambda: cluster.get("backupschedules", "nightly") is None)
    backups = scheduling.backups("nightly")  # still found by their label
    assert set(backups) == {name(2), name(3)}
    for backup in backups.values():
        assert "ownerReferences" not in backup["metadata"]
        assert not backup["metadata"].get("deletionTimestamp")
        assert backup["status"]["phase"] == "Completed"
    assert stored(s3_bucket) == {name(2), name(3)}
    kept = [m for r, m in cluster.events_for("nightly") if r == "BackupsKept"]
    assert kept == ["2 Backups kept: no longer owned by this BackupSchedule, still labelled "
                    "lifeboat.dev/schedule=nightly"]  # fmt: skip
    # A schedule created again with the name does not prune what the old one left.
    scheduling.create("nightly", template, retention={"keepLast": 1})
    scheduling.wait_planned("nightly", at(4))
    scheduling.completed(scheduling.fire("nightly", at(4)))
    scheduling.look("nightly")
    assert set(scheduling.backups("nightly")) == {name(2), name(3), name(4)}


def test_deleting_a_schedule_in_the_foreground_deletes_its_backups_by_their_policy(
    scheduling: Scheduling, sqlite_shop: SqliteShop, s3_bucket: Any
) -> None:
    cluster = scheduling.cluster
    template = s3_template(cluster, sqlite_shop, s3_bucket, deletionPolicy="Delete")
    scheduling.create("nightly", template)
    scheduling.wait_planned("nightly", at(2))
    for hour in (2, 3):
        scheduling.completed(scheduling.fire("nightly", at(hour)))
    retained = scheduling.backups("nightly")[name(3)]
    scheduling.cluster.custom.patch_namespaced_custom_object(
        "lifeboat.dev",
        "v1alpha1",
        cluster.namespace,
        "backups",
        retained["metadata"]["name"],
        {"spec": {"deletionPolicy": "Retain"}},  # this one's files are to stay
    )

    subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "-n",
            cluster.namespace,
            "delete",
            "backupschedule",
            "nightly",
            "--cascade=foreground",
            "--wait=false",
        ],
        check=True,
        capture_output=True,
    )

    cluster.wait_for(lambda: cluster.get("backupschedules", "nightly") is None, timeout=30)
    assert scheduling.backups("nightly") == {}
    cluster.wait_for(lambda: stored(s3_bucket) == {name(3)})  # Delete went, Retain stayed
