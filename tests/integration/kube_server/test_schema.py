"""Custom resources are validated and pruned with the CRD's openAPIV3Schema, as on a cluster."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest

from .helpers import Widgets, status_of, widget


@pytest.fixture
def widgets(kube_api: kubernetes.client.ApiClient) -> Widgets:
    return Widgets(kube_api)


def invalid(widgets: Widgets, body: dict[str, Any], name: str = "w1") -> dict[str, Any]:
    """The Status of a rejected write: a patch if the widget exists, else a create."""
    exists = widgets.exists(name)
    with pytest.raises(kubernetes.client.ApiException) as err:
        widgets.patch(name, body) if exists else widgets.create(body)
    assert err.value.status == 422
    status = status_of(err.value)
    assert status["reason"] == "Invalid"
    return status


def test_enum_violation_names_the_field(widgets: Widgets) -> None:
    status = invalid(widgets, widget(database={"engine": "oracle", "name": "shop"}))
    assert status["message"] == (
        'Widget.example.dev "w1" is invalid: spec.database.engine: Unsupported value: "oracle": '
        'supported values: "postgres", "mysql", "sqlite"'
    )
    assert status["details"]["causes"] == [
        {
            "reason": "FieldValueNotSupported",
            "message": (
                'Unsupported value: "oracle": supported values: "postgres", "mysql", "sqlite"'
            ),
            "field": "spec.database.engine",
        }
    ]


def test_required_pattern_bounds_and_types_are_all_reported(widgets: Widgets) -> None:
    body = widget(database={"engine": "mysql", "name": "Bad-Name"}, size=0)
    body["spec"]["targets"] = [{"weight": 0}]
    body["spec"]["retention"] = "forever"
    message = invalid(widgets, body)["message"]
    assert (
        'spec.database.name: Invalid value: "Bad-Name": spec.database.name in body should match'
        in message
    )
    assert (
        "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        in message
    )
    assert "spec.targets[0].name: Required value" in message
    assert (
        "spec.targets[0].weight: Invalid value: 0: "
        "spec.targets[0].weight in body should be greater than 0" in message
    )
    assert (
        'spec.retention: Invalid value: "string": '
        'spec.retention in body must be of type integer: "string"' in message
    )


def test_missing_required_spec_field(widgets: Widgets) -> None:
    body = widget()
    del body["spec"]["size"]
    assert "spec.size: Required value" in invalid(widgets, body)["message"]


def test_max_length_and_max_items(widgets: Widgets) -> None:
    body = widget(
        database={"engine": "mysql", "name": "a" * 64},
        targets=[{"name": f"t-{i}"} for i in range(4)],
    )
    message = invalid(widgets, body)["message"]
    assert "spec.database.name: Too long: may not be more than 63 bytes" in message
    assert "spec.targets: Too many: 4: must have at most 3 items" in message


def test_list_map_keys_must_be_unique(widgets: Widgets) -> None:
    body = widget(targets=[{"name": "t-a"}, {"name": "t-a"}])
    assert "spec.targets[1]: Duplicate value" in invalid(widgets, body)["message"]


def test_cel_rule_on_a_list(widgets: Widgets) -> None:
    body = widget(targets=[{"name": "bad"}])
    assert (
        'spec.targets: Invalid value: "array": target names start with t-'
        in invalid(widgets, body)["message"]
    )


def test_cel_immutability_transition_rule(widgets: Widgets) -> None:
    widgets.create(widget())
    status = invalid(widgets, {"spec": {"database": {"engine": "mysql"}}})
    assert status["message"] == (
        'Widget.example.dev "w1" is invalid: '
        'spec: Invalid value: "object": spec.database is immutable'
    )
    assert widgets.patch("w1", {"spec": {"size": 9}})["spec"]["size"] == 9


def test_unknown_spec_fields_are_pruned_with_a_warning(
    kube_api: kubernetes.client.ApiClient,
) -> None:
    body = widget(bogus=1, database={"engine": "postgres", "name": "shop", "host": "x"})
    body["metadata"]["bogus"] = "y"
    response = kube_api.call_api(
        "/apis/example.dev/v1alpha1/namespaces/default/widgets",
        "POST",
        body=body,
        header_params={"Content-Type": "application/json"},
        _preload_content=False,
        auth_settings=["BearerToken"],
    )
    created = json.loads(response.data)
    assert "bogus" not in created["spec"]
    assert "host" not in created["spec"]["database"]
    assert "bogus" not in created["metadata"]
    warnings = response.headers.get("Warning", "")
    assert 'unknown field \\"spec.bogus\\"' in warnings


def test_strict_field_validation_rejects_unknown_fields(
    kube_api: kubernetes.client.ApiClient,
) -> None:
    with pytest.raises(kubernetes.client.ApiException) as err:
        kubernetes.client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
            "example.dev",
            "v1alpha1",
            "default",
            "widgets",
            widget(bogus=1),
            field_validation="Strict",
        )
    assert err.value.status == 400
    assert 'strict decoding error: unknown field "spec.bogus"' in status_of(err.value)["message"]


def test_unknown_status_fields_are_pruned(widgets: Widgets) -> None:
    widgets.create(widget())
    patched = widgets.patch_status(
        "w1",
        {
            "status": {
                "phase": "Ready",
                "kopf": {"progress": {}},
                "conditions": [{"type": "Ready", "status": "True", "extra": 1}],
            }
        },
    )
    assert patched["status"] == {
        "phase": "Ready",
        "conditions": [{"type": "Ready", "status": "True"}],
    }


def test_invalid_status_is_rejected(widgets: Widgets) -> None:
    widgets.create(widget())
    with pytest.raises(kubernetes.client.ApiException) as err:
        widgets.patch_status("w1", {"status": {"phase": "Exploded"}})
    assert err.value.status == 422
    assert 'status.phase: Unsupported value: "Exploded"' in status_of(err.value)["message"]


def test_defaults_are_applied(widgets: Widgets) -> None:
    assert widgets.create(widget())["spec"]["retention"] == 7


def test_nullable_fields_keep_null_and_other_nulls_are_dropped(widgets: Widgets) -> None:
    created = widgets.create(widget(schedule=None, retention=None))
    assert created["spec"]["schedule"] is None
    assert created["spec"]["retention"] == 7  # null dropped, then defaulted


def test_preserve_unknown_fields_keeps_everything_below(widgets: Widgets) -> None:
    created = widgets.create(widget(extra={"anything": {"goes": [1, 2]}}))
    assert created["spec"]["extra"] == {"anything": {"goes": [1, 2]}}


def test_map_values_are_validated(widgets: Widgets) -> None:
    body = widget(labels={"a": 1})
    assert 'spec.labels[a]: Invalid value: "integer"' in invalid(widgets, body)["message"]


def test_date_time_format_is_checked(widgets: Widgets) -> None:
    widgets.create(widget())
    with pytest.raises(kubernetes.client.ApiException) as err:
        widgets.patch_status(
            "w1",
            {
                "status": {
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": "yesterday"}
                    ]
                }
            },
        )
    assert "must be of type date-time" in status_of(err.value)["message"]


def test_null_on_a_nullable_enum_is_rejected_unless_the_enum_lists_null(widgets: Widgets) -> None:
    status = invalid(widgets, widget(tier=None))
    assert (
        'spec.tier: Unsupported value: "null": supported values: "gold", "silver"'
        in status["message"]
    )
    assert widgets.create(widget(mode=None))["spec"]["mode"] is None


def test_cel_sees_null_fields_as_absent(widgets: Widgets) -> None:
    assert widgets.create(widget("w1", schedule=None))["spec"]["schedule"] is None
    status = invalid(widgets, widget("w2", schedule=""), name="w2")
    assert "schedule must not be empty" in status["message"]
