"""Finalizers, ownerReference garbage collection, namespace deletion."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from .helpers import Widgets, status_of, widget


@pytest.fixture
def core(kube_api: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube_api)


@pytest.fixture
def widgets(kube_api: kubernetes.client.ApiClient) -> Widgets:
    return Widgets(kube_api)


def owned_config_map(name: str, owner: dict[str, Any], **meta: object) -> dict[str, Any]:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
    }
    return {"metadata": {"name": name, "ownerReferences": [ref], **meta}, "data": {"k": "v"}}


def config_map_names(core: kubernetes.client.CoreV1Api) -> list[str]:
    return sorted(cm.metadata.name for cm in core.list_namespaced_config_map("default").items)


def test_delete_with_finalizers_marks_then_removes_when_finalizers_are_emptied(
    widgets: Widgets,
) -> None:
    body = widget()
    body["metadata"]["finalizers"] = ["example.dev/cleanup"]
    widgets.create(body)
    marked = widgets.delete()
    assert marked["metadata"]["deletionTimestamp"]
    assert marked["metadata"]["generation"] == 2
    assert widgets.get()["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    widgets.delete()  # deleting again is harmless
    widgets.patch("w1", {"metadata": {"finalizers": None}})
    assert not widgets.exists()


def test_no_new_finalizers_on_an_object_being_deleted(widgets: Widgets) -> None:
    body = widget()
    body["metadata"]["finalizers"] = ["example.dev/a"]
    widgets.create(body)
    widgets.delete()
    with pytest.raises(kubernetes.client.ApiException) as err:
        widgets.patch("w1", {"metadata": {"finalizers": ["example.dev/a", "example.dev/b"]}})
    assert err.value.status == 422
    assert "no new finalizers can be added" in status_of(err.value)["message"]


def test_deleting_an_owner_deletes_its_dependents(
    core: kubernetes.client.CoreV1Api, widgets: Widgets
) -> None:
    owner = widgets.create(widget())
    core.create_namespaced_config_map("default", owned_config_map("child", owner))
    core.create_namespaced_config_map("default", {"metadata": {"name": "unrelated"}})
    widgets.delete()
    assert config_map_names(core) == ["unrelated"]


def test_dependents_wait_for_their_own_finalizers(
    core: kubernetes.client.CoreV1Api, widgets: Widgets
) -> None:
    owner = widgets.create(widget())
    core.create_namespaced_config_map(
        "default", owned_config_map("child", owner, finalizers=["example.dev/keep"])
    )
    widgets.delete()
    child = core.read_namespaced_config_map("child", "default")
    assert child.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map(
        "child", "default", [{"op": "remove", "path": "/metadata/finalizers"}]
    )
    assert "child" not in config_map_names(core)


def test_orphan_propagation_keeps_dependents_without_the_owner_reference(
    core: kubernetes.client.CoreV1Api, widgets: Widgets
) -> None:
    owner = widgets.create(widget())
    core.create_namespaced_config_map("default", owned_config_map("child", owner))
    widgets.delete(propagation_policy="Orphan")
    assert core.read_namespaced_config_map("child", "default").metadata.owner_references is None


def test_foreground_deletion_removes_dependents_first(
    core: kubernetes.client.CoreV1Api, widgets: Widgets
) -> None:
    owner = widgets.create(widget())
    core.create_namespaced_config_map(
        "default", owned_config_map("child", owner, finalizers=["example.dev/keep"])
    )
    widgets.delete(propagation_policy="Foreground")
    assert "foregroundDeletion" in widgets.get()["metadata"]["finalizers"]
    core.patch_namespaced_config_map(
        "child", "default", [{"op": "remove", "path": "/metadata/finalizers"}]
    )
    assert not widgets.exists()


def test_an_owner_with_its_own_finalizer_waits_in_the_foreground_for_its_dependents(
    core: kubernetes.client.CoreV1Api, widgets: Widgets
) -> None:
    """What `kubectl delete backupschedule --cascade=foreground` relies on: the owner's own
    finalizer (an operator's) goes first, the owner stays until its dependents are gone."""
    body = widget()
    body["metadata"]["finalizers"] = ["example.dev/operator"]
    owner = widgets.create(body)
    core.create_namespaced_config_map(
        "default", owned_config_map("child", owner, finalizers=["example.dev/keep"])
    )
    widgets.delete(propagation_policy="Foreground")
    finalizers = widgets.get()["metadata"]["finalizers"]
    assert finalizers == ["example.dev/operator", "foregroundDeletion"]
    assert core.read_namespaced_config_map("child", "default").metadata.deletion_timestamp
    widgets.patch("w1", {"metadata": {"finalizers": ["foregroundDeletion"]}})
    assert widgets.get()["metadata"]["finalizers"] == ["foregroundDeletion"]
    core.patch_namespaced_config_map(
        "child", "default", [{"op": "remove", "path": "/metadata/finalizers"}]
    )
    assert not widgets.exists()


def test_dependents_released_by_the_owners_finalizer_outlive_it(
    core: kubernetes.client.CoreV1Api, widgets: Widgets
) -> None:
    """What deleting a BackupSchedule relies on: while the owner waits for its own finalizer,
    an operator removes the ownerReference from a dependent; when the owner goes, the garbage
    collector deletes only the dependents still owned."""
    body = widget()
    body["metadata"]["finalizers"] = ["example.dev/operator"]
    owner = widgets.create(body)
    core.create_namespaced_config_map("default", owned_config_map("released", owner))
    core.create_namespaced_config_map("default", owned_config_map("owned", owner))
    widgets.delete()
    assert config_map_names(core) == ["owned", "released"]  # nothing goes while it waits
    core.patch_namespaced_config_map("released", "default", {"metadata": {"ownerReferences": None}})
    widgets.patch("w1", {"metadata": {"finalizers": None}})
    assert not widgets.exists()
    assert config_map_names(core) == ["released"]


def test_jobs_are_orphaned_by_default_with_a_warning(kube_api: kubernetes.client.ApiClient) -> None:
    batch = kubernetes.client.BatchV1Api(kube_api)
    core = kubernetes.client.CoreV1Api(kube_api)
    job = batch.create_namespaced_job(
        "default",
        {
            "metadata": {"name": "j"},
            "spec": {
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{"name": "c", "image": "x:1"}],
                    }
                }
            },
        },
    )
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "uid": job.metadata.uid},
    }
    core.create_namespaced_config_map("default", owned_config_map("child", owner))
    batch.delete_namespaced_job("j", "default")
    assert "child" in config_map_names(core)


