"""Small builders shared by the test API server's tests."""

from __future__ import annotations

import json
from typing import Any

import kubernetes

GROUP, VERSION, PLURAL = "example.dev", "v1alpha1", "widgets"


def widget(name: str = "w1", **spec: Any) -> dict[str, Any]:
    body_spec = {"database": {"engine": "postgres", "name": "shop"}, "size": 3, **spec}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": body_spec,
    }


class Widgets:
    """The CustomObjectsApi calls for widgets in one namespace, shortened."""

    def __init__(self, api: kubernetes.client.ApiClient, namespace: str = "default") -> None:
        self.api = kubernetes.client.CustomObjectsApi(api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return result

    def get(self, name: str = "w1") -> dict[str, Any]:
        result: dict[str, Any] = self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return result

    def list(self, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.api.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, **kwargs
        )
        return result

    def patch(self, name: str, body: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, body, _content_type=_patch_type(body)
        )
        return result

    def patch_status(self, name: str, body: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.api.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, name, body, _content_type=_patch_type(body)
        )
        return result

    def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.api.replace_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, body
        )
        return result

    def replace_status(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.api.replace_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, name, body
        )
        return result

    def delete(self, name: str = "w1", **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.api.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, **kwargs
        )
        return result

    def exists(self, name: str = "w1") -> bool:
        try:
            self.get(name)
        except kubernetes.client.ApiException as e:
            if e.status == 404:
                return False
            raise
        return True


def _patch_type(body: Any) -> str:
    return (
        "application/json-patch+json" if isinstance(body, list) else "application/merge-patch+json"
    )


def status_of(error: kubernetes.client.ApiException) -> dict[str, Any]:
    """The `Status` body of an API error."""
    body: dict[str, Any] = json.loads(error.body)
    return body


def watch(
    server_url: str, path: str, *, count: int | None = None, until: str | None = None, **params: str
) -> list[dict[str, Any]]:
    """Stream a watch until the server ends it (`timeoutSeconds`), `count` events arrived,
    or an event for the object named `until` arrived (that one is not returned)."""
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({"watch": "true", "timeoutSeconds": "2", **params})
    events: list[dict[str, Any]] = []
    with urllib.request.urlopen(f"{server_url}{path}?{query}", timeout=10) as response:  # noqa: S310
        assert response.headers["Content-Type"].startswith("application/json")
        for line in response:
            if line.strip():
                event = json.loads(line)
                if until is not None and event["object"]["metadata"].get("name") == until:
                    break
                events.append(event)
            if count is not None and len(events) >= count:
                break
    return events
