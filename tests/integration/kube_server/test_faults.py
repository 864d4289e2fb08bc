"""Injected faults look like kube-apiserver's own (Status bodies, Retry-After, 410 on an expired
watch), fire exactly as often as asked, and are recorded."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse

import kubernetes
import pytest
import urllib3

from tests.support.kube.server import KubeServer

from .helpers import Widgets, status_of, watch, widget

PATH = "/apis/example.dev/v1alpha1/namespaces/default/widgets"


@pytest.fixture
def widgets(kube_api: kubernetes.client.ApiClient) -> Widgets:
    return Widgets(kube_api)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (409, "Conflict"),
        (429, "TooManyRequests"),
        (500, "InternalError"),
        (503, "ServiceUnavailable"),
        (504, "Timeout"),
    ],
)
def test_an_injected_error_is_a_status_and_fires_as_often_as_asked(
    kube_server: KubeServer, widgets: Widgets, status: int, reason: str
) -> None:
    kube_server.faults.add(method="POST", path_glob=f"{PATH}", status=status, times=2)
    for attempt in range(2):
        with pytest.raises(kubernetes.client.ApiException) as raised:
            widgets.create(widget(f"w{attempt}"))
        assert raised.value.status == status
        body = status_of(raised.value)
        assert body["apiVersion"] == "v1"
        assert body["kind"] == "Status"
        assert body["status"] == "Failure"
        assert (body["code"], body["reason"]) == (status, reason)
        assert not widgets.exists(f"w{attempt}")
    widgets.create(widget("w2"))  # the third goes through
    assert kube_server.faults.count(status=status, path_glob=PATH) == 2


def test_too_many_requests_says_when_to_retry(kube_server: KubeServer, widgets: Widgets) -> None:
    kube_server.faults.add(method="POST", path_glob=PATH, status=429, retry_after=3)
    with pytest.raises(kubernetes.client.ApiException) as raised:
        widgets.create(widget("w1"))  # POST: urllib3 itself retries only idempotent methods
    assert raised.value.headers["Retry-After"] == "3"
    assert status_of(raised.value)["details"]["retryAfterSeconds"] == 3


def test_a_committed_fault_takes_effect_but_answers_an_error(
    kube_server: KubeServer, widgets: Widgets
) -> None:
    kube_server.faults.add(method="POST", path_glob=PATH, status=504, commit=True)
    with pytest.raises(kubernetes.client.ApiException) as raised:
        widgets.create(widget("w1"))
    assert raised.value.status == 504
    assert widgets.exists("w1")


def test_a_fault_can_match_the_body(kube_server: KubeServer, widgets: Widgets) -> None:
    widgets.create(widget("w1"))
    kube_server.faults.add(
        method="PATCH",
        path_glob=f"{PATH}/*/status",
        status=409,
        when=lambda data: "phase" in data["status"],
    )
    widgets.patch_status("w1", {"status": {"other": "x"}})
    with pytest.raises(kubernetes.client.ApiException):
        widgets.patch_status("w1", {"status": {"phase": "Ready"}})
    assert [f.data for f in kube_server.faults.fired] == [{"status": {"phase": "Ready"}}]


def test_a_reset_connection_gets_no_answer(kube_server: KubeServer, widgets: Widgets) -> None:
    widgets.create(widget("w1"))
    kube_server.faults.add(method="PATCH", path_glob=f"{PATH}/w1", reset=True)
    with pytest.raises(urllib3.exceptions.ProtocolError):
        widgets.patch("w1", {"spec": {"size": 2}})
    assert kube_server.faults.count(status=None, reason="ConnectionReset") == 1
    assert kube_server.internal_errors == []


def test_dropped_watches_end_without_a_final_event(
    kube_server: KubeServer, widgets: Widgets
) -> None:
    rv = widgets.list()["metadata"]["resourceVersion"]
    query = urllib.parse.urlencode(
        {"watch": "true", "resourceVersion": rv, "allowWatchBookmarks": "true"}
    )
    url = urllib.parse.urlsplit(kube_server.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    conn.request("GET", f"{PATH}?{query}")
    response = conn.getresponse()
    assert response.status == 200
    dropped: list[int] = []

    def drop_once_open() -> None:
        deadline = time.monotonic() + 5
        while not dropped or dropped[-1] == 0:
            dropped.append(kube_server.faults.drop_watches())
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)

    dropper = threading.Thread(target=drop_once_open)
    dropper.start()
    with pytest.raises(http.client.IncompleteRead):
        response.read()  # chunked: ends without its last chunk, as a reset stream does
    dropper.join()
    conn.close()
    assert dropped[-1] == 1
    assert kube_server.faults.count(reason="WatchDropped", path_glob=PATH) == 1


def test_a_watch_from_before_a_compaction_is_answered_410_gone(
    kube_server: KubeServer, widgets: Widgets
) -> None:
    old = widgets.create(widget("w1"))["metadata"]["resourceVersion"]
    kube_server.faults.compact()
    [event] = watch(kube_server.url, PATH, resourceVersion=old)
    assert event["type"] == "ERROR"
    assert event["object"]["kind"] == "Status"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
    assert kube_server.faults.count(status=410, reason="Expired", path_glob=PATH) == 1

    fresh = widgets.list()["metadata"]["resourceVersion"]  # a re-list gives a usable version
    widgets.create(widget("end"))
    assert [
        e["type"] for e in watch(kube_server.url, PATH, resourceVersion=fresh, until="end")
    ] == []
