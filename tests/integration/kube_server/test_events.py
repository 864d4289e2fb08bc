"""Events: v1 and events.k8s.io/v1 are one storage, as on a real server."""

from __future__ import annotations

import datetime
import json

import kubernetes
import pytest

from .helpers import Widgets, widget


def test_events_created_in_either_api_are_listed_in_both(
    kube_api: kubernetes.client.ApiClient,
) -> None:
    owner = Widgets(kube_api).create(widget())
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": "Widget",
        "name": "w1",
        "namespace": "default",
        "uid": owner["metadata"]["uid"],
    }
    core = kubernetes.client.CoreV1Api(kube_api)
    events = kubernetes.client.EventsV1Api(kube_api)
    core.create_namespaced_event(
        "default",
        {
            "metadata": {"generateName": "w1."},
            "involvedObject": ref,
            "reason": "Started",
            "message": "core event",
            "type": "Normal",
            "source": {"component": "test"},
        },
    )
    events.create_namespaced_event(
        "default",
        {
            "metadata": {"generateName": "w1."},
            "regarding": ref,
            "reason": "Progress",
            "note": "new event",
            "type": "Normal",
            "action": "Backup",
            "eventTime": datetime.datetime.now(datetime.UTC).isoformat(),
            "reportingController": "lifeboat.dev/operator",
            "reportingInstance": "test",
        },
    )
    core_view = core.list_namespaced_event(
        "default",
        field_selector=f"involvedObject.uid={owner['metadata']['uid']},involvedObject.kind=Widget",
    )
    assert sorted(e.message for e in core_view.items) == ["core event", "new event"]
    # Raw JSON: the client's EventsV1Event refuses the null eventTime of v1-created events,
    # exactly as it does against a real cluster.
    response = events.list_namespaced_event("default", _preload_content=False)
    new_view = json.loads(response.data)["items"]
    assert sorted(e["note"] for e in new_view) == ["core event", "new event"]
    assert {e["regarding"]["name"] for e in new_view} == {"w1"}
    assert {e["apiVersion"] for e in new_view} == {"events.k8s.io/v1"}


def test_events_k8s_io_validates_required_fields(kube_api: kubernetes.client.ApiClient) -> None:
    events = kubernetes.client.EventsV1Api(kube_api)
    with pytest.raises(kubernetes.client.ApiException) as err:
        events.create_namespaced_event("default", {"metadata": {"name": "e"}, "reason": "X"})
    assert err.value.status == 422
    assert "reportingController: Required value" in err.value.body
