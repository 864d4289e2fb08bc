"""A Restore kept in Git does not restore again when a GitOps tool re-creates it.

Deleted and applied again, a Restore is a new object (a new uid) with the same name. The Backup
remembers every Restore that read it (status.restores) and the operator refuses a name that has
already restored it (Failed, AlreadyRestored), unless the user asks explicitly: a new name, or
the annotation lifeboat.dev/restore-again with a value not used before. The real operator, the
real worker and a real SQLite database: the data shows whether a restore ran.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from lifeboat.api.restore import RESTORE_AGAIN_ANNOTATION
from lifeboat.builders.backups import SCHEDULE_LABEL
from lifeboat.cli.demo import fingerprint
from tests.integration.operator.conftest import (
    GROUP,
    VERSION,
    Cluster,
    OperatorControl,
    SqliteShop,
)


def apply_restore(
    cluster: Cluster, name: str, spec: dict[str, Any], *, again: str | None = None
) -> None:
    """What `kubectl apply` of a Restore from Git does when it does not exist (any more)."""
    metadata: dict[str, Any] = {"name": name, "namespace": cluster.namespace}
    if again is not None:
        metadata["annotations"] = {RESTORE_AGAIN_ANNOTATION: again}
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Restore", "metadata": metadata}
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, "restores", {**body, "spec": spec}
    )


def prune(cluster: Cluster, name: str) -> None:
    """What a GitOps prune (or a namespace re-created) does to it."""
    cluster.delete("restores", name)
    cluster.wait_for(lambda: cluster.get("restores", name) is None, timeout=30)


def damage(shop: SqliteShop) -> str:
    """Change the data, so that a restore that runs shows (the fingerprint changes back)."""
    with sqlite3.connect(shop.db_path) as conn:
        conn.execute("DELETE FROM orders WHERE id > 5")
    return fingerprint(shop.db_path)


def restore_jobs(cluster: Cluster) -> list[str]:
    return sorted(
        j["metadata"]["name"] for j in cluster.jobs() if "-restore-" in j["metadata"]["name"]
    )


def history(cluster: Cluster, backup: str) -> list[dict[str, Any]]:
    restores: list[dict[str, Any]] = cluster.status("backups", backup).get("restores") or []
    return restores


def test_a_re_created_restore_is_refused_until_asked_for_by_annotation_or_a_new_name(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "shop", sqlite_shop.spec())
    backup = cluster.wait_phase("backups", "shop", "Completed", "Failed")
    assert backup["phase"] == "Completed", backup
    original = fingerprint(sqlite_shop.db_path)
    damage(sqlite_shop)

    apply_restore(cluster, "undo", {"backupRef": {"name": "shop"}})
    first = cluster.wait_phase("restores", "undo", "Completed", "Failed")
    assert first["phase"] == "Completed", first
    assert fingerprint(sqlite_shop.db_path) == original
    uid = cluster.get("restores", "undo")["metadata"]["uid"]  # type: ignore[index]
    (entry,) = history(cluster, "shop")
    assert entry["name"] == "undo"
    assert entry["uid"] == uid
    assert entry["result"] == "Completed"
    assert entry["reason"] == "Completed"
    assert entry["dryRun"] is False
    assert entry["checksumVerified"] is True
    assert entry["tablesVerified"] == backup["artifact"]["tables"]
    assert entry["rowsVerified"] == backup["artifact"]["rows"]
    assert entry["database"] == "shop.db"
    assert "restoreAgain" not in entry
    jobs = restore_jobs(cluster)
    assert len(jobs) == 1

    # The GitOps tool re-creates it: the same name, a new uid. Nothing is restored.
    damaged = damage(sqlite_shop)
    prune(cluster, "undo")
    apply_restore(cluster, "undo", {"backupRef": {"name": "shop"}})
    refused = cluster.wait_phase("restores", "undo", "Completed", "Failed")
    assert refused["phase"] == "Failed", refused
    assert refused["reason"] == "AlreadyRestored"
    assert "already restored Backup shop" in refused["message"]
    assert f'{RESTORE_AGAIN_ANNOTATION}: "<a new value>"' in refused["message"]
    assert "new name" in refused["message"]
    assert f"{entry['tablesVerified']} tables" in refused["message"]
    stalled = {c["type"]: c for c in refused["conditions"]}["Stalled"]
    assert (stalled["status"], stalled["reason"]) == ("True", "AlreadyRestored")
    assert "jobName" not in refused
    assert set(restore_jobs(cluster)) <= set(jobs)  # no new Job (the old one went with its owner)
    assert fingerprint(sqlite_shop.db_path) == damaged
    assert len(history(cluster, "shop")) == 1  # a refusal restored nothing: not recorded

    # Asked for explicitly: the annotation with a new value. It restores, and is recorded.
    prune(cluster, "undo")
    apply_restore(cluster, "undo", {"backupRef": {"name": "shop"}}, again="2026-12-03")
    again = cluster.wait_phase("restores", "undo", "Completed", "Failed")
    assert again["phase"] == "Completed", again
    assert fingerprint(sqlite_shop.db_path) == original
    assert [(e["name"], e["restoreAgain"]) for e in history(cluster, "shop")[1:]] == [
        ("undo", "2026-12-03")
    ]

    # The same manifest applied once more (same annotation value): refused again.
    damaged = damage(sqlite_shop)
    prune(cluster, "undo")
    apply_restore(cluster, "undo", {"backupRef": {"name": "shop"}}, again="2026-12-03")
    repeated = cluster.wait_phase("restores", "undo", "Completed", "Failed")
    assert (repeated["phase"], repeated["reason"]) == ("Failed", "AlreadyRestored")
    assert "'2026-12-03' was used by that restore already" in repeated["message"]
    assert fingerprint(sqlite_shop.db_path) == damaged

    # A new name is a new request.
    apply_restore(cluster, "undo-again", {"backupRef": {"name": "shop"}})
    renamed = cluster.wait_phase("restores", "undo-again", "Completed", "Failed")
    assert renamed["phase"] == "Completed", renamed
    assert fingerprint(sqlite_shop.db_path) == original
    assert [e["name"] for e in history(cluster, "shop")] == ["undo", "undo", "undo-again"]


def test_dry_runs_are_never_refused_and_never_count(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    cluster.create("backups", "shop", sqlite_shop.spec())
    assert cluster.wait_phase("backups", "shop", "Completed", "Failed")["phase"] == "Completed"
    original = fingerprint(sqlite_shop.db_path)

    apply_restore(cluster, "rehearse", {"backupRef": {"name": "shop"}, "dryRun": True})
    assert cluster.wait_phase("restores", "rehearse", "Completed", "Failed")["reason"] == (
        "DryRunSucceeded"
    )
    (rehearsal,) = history(cluster, "shop")
    assert (rehearsal["dryRun"], rehearsal["reason"]) == (True, "DryRunSucceeded")

    # The same name, for real: the dry run did not count.
    damage(sqlite_shop)
    prune(cluster, "rehearse")
    apply_restore(cluster, "rehearse", {"backupRef": {"name": "shop"}})
    real = cluster.wait_phase("restores", "rehearse", "Completed", "Failed")
    assert real["phase"] == "Completed", real
    assert fingerprint(sqlite_shop.db_path) == original

    # And a dry run of a name that has restored is still allowed: it changes nothing.
    prune(cluster, "rehearse")
    apply_restore(cluster, "rehearse", {"backupRef": {"name": "shop"}, "dryRun": True})
    assert cluster.wait_phase("restores", "rehearse", "Completed", "Failed")["reason"] == (
        "DryRunSucceeded"
    )
    assert [(e["dryRun"], e["result"]) for e in history(cluster, "shop")] == [
        (True, "Completed"),
        (False, "Completed"),
        (True, "Completed"),
    ]


def test_a_re_created_restore_of_a_schedules_latest_backup_does_not_restore_a_newer_one(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop
) -> None:
    """`scheduleRef` means "the newest Completed Backup" when the Restore starts: re-created
    later, it would name a newer Backup whose history is empty. The schedule's Backups'
    histories together decide."""

    def scheduled_backup(name: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Backup",
            "metadata": {"name": name, "labels": {SCHEDULE_LABEL: "nightly"}},
            "spec": sqlite_shop.spec(),
        }
        cluster.custom.create_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, "backups", body
        )
        assert cluster.wait_phase("backups", name, "Completed", "Failed")["phase"] == "Completed"

    scheduled_backup("nightly-1")
    apply_restore(cluster, "latest", {"scheduleRef": {"name": "nightly"}})
    first = cluster.wait_phase("restores", "latest", "Completed", "Failed")
    assert (first["phase"], first["resolvedBackup"]) == ("Completed", "nightly-1")

    scheduled_backup("nightly-2")
    damaged = damage(sqlite_shop)
    prune(cluster, "latest")
    apply_restore(cluster, "latest", {"scheduleRef": {"name": "nightly"}})
    refused = cluster.wait_phase("restores", "latest", "Completed", "Failed")
    assert (refused["phase"], refused["reason"]) == ("Failed", "AlreadyRestored"), refused
    assert "already restored Backup nightly-1" in refused["message"]
    assert fingerprint(sqlite_shop.db_path) == damaged
    assert history(cluster, "nightly-2") == []
