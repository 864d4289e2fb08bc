"""Deleting the namespace of a Backup with deletionPolicy Delete ends, and says what happened.

A terminating namespace refuses new objects (403, cause NamespaceTerminating), so no cleanup Job
can run in it. The operator then keeps the backup in storage, records why in the Backup's
StorageCleanup condition (False, NamespaceTerminating, with the location) and in its log, and
lets the finalizer go: the namespace disappears instead of hanging in Terminating.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Any

import pytest
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from tests.integration.operator.conftest import (
    GROUP,
    VERSION,
    Cluster,
    OperatorControl,
    SqliteShop,
    _prepare_namespace,
)
from tests.integration.operator.test_deletion import stored_files
from tests.support.e2e import E2E_SETTINGS


@pytest.fixture
def doomed(cluster: Cluster) -> Cluster:
    """A namespace of its own, which the test deletes."""
    namespace = f"doomed-{uuid.uuid4().hex[:6]}"
    other = dataclasses.replace(cluster, namespace=namespace)
    if E2E_SETTINGS.enabled:
        _prepare_namespace(other)
    else:
        cluster.core.create_namespace({"metadata": {"name": namespace}})
    return other


def namespace_gone(cluster: Cluster, name: str) -> bool:
    try:
        cluster.core.read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def history(cluster: Cluster, name: str, since: str) -> list[tuple[str, dict[str, Any]]]:
    """What happened to a Backup after resourceVersion `since` (it may be gone now)."""
    stream = watch.Watch().stream(
        cluster.custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        cluster.namespace,
        "backups",
        resource_version=since,
        timeout_seconds=1,
    )
    return [
        (event["type"], event["object"])
        for event in stream
        if event["object"]["metadata"]["name"] == name
    ]


def cleanup_conditions(events: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    for _, obj in events:
        for condition in (obj.get("status") or {}).get("conditions") or []:
            if condition["type"] == "StorageCleanup":
                entry = (condition["status"], condition["reason"])
                if not seen or seen[-1] != entry:
                    seen.append(entry)
    return seen


def complete_backup(doomed: Cluster, shop: SqliteShop) -> str:
    doomed.create("backups", "nightly", shop.spec(deletionPolicy="Delete"))
    status = doomed.wait_phase("backups", "nightly", "Completed", "Failed")
    assert status["phase"] == "Completed", status
    assert stored_files(shop) == ["manifest.json", "sqlite.dump.zst"]
    obj = doomed.get("backups", "nightly")
    assert obj is not None
    return str(obj["metadata"]["resourceVersion"])


def test_deleting_the_namespace_keeps_a_delete_policy_backup_and_does_not_hang(
    cluster: Cluster,
    lifeboat_operator: OperatorControl,
    sqlite_shop: SqliteShop,
    doomed: Cluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    since = complete_backup(doomed, sqlite_shop)
    artifact = doomed.status("backups", "nightly")["artifact"]["uri"]
    location = "/".join(artifact.split("/")[-3:-1])  # <namespace>/<name>-<uid>, as in storage

    with caplog.at_level(logging.WARNING, logger="lifeboat"):
        cluster.core.delete_namespace(doomed.namespace)
        cluster.wait_for(lambda: namespace_gone(cluster, doomed.namespace), timeout=30)

    assert stored_files(sqlite_shop) == ["manifest.json", "sqlite.dump.zst"]
    events = history(doomed, "nightly", since)
    assert events[-1][0] == "DELETED"
    assert cleanup_conditions(events) == [("False", "NamespaceTerminating")]
    [said] = [
        c for _, obj in events for c in obj["status"]["conditions"] if c["type"] == "StorageCleanup"
    ][-1:]
    assert f"namespace {doomed.namespace} is being deleted" in said["message"]
    assert location in said["message"]
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("lifeboat")]
    assert any("refuses new Jobs" in m and location in m for m in logged), logged


def test_a_cleanup_job_cut_off_by_the_namespace_deletion_does_not_loop(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop, doomed: Cluster
) -> None:
    since = complete_backup(doomed, sqlite_shop)
    cluster.runner.hold_when(lambda namespace, name: "-cleanup-" in name)
    doomed.delete("backups", "nightly")
    cluster.wait_for(
        lambda: any("-cleanup-" in job["metadata"]["name"] for job in doomed.jobs()),
        message="the cleanup Job exists (held: it never gets to run)",
    )

    cluster.core.delete_namespace(doomed.namespace)

    cluster.wait_for(lambda: namespace_gone(cluster, doomed.namespace), timeout=30)
    assert stored_files(sqlite_shop) == ["manifest.json", "sqlite.dump.zst"]
    assert cleanup_conditions(history(doomed, "nightly", since)) == [
        ("Unknown", "Deleting"),
        ("False", "NamespaceTerminating"),
    ]


def test_deleting_the_namespace_of_a_running_backup_does_not_hang(
    cluster: Cluster, lifeboat_operator: OperatorControl, sqlite_shop: SqliteShop, doomed: Cluster
) -> None:
    cluster.runner.hold_when(lambda namespace, name: namespace == doomed.namespace)
    doomed.create("backups", "midway", sqlite_shop.spec(deletionPolicy="Delete"))
    cluster.wait_for(lambda: doomed.status("backups", "midway").get("jobName"))

    cluster.core.delete_namespace(doomed.namespace)

    cluster.wait_for(lambda: namespace_gone(cluster, doomed.namespace), timeout=30)
