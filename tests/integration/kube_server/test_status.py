"""The /status subresource is isolated from the main resource, both ways."""

from __future__ import annotations

import kubernetes
import pytest

from .helpers import Widgets, status_of, widget


@pytest.fixture
def widgets(kube_api: kubernetes.client.ApiClient) -> Widgets:
    widgets = Widgets(kube_api)
    widgets.create(widget())
    return widgets


def test_status_sent_on_create_is_dropped(kube_api: kubernetes.client.ApiClient) -> None:
    body = widget("w2")
    body["status"] = {"phase": "Ready"}
    assert "status" not in Widgets(kube_api).create(body)


def test_main_resource_patch_ignores_status(widgets: Widgets) -> None:
    patched = widgets.patch("w1", {"spec": {"size": 4}, "status": {"phase": "Ready"}})
    assert patched["spec"]["size"] == 4
    assert "status" not in patched
    assert "status" not in widgets.get()


def test_status_patch_changes_only_status_and_not_generation(widgets: Widgets) -> None:
    patched = widgets.patch_status(
        "w1",
        {"spec": {"size": 50}, "metadata": {"labels": {"x": "y"}}, "status": {"phase": "Ready"}},
    )
    assert patched["status"] == {"phase": "Ready"}
    assert patched["spec"]["size"] == 3
    assert "labels" not in patched["metadata"]
    assert patched["metadata"]["generation"] == 1


def test_status_json_patch_with_a_resource_version_test(widgets: Widgets) -> None:
    current = widgets.get()
    ops = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": current["metadata"]["resourceVersion"],
        },
        {"op": "add", "path": "/status", "value": {"phase": "Running"}},
    ]
    assert widgets.patch_status("w1", ops)["status"] == {"phase": "Running"}


def test_status_replace_changes_only_status(widgets: Widgets) -> None:
    current = widgets.get()
    current["spec"]["size"] = 99
    current["status"] = {"phase": "Failed"}
    replaced = widgets.replace_status("w1", current)
    assert replaced["status"] == {"phase": "Failed"}
    assert replaced["spec"]["size"] == 3


def test_main_replace_keeps_the_existing_status(widgets: Widgets) -> None:
    widgets.patch_status("w1", {"status": {"phase": "Ready"}})
    current = widgets.get()
    current["status"] = {"phase": "Failed"}
    current["spec"]["size"] = 5
    replaced = widgets.replace("w1", current)
    assert replaced["status"] == {"phase": "Ready"}
    assert replaced["spec"]["size"] == 5


def test_failed_json_patch_test_is_422_not_500(widgets: Widgets) -> None:
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
        {"op": "add", "path": "/metadata/finalizers", "value": ["example.dev/f"]},
    ]
    with pytest.raises(kubernetes.client.ApiException) as err:
        widgets.patch("w1", ops)
    assert err.value.status == 422
    assert status_of(err.value)["reason"] == "Invalid"
    assert "finalizers" not in widgets.get()["metadata"]


def test_builtin_status_subresource_is_isolated_too(kube_api: kubernetes.client.ApiClient) -> None:
    batch = kubernetes.client.BatchV1Api(kube_api)
    job = {
        "metadata": {"name": "j"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox:1"}],
                }
            }
        },
    }
    batch.create_namespaced_job("default", job)
    batch.patch_namespaced_job("j", "default", {"status": {"active": 1}})
    assert batch.read_namespaced_job_status("j", "default").status.active is None
    batch.patch_namespaced_job_status("j", "default", {"status": {"active": 1}})
    assert batch.read_namespaced_job("j", "default").status.active == 1