def test_deleting_a_namespace_deletes_its_contents(
    core: kubernetes.client.CoreV1Api, kube_api: kubernetes.client.ApiClient
) -> None:
    core.create_namespace({"metadata": {"name": "scratch"}})
    assert core.read_namespace("scratch").metadata.labels == {
        "kubernetes.io/metadata.name": "scratch"
    }
    Widgets(kube_api, "scratch").create(widget())
    core.create_namespaced_config_map("scratch", {"metadata": {"name": "c"}})
    core.delete_namespace("scratch")
    with pytest.raises(kubernetes.client.ApiException) as err:
        core.read_namespace("scratch")
    assert err.value.status == 404
    assert Widgets(kube_api, "scratch").list()["items"] == []


def test_a_terminating_namespace_accepts_no_new_objects(
    core: kubernetes.client.CoreV1Api, kube_api: kubernetes.client.ApiClient
) -> None:
    core.create_namespace({"metadata": {"name": "scratch"}})
    blocker = widget("blocker")
    blocker["metadata"]["finalizers"] = ["example.dev/keep"]
    Widgets(kube_api, "scratch").create(blocker)
    core.delete_namespace("scratch")
    assert core.read_namespace("scratch").status.phase == "Terminating"
    with pytest.raises(kubernetes.client.ApiException) as err:
        core.create_namespaced_config_map("scratch", {"metadata": {"name": "c"}})
    assert err.value.status == 403
    Widgets(kube_api, "scratch").patch("blocker", {"metadata": {"finalizers": None}})
    with pytest.raises(kubernetes.client.ApiException):
        core.read_namespace("scratch")


