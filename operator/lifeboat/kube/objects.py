"""The API calls the operator and the worker make, on plain dicts.

Responses are read raw (`_preload_content=False`) and parsed as JSON: the rest of Lifeboat works
on the dicts kopf hands to handlers, so there is one shape everywhere.

Every call goes through `call_with_retries` (kube/retry.py): throttling, 5xx and dropped
connections are retried with a bounded backoff and then raised as `KubeError`, never read as
"not found" or "already exists". Writes without a resourceVersion (merge patches) are also sent
again after a 409 Conflict.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lifeboat.api import GROUP, VERSION
from lifeboat.contract import Object
from lifeboat.kube.retry import DEFAULT_POLICY, RetryPolicy, call_with_retries, is_transient


class KubeError(Exception):
    """An API call failed in a way the caller must report (not 404/409, which are handled)."""

    def __init__(self, what: str, exc: ApiException) -> None:
        detail = _status_body(exc).get("message", "")
        super().__init__(f"{what}: {exc.status} {exc.reason}: {detail}")
        self.status = exc.status
        self.transient = is_transient(exc)
        """Worth trying again later (429, 5xx, no connection): never a verdict on the object."""


class NotOurs(KubeError):
    """An object with the name we derive exists but belongs to another owner: never adopted."""


class NamespaceTerminating(KubeError):
    """The namespace is being deleted: the API server refuses every new object in it (403 with
    the status cause `NamespaceTerminating`), and will delete what is in it."""


def _status_body(exc: ApiException) -> Object:
    try:
        body = json.loads(exc.body or "{}")
    except (ValueError, TypeError):
        return {}
    return body if isinstance(body, dict) else {}


def _refused_because_terminating(exc: ApiException) -> bool:
    # metav1.StatusCause serializes its type as "reason".
    causes = (_status_body(exc).get("details") or {}).get("causes") or []
    return exc.status == 403 and any(c.get("reason") == "NamespaceTerminating" for c in causes)


def _json(response: Any) -> Object:
    data: Object = json.loads(response.data)
    return data


def create_or_adopt_job(api: client.ApiClient, job: Object) -> tuple[Object, bool]:
    """Create the Job; if one with its name exists (a restart, a retry, a create whose answer
    was lost), return that one, once it is sure to be ours (`NotOurs` if another object owns it).

    Returns (job, created). The name is deterministic, so a second call never makes a second Job.
    """
    namespace = job["metadata"]["namespace"]
    batch = client.BatchV1Api(api)
    what = f"creating Job {namespace}/{job['metadata']['name']}"
    try:
        created = call_with_retries(
            lambda: batch.create_namespaced_job(namespace, job, _preload_content=False), what
        )
        return _json(created), True
    except ApiException as exc:
        if _refused_because_terminating(exc):
            raise NamespaceTerminating(what, exc) from None
        if exc.status != 409:
            raise KubeError(what, exc) from None
    existing = read_job(api, namespace, job["metadata"]["name"])
    if existing is None:  # deleted between our create and read: let the caller retry
        raise KubeError(
            f"Job {namespace}/{job['metadata']['name']} vanished while adopting it",
            ApiException(status=404, reason="NotFound"),
        )
    _check_owner(job, existing)
    return existing, False


def _check_owner(wanted: Object, existing: Object) -> None:
    """A 409 on create adopts the existing object only if it is ours: the same controller
    ownerReference (our earlier create whose answer was lost, or a restart), never another
    object's that happens to have the name."""
    ours = {
        ref.get("uid")
        for ref in wanted["metadata"].get("ownerReferences") or []
        if ref.get("controller")
    }
    if not ours:
        return
    theirs = {
        ref.get("uid")
        for ref in existing["metadata"].get("ownerReferences") or []
        if ref.get("controller")
    }
    if not ours & theirs:
        meta = existing["metadata"]
        raise NotOurs(
            f"adopting {existing.get('kind', 'object')} {meta.get('namespace')}/{meta['name']}",
            ApiException(
                status=409,
                reason=f"AlreadyExists and owned by {sorted(map(str, theirs)) or 'nobody'}, "
                f"not by {sorted(map(str, ours))}",
            ),
        )


