"""The API calls of leader election: read, create and replace one coordination.k8s.io/v1 Lease.

Writes are optimistic: `replace_lease` sends the resourceVersion it read, so of two operators
that read the same Lease and both try to take it, the API server lets one write and answers the
other 409 (`LeaseConflict`): that one lost the race. A create that finds the Lease already made
is the same race.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lifeboat.contract import Object
from lifeboat.kube.objects import KubeError

LEASE_API_VERSION = "coordination.k8s.io/v1"


class LeaseConflict(Exception):
    """Another writer changed or created the Lease first (409): re-read it."""


def _json(response: Any) -> Object:
    data: Object = json.loads(response.data)
    return data


def read_lease(
    api: client.ApiClient, namespace: str, name: str, *, timeout: float
) -> Object | None:
    """The Lease, or None when there is none yet."""
    try:
        response = client.CoordinationV1Api(api).read_namespaced_lease(
            name, namespace, _preload_content=False, _request_timeout=timeout
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise KubeError(f"reading Lease {namespace}/{name}", exc) from None
    return _json(response)


def create_lease(
    api: client.ApiClient, namespace: str, name: str, spec: Object, *, timeout: float
) -> Object:
    body = {
        "apiVersion": LEASE_API_VERSION,
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    try:
        response = client.CoordinationV1Api(api).create_namespaced_lease(
            namespace, body, _preload_content=False, _request_timeout=timeout
        )
    except ApiException as exc:
        if exc.status == 409:
            raise LeaseConflict(f"Lease {namespace}/{name} was created by another") from None
        raise KubeError(f"creating Lease {namespace}/{name}", exc) from None
    return _json(response)


def replace_lease(api: client.ApiClient, lease: Object, spec: Object, *, timeout: float) -> Object:
    """Write `spec` over the Lease as read (its resourceVersion is the precondition)."""
    meta = lease["metadata"]
    body = {
        "apiVersion": LEASE_API_VERSION,
        "kind": "Lease",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "resourceVersion": meta["resourceVersion"],
        },
        "spec": spec,
    }
    try:
        response = client.CoordinationV1Api(api).replace_namespaced_lease(
            meta["name"], meta["namespace"], body, _preload_content=False, _request_timeout=timeout
        )
    except ApiException as exc:
        if exc.status == 409:
            raise LeaseConflict(
                f"Lease {meta['namespace']}/{meta['name']} changed since it was read"
            ) from None
        raise KubeError(f"updating Lease {meta['namespace']}/{meta['name']}", exc) from None
    return _json(response)


__all__ = ["LeaseConflict", "create_lease", "read_lease", "replace_lease"]
