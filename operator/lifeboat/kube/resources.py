"""The API calls of the kubectl plugin: read, create, list and watch Lifeboat objects, Events,
a Job's Pods and their logs, with the kubeconfig and context kubectl itself would use.

Everything comes back as plain dicts (like kube/objects.py), and every failure as an `ApiError`
carrying the API server's status and message, so nothing above this module sees a
`kubernetes` type.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from lifeboat.api import GROUP, VERSION
from lifeboat.contract import Object
from lifeboat.kube.client import in_cluster

REQUEST_TIMEOUT = 30.0
"""Seconds any single call may take (a watch: its own window plus this)."""
WATCH_WINDOW = 60
"""Seconds one watch request stays open before it is renewed from the last resourceVersion."""
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class ApiError(Exception):
    """The API server refused a request, or could not be reached (status 0)."""

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFound(ApiError):
    """The object does not exist (404)."""


class KubeconfigError(ApiError):
    """No usable kubeconfig, or no such context in it."""


class LogsUnavailable(ApiError):
    """The container has no logs yet (it is waiting to start), or no Pod exists yet."""


@dataclass
class Connection:
    """A configured client and the namespace kubectl would use by default."""

    api: Any
    namespace: str
    context: str | None


def connect(kubeconfig: str | None = None, context: str | None = None) -> Connection:
    """Connect as kubectl does: `--kubeconfig`, else $KUBECONFIG (a list of files, merged), else
    ~/.kube/config; inside a Pod without any of them, the service account. The default
    namespace is the context's (else `default`)."""
    paths = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    files = [p for p in paths.split(os.pathsep) if p]
    if not any(Path(p).expanduser().exists() for p in files):
        if kubeconfig is None and context is None and in_cluster():
            return _in_cluster()
        raise KubeconfigError(
            f"no kubeconfig at {paths}: pass --kubeconfig, or set KUBECONFIG as for kubectl"
        )
    try:
        contexts, active = config.list_kube_config_contexts(config_file=paths)
    except ConfigException as exc:
        raise KubeconfigError(f"kubeconfig {paths}: {exc}") from None
    chosen = active
    if context is not None:
        chosen = next((c for c in contexts or [] if c.get("name") == context), None)
        if chosen is None:
            known = ", ".join(sorted(c.get("name", "") for c in contexts or [])) or "none"
            raise KubeconfigError(f"kubeconfig {paths} has no context {context!r} (it has {known})")
    try:
        api = config.new_client_from_config(
            config_file=paths, context=context, persist_config=False
        )
    except ConfigException as exc:
        raise KubeconfigError(f"kubeconfig {paths}: {exc}") from None
    namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    return Connection(api=api, namespace=namespace, context=(chosen or {}).get("name"))


def _in_cluster() -> Connection:
    configuration = client.Configuration()
    config.load_incluster_config(client_configuration=configuration)
    namespace = "default"
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or namespace
    return Connection(api=client.ApiClient(configuration), namespace=namespace, context=None)


# -- errors -----------------------------------------------------------------------------------


def _error(what: str, exc: Exception) -> ApiError:
    if isinstance(exc, ApiException):
        message = ""
        try:
            body = json.loads(exc.body or "{}")
            message = body.get("message", "") if isinstance(body, dict) else ""
        except (TypeError, ValueError):
            message = str(exc.body or "")
        kind = NotFound if exc.status == 404 else ApiError
        detail = message or exc.reason or ""
        return kind(f"{what}: {detail}", status=exc.status or 0, reason=exc.reason or "")
    return ApiError(f"{what}: cannot reach the API server ({type(exc).__name__}: {exc})")


_UNREACHABLE = (urllib3.exceptions.HTTPError, OSError)


def _json(response: Any) -> Object:
    data: Object = json.loads(response.data)
    return data


# -- Lifeboat objects -------------------------------------------------------------------------


def get_object(conn: Connection, plural: str, namespace: str, name: str) -> Object:
    """The object; NotFound if there is none."""
    what = f"{plural}.{GROUP} {name!r} in namespace {namespace!r}"
    try:
        return _json(
            client.CustomObjectsApi(conn.api).get_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        )
    except ApiException as exc:
        if exc.status == 404:
            raise NotFound(f"{what} not found", status=404, reason="NotFound") from None
        raise _error(f"reading {what}", exc) from None
    except _UNREACHABLE as exc:
        raise _error(f"reading {what}", exc) from None


def create_object(conn: Connection, plural: str, namespace: str, body: Object) -> Object:
    """Create the object; ApiError with the server's words on 409 (exists) or 422 (invalid)."""
    name = body["metadata"]["name"]
    try:
        return _json(
            client.CustomObjectsApi(conn.api).create_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                body,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        )
    except (ApiException, *_UNREACHABLE) as exc:
        what = f"creating {plural}.{GROUP} {name!r} in namespace {namespace!r}"
        raise _error(what, exc) from None


def list_objects(conn: Connection, plural: str, namespace: str | None) -> list[Object]:
    """The objects of one kind in `namespace`, or in every namespace (None)."""
    api = client.CustomObjectsApi(conn.api)
    where = f"namespace {namespace!r}" if namespace else "all namespaces"
    try:
        if namespace is None:
            response = api.list_cluster_custom_object(
                GROUP, VERSION, plural, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
            )
        else:
            response = api.list_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                plural,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
    except (ApiException, *_UNREACHABLE) as exc:
        raise _error(f"listing {plural}.{GROUP} in {where}", exc) from None
    items: list[Object] = _json(response).get("items") or []
    return items