def test_a_terminating_namespace_refuses_with_the_namespace_terminating_cause(
    core: kubernetes.client.CoreV1Api, kube_api: kubernetes.client.ApiClient
) -> None:
    """As the NamespaceLifecycle admission plugin: 403 Forbidden, its message, and the cause
    clients test for (client-go's NamespaceTerminatingCause). Events are refused too."""
    core.create_namespace({"metadata": {"name": "scratch"}})
    blocker = widget("blocker")
    blocker["metadata"]["finalizers"] = ["example.dev/keep"]
    Widgets(kube_api, "scratch").create(blocker)
    core.delete_namespace("scratch")
    batch = kubernetes.client.BatchV1Api(kube_api)
    job = {
        "metadata": {"name": "late"},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x:1"}]}
            }
        },
    }
    with pytest.raises(kubernetes.client.ApiException) as err:
        batch.create_namespaced_job("scratch", job)
    status = status_of(err.value)
    assert (err.value.status, status["reason"]) == (403, "Forbidden")
    assert status["message"] == (
        'jobs.batch "late" is forbidden: unable to create new content in namespace scratch '
        "because it is being terminated"
    )
    assert status["details"]["causes"] == [
        {
            "reason": "NamespaceTerminating",
            "message": "namespace scratch is being terminated",
            "field": "metadata.namespace",
        }
    ]
    event = {
        "metadata": {"name": "e1"},
        "involvedObject": {"kind": "Widget", "name": "blocker", "namespace": "scratch"},
        "reason": "Test",
        "message": "m",
        "type": "Normal",
    }
    with pytest.raises(kubernetes.client.ApiException) as err:
        core.create_namespaced_event("scratch", event)
    assert err.value.status == 403


def test_a_terminating_namespace_waits_for_finalizers_and_says_which(
    core: kubernetes.client.CoreV1Api, kube_api: kubernetes.client.ApiClient
) -> None:
    """Objects inside are deleted; those with finalizers stay (and can still be updated, status
    included) until their finalizers go, and the namespace's conditions say what holds it."""
    core.create_namespace({"metadata": {"name": "scratch"}})
    widgets = Widgets(kube_api, "scratch")
    for name in ("a", "b"):
        held = widget(name)
        held["metadata"]["finalizers"] = ["example.dev/keep"]
        widgets.create(held)
    core.create_namespaced_config_map("scratch", {"metadata": {"name": "plain"}})
    core.delete_namespace("scratch")

    namespace = core.read_namespace("scratch")
    assert namespace.metadata.deletion_timestamp is not None
    assert namespace.status.phase == "Terminating"
    conditions = {c.type: c for c in namespace.status.conditions}
    assert conditions["NamespaceContentRemaining"].message == (
        "Some resources are remaining: widgets.example.dev has 2 resource instances"
    )
    assert conditions["NamespaceFinalizersRemaining"].message == (
        "Some content in the namespace has finalizers remaining: example.dev/keep in 2 resource "
        "instances"
    )
    assert core.list_namespaced_config_map("scratch").items == []
    assert widgets.get("a")["metadata"]["deletionTimestamp"]
    widgets.patch_status("a", {"status": {"phase": "Failed"}})  # updates are allowed
    widgets.patch("a", {"metadata": {"finalizers": None}})
    assert [w["metadata"]["name"] for w in widgets.list()["items"]] == ["b"]
    assert core.read_namespace("scratch").status.phase == "Terminating"
    widgets.patch("b", {"metadata": {"finalizers": None}})
    with pytest.raises(kubernetes.client.ApiException) as err:
        core.read_namespace("scratch")
    assert err.value.status == 404


def test_delete_preconditions(widgets: Widgets) -> None:
    widgets.create(widget())
    with pytest.raises(kubernetes.client.ApiException) as err:
        widgets.delete(body={"preconditions": {"uid": "not-the-uid"}})
    assert err.value.status == 409
    assert widgets.exists()
