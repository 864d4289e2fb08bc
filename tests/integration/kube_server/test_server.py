"""The server itself: its own thread and port, start/stop, reset, kmock reactions for faults."""

from __future__ import annotations

import json
import pathlib
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import kmock
import kubernetes
import pytest

from tests.support.kube.server import KubeServer

from .helpers import Widgets, widget


def get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
        body: dict[str, Any] = json.load(response)
        return body


def test_start_and_stop_are_quick_and_free_the_port(kube_crd_paths: list[pathlib.Path]) -> None:
    started = time.monotonic()
    with KubeServer(crd_paths=kube_crd_paths) as server:
        url = server.url
        assert server.kubeconfig.exists()
        assert get(f"{url}/version")["gitVersion"].startswith("v1.")
        assert threading.current_thread().name != "kube-server"
    assert time.monotonic() - started < 5
    with pytest.raises(urllib.error.URLError):
        get(f"{url}/version")


def test_discovery_reports_v1_for_the_core_group_and_crds(kube_server: KubeServer) -> None:
    core = get(f"{kube_server.url}/api/v1")
    assert core["groupVersion"] == "v1"
    assert {
        "name": "pods/log",
        "singularName": "",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["get"],
    } in core["resources"]
    groups = {g["name"]: g for g in get(f"{kube_server.url}/apis")["groups"]}
    assert groups["example.dev"]["preferredVersion"]["version"] == "v1alpha1"
    assert groups["autoscaling"]["preferredVersion"]["version"] == "v2"
    resources = get(f"{kube_server.url}/apis/example.dev/v1alpha1")["resources"]
    assert [r["name"] for r in resources] == ["widgets", "widgets/status"]
    assert resources[0]["shortNames"] == ["wg"]


def test_kmock_reactions_can_inject_faults(
    kube_server: KubeServer, kube_api: kubernetes.client.ApiClient
) -> None:
    widgets = Widgets(kube_api)
    kube_server[kmock.method.POST, kmock.resource("example.dev", "v1alpha1", "widgets")][:1] << 503
    with pytest.raises(kubernetes.client.ApiException) as err:
        widgets.create(widget())
    assert err.value.status == 503
    assert widgets.create(widget())["metadata"]["name"] == "w1"  # the reaction was used up


def test_requests_are_recorded_for_assertions(
    kube_server: KubeServer, kube_api: kubernetes.client.ApiClient
) -> None:
    Widgets(kube_api).create(widget())
    creates = [r for r in list(kube_server) if r.action == kmock.action.CREATE]
    assert [(r.resource, r.namespace, r.data["metadata"]["name"]) for r in creates] == [
        (kmock.resource("example.dev", "v1alpha1", "widgets"), "default", "w1")
    ]


def test_the_object_history_is_kept(
    kube_server: KubeServer, kube_api: kubernetes.client.ApiClient
) -> None:
    widgets = Widgets(kube_api)
    widgets.create(widget())
    widgets.patch("w1", {"spec": {"size": 5}})

    def sizes() -> list[int]:
        history = kube_server.objects["example.dev/v1alpha1/widgets", "default", "w1"].history
        return [version["spec"]["size"] for version in history if version is not None]

    assert kube_server.call(sizes) == [3, 5]


def test_crds_applied_through_the_api_are_served(
    kube_server: KubeServer, kube_api: kubernetes.client.ApiClient
) -> None:
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.dev"},
        "spec": {
            "group": "example.dev",
            "scope": "Cluster",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"n": {"type": "integer"}}}
                            },
                        }
                    },
                }
            ],
        },
    }
    kubernetes.client.ApiextensionsV1Api(kube_api).create_custom_resource_definition(crd)
    api = kubernetes.client.CustomObjectsApi(kube_api)
    created = api.create_cluster_custom_object(
        "example.dev",
        "v1",
        "gadgets",
        {
            "apiVersion": "example.dev/v1",
            "kind": "Gadget",
            "metadata": {"name": "g"},
            "spec": {"n": 1, "x": 2},
        },
    )
    assert created["spec"] == {"n": 1}
    assert "namespace" not in created["metadata"]
    established = (
        kubernetes.client.ApiextensionsV1Api(kube_api)
        .read_custom_resource_definition("gadgets.example.dev")
        .status.conditions
    )
    assert ("Established", "True") in [(c.type, c.status) for c in established]
