"""Watches honour resourceVersion, selectors, timeouts, bookmarks and initial events."""

from __future__ import annotations

import threading
import time
from typing import Any

import kubernetes
import pytest

from tests.support.kube.server import KubeServer

from .helpers import Widgets, watch, widget

PATH = "/apis/example.dev/v1alpha1/namespaces/default/widgets"


@pytest.fixture
def widgets(kube_api: kubernetes.client.ApiClient) -> Widgets:
    return Widgets(kube_api)


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


def test_watch_from_a_resource_version_sends_only_later_events(
    kube_server: KubeServer, widgets: Widgets
) -> None:
    since = widgets.create(widget("w1"))["metadata"]["resourceVersion"]
    widgets.patch("w1", {"spec": {"size": 4}})
    widgets.create(widget("w2"))
    widgets.delete("w2")
    widgets.create(widget("end"))
    events = watch(kube_server.url, PATH, resourceVersion=since, until="end")
    assert summary(events) == [("MODIFIED", "w1"), ("ADDED", "w2"), ("DELETED", "w2")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs)
    assert rvs[0] > int(since)


def test_watch_without_a_resource_version_starts_with_synthetic_added_events(
    kube_server: KubeServer, widgets: Widgets
) -> None:
    widgets.create(widget("w1"))
    assert summary(watch(kube_server.url, PATH, count=1)) == [("ADDED", "w1")]


def test_timeout_seconds_ends_the_stream_with_a_bookmark(
    kube_server: KubeServer, widgets: Widgets
) -> None:
    rv = widgets.list()["metadata"]["resourceVersion"]
    started = time.monotonic()
    events = watch(
        kube_server.url, PATH, resourceVersion=rv, timeoutSeconds="1", allowWatchBookmarks="true"
    )
    assert 0.9 < time.monotonic() - started < 3
    assert summary(events) == [("BOOKMARK", "")]


def test_live_events_arrive_while_watching(kube_server: KubeServer, widgets: Widgets) -> None:
    rv = widgets.list()["metadata"]["resourceVersion"]
    creator = threading.Timer(0.2, lambda: widgets.create(widget("late")))
    creator.start()
    events = watch(kube_server.url, PATH, count=1, resourceVersion=rv, timeoutSeconds="5")
    creator.join()
    assert summary(events) == [("ADDED", "late")]


def test_send_initial_events_ends_with_the_initial_events_end_bookmark(
    kube_server: KubeServer, widgets: Widgets
) -> None:
    widgets.create(widget("w1"))
    widgets.create(widget("w2"))
    events = watch(
        kube_server.url,
        PATH,
        count=3,
        sendInitialEvents="true",
        resourceVersionMatch="NotOlderThan",
        allowWatchBookmarks="true",
    )
    assert summary(events) == [("ADDED", "w1"), ("ADDED", "w2"), ("BOOKMARK", "")]
    bookmark = events[-1]["object"]
    assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert bookmark["kind"] == "Widget"
    assert int(bookmark["metadata"]["resourceVersion"]) >= int(
        widgets.list()["metadata"]["resourceVersion"]
    )


def test_label_selector_turns_leaving_and_entering_into_deleted_and_added(
    kube_server: KubeServer, widgets: Widgets
) -> None:
    rv = widgets.list()["metadata"]["resourceVersion"]
    body = widget("w1")
    body["metadata"]["labels"] = {"tier": "gold"}
    widgets.create(body)
    widgets.create(widget("w2"))
    widgets.patch("w1", {"metadata": {"labels": {"tier": None}}})
    widgets.patch("w2", {"metadata": {"labels": {"tier": "gold"}}})
    end = widget("end")
    end["metadata"]["labels"] = {"tier": "gold"}
    widgets.create(end)
    events = watch(
        kube_server.url, PATH, resourceVersion=rv, until="end", labelSelector="tier=gold"
    )
    assert summary(events) == [("ADDED", "w1"), ("DELETED", "w1"), ("ADDED", "w2")]


def test_field_selectors_on_name_and_namespace(kube_server: KubeServer, widgets: Widgets) -> None:
    rv = widgets.list()["metadata"]["resourceVersion"]
    widgets.create(widget("w1"))
    widgets.create(widget("w2"))
    widgets.patch("w1", {"spec": {"size": 4}})
    widgets.patch("w2", {"spec": {"size": 4}})
    events = watch(
        kube_server.url,
        "/apis/example.dev/v1alpha1/widgets",
        resourceVersion=rv,
        count=2,
        fieldSelector="metadata.name=w2,metadata.namespace=default",
    )
    assert summary(events) == [("ADDED", "w2"), ("MODIFIED", "w2")]
    assert [
        w["metadata"]["name"] for w in widgets.list(field_selector="metadata.name!=w2")["items"]
    ] == ["w1"]


def test_unsupported_field_selector_on_a_custom_resource_is_400(widgets: Widgets) -> None:
    with pytest.raises(kubernetes.client.ApiException) as err:
        widgets.list(field_selector="spec.size=3")
    assert err.value.status == 400


def test_a_too_old_resource_version_gets_410_gone(
    kube_server: KubeServer, widgets: Widgets
) -> None:
    rv = widgets.create(widget("w1"))["metadata"]["resourceVersion"]
    kube_server.reset()
    events = watch(kube_server.url, PATH, resourceVersion=rv)
    assert [(e["type"], e["object"]["code"]) for e in events] == [("ERROR", 410)]


def test_the_kubernetes_client_watch_works(
    kube_api: kubernetes.client.ApiClient, widgets: Widgets
) -> None:
    rv = widgets.create(widget("w1"))["metadata"]["resourceVersion"]
    widgets.patch("w1", {"spec": {"size": 5}})
    watcher = kubernetes.watch.Watch()
    stream = watcher.stream(
        widgets.api.list_namespaced_custom_object,
        "example.dev",
        "v1alpha1",
        "default",
        "widgets",
        resource_version=rv,
        timeout_seconds=5,
    )
    event = next(stream)
    watcher.stop()
    assert (event["type"], event["object"]["spec"]["size"]) == ("MODIFIED", 5)
