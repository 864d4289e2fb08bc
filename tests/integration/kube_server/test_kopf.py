"""A real, minimal kopf operator against the test server (fresh registry, explicit login)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kopf
import kubernetes
import pytest

from tests.support.kube.fixtures import wait_for
from tests.support.kube.operators import run_operator
from tests.support.kube.server import KubeServer

from .helpers import GROUP, PLURAL, VERSION, Widgets, widget


def widget_operator(deleted: list[str]) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="provision")
    def provision(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        child = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{body.meta.name}-cfg"},
            "data": {"size": str(body.spec["size"])},
        }
        kopf.adopt(child, owner=body)
        api = kubernetes.client.CoreV1Api(
            kubernetes.config.new_client_from_config(config_file=str(registry_server[0].kubeconfig))
        )
        api.create_namespaced_config_map(body.meta.namespace, child)
        kopf.info(body, reason="Provisioned", message="config map created")
        patch.status["phase"] = "Ready"
        patch.status["observedGeneration"] = body.metadata["generation"]
        patch.status["conditions"] = [{"type": "Ready", "status": "True", "reason": "Provisioned"}]
        patch.status["kopf-junk"] = "pruned by the schema"

    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec.size", registry=registry, id="resize")
    def resize(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        patch.status["observedGeneration"] = body.metadata["generation"]

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry, id="cleanup")
    def cleanup(name: str, **_: Any) -> None:
        deleted.append(name)

    return registry


registry_server: list[KubeServer] = []


@pytest.fixture
def operator(kube_server: KubeServer) -> Iterator[list[str]]:
    registry_server[:] = [kube_server]
    deleted: list[str] = []
    with run_operator(widget_operator(deleted), kube_server):
        yield deleted


@pytest.fixture
def widgets(kube_api: kubernetes.client.ApiClient) -> Widgets:
    return Widgets(kube_api)


def test_the_operator_writes_status_visible_through_the_api(
    operator: list[str], widgets: Widgets
) -> None:
    widgets.create(widget())
    status = wait_for(
        lambda: widgets.get().get("status", {}).get("phase") == "Ready" and widgets.get()["status"]
    )
    assert status["observedGeneration"] == 1
    assert status["conditions"] == [{"type": "Ready", "status": "True", "reason": "Provisioned"}]
    assert "kopf-junk" not in status
    meta = widgets.get()["metadata"]
    assert meta["finalizers"] == ["lifeboat.dev/kopf-finalizer"]
    assert "lifeboat.dev/last-handled-configuration" in meta["annotations"]


def test_spec_changes_reach_the_update_handler(operator: list[str], widgets: Widgets) -> None:
    widgets.create(widget())
    wait_for(lambda: widgets.get().get("status", {}).get("phase") == "Ready")
    widgets.patch("w1", {"spec": {"size": 7}})
    wait_for(lambda: widgets.get()["status"]["observedGeneration"] == 2)


def test_deletion_runs_the_handler_then_releases_the_finalizer(
    operator: list[str], widgets: Widgets, kube_api: kubernetes.client.ApiClient
) -> None:
    widgets.create(widget())
    wait_for(lambda: widgets.get().get("status", {}).get("phase") == "Ready")
    core = kubernetes.client.CoreV1Api(kube_api)
    assert core.read_namespaced_config_map("w1-cfg", "default").data == {"size": "3"}
    widgets.delete()
    wait_for(lambda: not widgets.exists(), message="the widget is gone")
    assert operator == ["w1"]
    assert core.list_namespaced_config_map("default").items == []  # garbage-collected


def test_kopf_events_are_posted(
    operator: list[str], widgets: Widgets, kube_api: kubernetes.client.ApiClient
) -> None:
    uid = widgets.create(widget())["metadata"]["uid"]
    core = kubernetes.client.CoreV1Api(kube_api)

    def provisioned() -> list[str]:
        events = core.list_namespaced_event(
            "default", field_selector=f"involvedObject.uid={uid}"
        ).items
        return [e.reason for e in events if e.reason == "Provisioned"]

    assert wait_for(provisioned) == ["Provisioned"]