def read_job(api: client.ApiClient, namespace: str, name: str) -> Object | None:
    what = f"reading Job {namespace}/{name}"
    batch = client.BatchV1Api(api)
    try:
        return _json(
            call_with_retries(
                lambda: batch.read_namespaced_job(name, namespace, _preload_content=False), what
            )
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise KubeError(what, exc) from None


def delete_job(api: client.ApiClient, namespace: str, name: str) -> None:
    """Delete a Job and its Pods (background propagation); a missing Job is fine."""
    what = f"deleting Job {namespace}/{name}"
    batch = client.BatchV1Api(api)
    try:
        call_with_retries(
            lambda: batch.delete_namespaced_job(
                name, namespace, propagation_policy="Background", _preload_content=False
            ),
            what,
        )
    except ApiException as exc:
        if exc.status != 404:
            raise KubeError(what, exc) from None


def list_job_pods(api: client.ApiClient, namespace: str, job_name: str) -> list[Object]:
    what = f"listing Pods of Job {namespace}/{job_name}"
    core = client.CoreV1Api(api)
    try:
        response = call_with_retries(
            lambda: core.list_namespaced_pod(
                namespace, label_selector=f"job-name={job_name}", _preload_content=False
            ),
            what,
        )
    except ApiException as exc:
        raise KubeError(what, exc) from None
    items: list[Object] = _json(response).get("items", [])
    return items


def list_warning_events(api: client.ApiClient, namespace: str, uid: str) -> list[Object]:
    """The Warning Events about one object (by uid): why a Job cannot create its Pod, why a Pod
    cannot mount its volumes. Core v1 Events, as the Job controller and the kubelet post them."""
    what = f"listing Events of {uid} in {namespace}"
    core = client.CoreV1Api(api)
    try:
        response = call_with_retries(
            lambda: core.list_namespaced_event(
                namespace,
                field_selector=f"involvedObject.uid={uid},type=Warning",
                _preload_content=False,
            ),
            what,
        )
    except ApiException as exc:
        raise KubeError(what, exc) from None
    items: list[Object] = _json(response).get("items", [])
    return items


def read_custom(api: client.ApiClient, plural: str, namespace: str, name: str) -> Object | None:
    what = f"reading {plural} {namespace}/{name}"
    custom = client.CustomObjectsApi(api)
    try:
        return _json(
            call_with_retries(
                lambda: custom.get_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, name, _preload_content=False
                ),
                what,
            )
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise KubeError(what, exc) from None


def list_custom(
    api: client.ApiClient, plural: str, namespace: str, *, label_selector: str | None = None
) -> list[Object]:
    what = f"listing {plural} in {namespace}"
    custom = client.CustomObjectsApi(api)
    try:
        response = call_with_retries(
            lambda: custom.list_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                label_selector=label_selector,
                _preload_content=False,
            ),
            what,
        )
    except ApiException as exc:
        raise KubeError(what, exc) from None
    items: list[Object] = _json(response).get("items", [])
    return items


def create_or_adopt_custom(api: client.ApiClient, plural: str, body: Object) -> tuple[Object, bool]:
    """Create a Lifeboat object; if one with its name exists, return that one (never a second).

    Returns (object, created), like `create_or_adopt_job`."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    what = f"creating {plural} {namespace}/{name}"
    custom = client.CustomObjectsApi(api)
    try:
        created = call_with_retries(
            lambda: custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, body, _preload_content=False
            ),
            what,
        )
        return _json(created), True
    except ApiException as exc:
        if _refused_because_terminating(exc):
            raise NamespaceTerminating(what, exc) from None
        if exc.status != 409:
            raise KubeError(what, exc) from None
    existing = read_custom(api, plural, namespace, name)
    if existing is None:  # deleted between our create and read: let the caller retry
        raise KubeError(
            f"{plural} {namespace}/{name} vanished while adopting it",
            ApiException(status=404, reason="NotFound"),
        )
    return existing, False


def patch_custom(
    api: client.ApiClient, plural: str, namespace: str, name: str, patch: Object
) -> Object | None:
    """Merge-patch a Lifeboat object (metadata or spec, not status). None if it is gone."""
    what = f"patching {plural} {namespace}/{name}"
    custom = client.CustomObjectsApi(api)
    try:
        return _json(
            call_with_retries(
                lambda: custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, name, patch, _preload_content=False
                ),
                what,
                conflicts=True,
            )
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise KubeError(what, exc) from None


def delete_custom(
    api: client.ApiClient,
    plural: str,
    namespace: str,
    name: str,
    *,
    uid: str,
    propagation: str = "Background",
) -> bool:
    """Delete the Lifeboat object `name` if it is still the one with `uid` (never one created
    since under the same name). False if it was already gone or is another object now."""
    what = f"deleting {plural} {namespace}/{name}"
    custom = client.CustomObjectsApi(api)
    try:
        call_with_retries(
            lambda: custom.delete_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                body={"propagationPolicy": propagation, "preconditions": {"uid": uid}},
                _preload_content=False,
            ),
            what,
        )
    except ApiException as exc:
        if exc.status in (404, 409):
            return False
        raise KubeError(what, exc) from None
    return True


def patch_status(
    api: client.ApiClient,
    plural: str,
    namespace: str,
    name: str,
    status: Object,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Object | None:
    """Merge-patch `status` through the status subresource. None if the object is gone.

    `policy`: how hard to retry (the worker's progress writes try once: the next one follows)."""
    what = f"writing status of {plural} {namespace}/{name}"
    custom = client.CustomObjectsApi(api)
    try:
        return _json(
            call_with_retries(
                lambda: custom.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    name,
                    {"status": status},
                    _preload_content=False,
                ),
                what,
                conflicts=True,
                policy=policy,
            )
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise KubeError(what, exc) from None
