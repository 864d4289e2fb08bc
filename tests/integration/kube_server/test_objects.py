"""The basics a client relies on: metadata set by the server, errors with Status bodies."""

from __future__ import annotations

import kubernetes
import pytest

from tests.support.kube.server import KubeServer

from .helpers import Widgets, status_of, widget


@pytest.fixture
def widgets(kube_api: kubernetes.client.ApiClient) -> Widgets:
    return Widgets(kube_api)


def test_create_sets_namespace_uid_resource_version_generation_and_timestamp(
    widgets: Widgets,
) -> None:
    created = widgets.create(widget())
    meta = created["metadata"]
    assert meta["namespace"] == "default"
    assert len(meta["uid"]) == 36
    assert int(meta["resourceVersion"]) > 0
    assert meta["generation"] == 1
    assert meta["creationTimestamp"].endswith("Z")
    assert widgets.get() == created


def test_resource_versions_grow_globally_and_lists_carry_kind_and_version(widgets: Widgets) -> None:
    first = widgets.create(widget("w1"))
    second = widgets.create(widget("w2"))
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    listing = widgets.list()
    assert listing["kind"] == "WidgetList"
    assert listing["apiVersion"] == "example.dev/v1alpha1"
    assert int(listing["metadata"]["resourceVersion"]) >= int(second["metadata"]["resourceVersion"])
    assert [w["metadata"]["name"] for w in listing["items"]] == ["w1", "w2"]


def test_generation_grows_on_spec_changes_only(widgets: Widgets) -> None:
    widgets.create(widget())
    labelled = widgets.patch("w1", {"metadata": {"labels": {"team": "db"}}})
    assert labelled["metadata"]["generation"] == 1
    resized = widgets.patch("w1", {"spec": {"size": 4}})
    assert resized["metadata"]["generation"] == 2
    assert int(resized["metadata"]["resourceVersion"]) > int(
        labelled["metadata"]["resourceVersion"]
    )


def test_a_noop_patch_keeps_the_resource_version(widgets: Widgets) -> None:
    created = widgets.create(widget())
    patched = widgets.patch("w1", {"spec": {"size": 3}})
    assert patched["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_duplicate_create_is_409_already_exists_so_clients_can_adopt(widgets: Widgets) -> None:
    widgets.create(widget())
    with pytest.raises(kubernetes.client.ApiException) as err:
        widgets.create(widget())
    assert err.value.status == 409
    status = status_of(err.value)
    assert status["kind"] == "Status"
    assert status["reason"] == "AlreadyExists"
    assert status["message"] == 'widgets.example.dev "w1" already exists'
    assert status["details"] == {"name": "w1", "group": "example.dev", "kind": "widgets"}


def test_missing_object_is_404_with_a_status_body(widgets: Widgets) -> None:
    with pytest.raises(kubernetes.client.ApiException) as err:
        widgets.get("nope")
    assert err.value.status == 404
    assert status_of(err.value)["reason"] == "NotFound"
    assert status_of(err.value)["message"] == 'widgets.example.dev "nope" not found'


def test_creating_in_a_missing_namespace_is_404(kube_api: kubernetes.client.ApiClient) -> None:
    with pytest.raises(kubernetes.client.ApiException) as err:
        Widgets(kube_api, "nowhere").create(widget())
    assert err.value.status == 404
    assert status_of(err.value)["message"] == 'namespaces "nowhere" not found'


def test_generate_name_gives_a_unique_name(kube_api: kubernetes.client.ApiClient) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    body = {"metadata": {"generateName": "cfg-"}, "data": {"a": "b"}}
    first = core.create_namespaced_config_map("default", body)
    second = core.create_namespaced_config_map("default", body)
    assert first.metadata.name.startswith("cfg-")
    assert first.metadata.name != second.metadata.name


def test_replace_with_a_stale_resource_version_is_409_conflict(widgets: Widgets) -> None:
    created = widgets.create(widget())
    widgets.patch("w1", {"spec": {"size": 5}})
    created["spec"]["size"] = 6
    with pytest.raises(kubernetes.client.ApiException) as err:
        widgets.replace("w1", created)
    assert err.value.status == 409
    assert status_of(err.value)["reason"] == "Conflict"


def test_replace_with_the_current_resource_version_succeeds(widgets: Widgets) -> None:
    created = widgets.create(widget())
    created["spec"]["size"] = 6
    replaced = widgets.replace("w1", created)
    assert replaced["spec"]["size"] == 6
    assert replaced["metadata"]["generation"] == 2


def test_invalid_names_are_rejected(kube_api: kubernetes.client.ApiClient) -> None:
    with pytest.raises(kubernetes.client.ApiException) as err:
        Widgets(kube_api).create(widget("Not_Valid"))
    assert err.value.status == 422
    assert 'metadata.name: Invalid value: "Not_Valid"' in status_of(err.value)["message"]


def test_strategic_merge_patch_merges_builtin_lists_by_key(
    kube_api: kubernetes.client.ApiClient,
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(
        "default",
        {
            "metadata": {
                "name": "c",
                "finalizers": ["a.dev/x"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o1", "uid": "u1"}],
            }
        },
    )
    patched = core.patch_namespaced_config_map(
        "c",
        "default",
        {
            "metadata": {
                "finalizers": ["b.dev/y"],
                "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o2", "uid": "u2"}],
            }
        },
    )
    assert patched.metadata.finalizers == ["a.dev/x", "b.dev/y"]
    assert [r.uid for r in patched.metadata.owner_references] == ["u1", "u2"]


def test_strategic_merge_patch_is_unsupported_for_custom_resources(widgets: Widgets) -> None:
    widgets.create(widget())
    with pytest.raises(kubernetes.client.ApiException) as err:
        widgets.api.patch_namespaced_custom_object(
            "example.dev",
            "v1alpha1",
            "default",
            "widgets",
            "w1",
            {"spec": {"size": 4}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert err.value.status == 415


def test_secret_string_data_is_folded_into_base64_data(
    kube_api: kubernetes.client.ApiClient,
) -> None:
    core = kubernetes.client.CoreV1Api(kube_api)
    core.create_namespaced_secret("default", {"metadata": {"name": "s"}, "stringData": {"pw": "x"}})
    secret = core.read_namespaced_secret("s", "default")
    assert secret.data == {"pw": "eA=="}
    assert secret.string_data is None
    assert secret.type == "Opaque"


def test_list_pagination_with_limit_and_continue(widgets: Widgets) -> None:
    for name in ("a", "b", "c"):
        widgets.create(widget(name))
    first = widgets.list(limit=2)
    assert [w["metadata"]["name"] for w in first["items"]] == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 1
    rest = widgets.list(limit=2, _continue=first["metadata"]["continue"])
    assert [w["metadata"]["name"] for w in rest["items"]] == ["c"]
    assert "continue" not in rest["metadata"]


def test_reset_forgets_objects_but_keeps_namespaces_and_crds(
    kube_server: KubeServer, widgets: Widgets
) -> None:
    widgets.create(widget())
    kube_server.reset()
    assert widgets.list()["items"] == []
    core = kubernetes.client.CoreV1Api(widgets.api.api_client)
    assert "default" in [ns.metadata.name for ns in core.list_namespace().items]