MAX_WATCH_CUTS: Final = 5
"""Watch streams cut in a row (no event and no window ending normally in between) before a
watch fails."""


def watch_object(
    conn: Connection, plural: str, namespace: str, name: str, deadline: float | None = None
) -> Iterator[Object]:
    """The object now, then again after every change the API server reports, until `deadline`
    (a `time.monotonic()` value; None: for ever). NotFound when it is deleted.

    A watch, not polling: each request stays open for at most WATCH_WINDOW seconds (the server
    ends it) and is renewed from the last resourceVersion; an expired resourceVersion (410 Gone)
    starts again from a fresh read, and so does a stream cut midway (up to MAX_WATCH_CUTS in
    a row).
    """
    current = get_object(conn, plural, namespace, name)
    yield current
    version = current["metadata"].get("resourceVersion")
    api = client.CustomObjectsApi(conn.api)
    what = f"watching {plural}.{GROUP} {name!r} in namespace {namespace!r}"
    cuts = 0
    while deadline is None or time.monotonic() < deadline:
        window = WATCH_WINDOW
        if deadline is not None:
            window = max(1, min(WATCH_WINDOW, int(deadline - time.monotonic()) + 1))
        watcher = watch.Watch()
        try:
            for event in watcher.stream(
                api.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                plural,
                field_selector=f"metadata.name={name}",
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=window,
                _request_timeout=(REQUEST_TIMEOUT, window + REQUEST_TIMEOUT),
            ):
                cuts = 0
                obj = event["object"]
                if isinstance(obj, dict):
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if event["type"] == "DELETED":
                    raise NotFound(f"{plural}.{GROUP} {name!r} was deleted", 404, "NotFound")
                if event["type"] in ("ADDED", "MODIFIED"):
                    yield obj
                if deadline is not None and time.monotonic() >= deadline:
                    return
        except ApiException as exc:
            if exc.status != 410:
                raise _error(what, exc) from None
            current = get_object(conn, plural, namespace, name)
            version = current["metadata"].get("resourceVersion")
            yield current
        except _UNREACHABLE as exc:
            # A stream cut midway (an API server restarting or scaling, a load balancer's idle
            # timeout) is not an answer: read the object again and watch on. A server that is
            # really gone fails that read; one that keeps cutting fails after a few in a row.
            cuts += 1
            if cuts > MAX_WATCH_CUTS:
                raise _error(what, exc) from None
            time.sleep(min(0.1 * 2**cuts, 2.0))  # backoff before asking again
            current = get_object(conn, plural, namespace, name)
            version = current["metadata"].get("resourceVersion")
            yield current
        else:
            cuts = 0
        finally:
            watcher.stop()


# -- Events, Pods, logs -----------------------------------------------------------------------


def list_events(conn: Connection, namespace: str, uid: str) -> list[Object]:
    """Core v1 Events about one object (by uid), oldest first."""
    try:
        response = client.CoreV1Api(conn.api).list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.uid={uid}",
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except (ApiException, *_UNREACHABLE) as exc:
        raise _error(f"listing Events in namespace {namespace!r}", exc) from None
    items: list[Object] = _json(response).get("items") or []
    return sorted(items, key=event_time)


def event_time(event: Object) -> str:
    """When an Event last happened, as an RFC 3339 string ('' if it does not say)."""
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def list_job_pods(conn: Connection, namespace: str, job_name: str) -> list[Object]:
    """The Pods of a Job (its label `job-name`), oldest first."""
    try:
        response = client.CoreV1Api(conn.api).list_namespaced_pod(
            namespace,
            label_selector=f"job-name={job_name}",
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except (ApiException, *_UNREACHABLE) as exc:
        raise _error(f"listing the Pods of Job {job_name!r}", exc) from None
    items: list[Object] = _json(response).get("items") or []
    return sorted(items, key=lambda pod: str(pod["metadata"].get("creationTimestamp", "")))


def stream_pod_log(
    conn: Connection, namespace: str, pod: str, *, follow: bool, tail_lines: int | None = None
) -> Iterator[bytes]:
    """A container's log as it arrives (`follow`: until the container ends).

    LogsUnavailable while the container is waiting to start (the API answers 400)."""
    try:
        response = client.CoreV1Api(conn.api).read_namespaced_pod_log(
            pod,
            namespace,
            follow=follow,
            tail_lines=tail_lines,
            _preload_content=False,
            _request_timeout=None if follow else REQUEST_TIMEOUT,
        )
    except ApiException as exc:
        error = _error(f"reading the log of Pod {pod!r}", exc)
        if exc.status == 400:
            raise LogsUnavailable(str(error), 400, exc.reason or "") from None
        raise error from None
    except _UNREACHABLE as exc:
        raise _error(f"reading the log of Pod {pod!r}", exc) from None
    try:
        # Chunked responses are yielded chunk by chunk, so followed lines appear as written.
        yield from response.stream(64 * 1024)
    except _UNREACHABLE as exc:
        raise _error(f"reading the log of Pod {pod!r}", exc) from None
    finally:
        response.release_conn()
