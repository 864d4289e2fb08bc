"""An in-process Kubernetes API server for tests, built on kmock's `KubernetesEmulator`.

The real kopf operator, the real `kubernetes` client and the real `kubectl` talk to it
over HTTP on 127.0.0.1, as to a cluster. It runs in its own thread with its own event
loop. Compared to stock kmock 0.8 it adds what a cluster does and an operator relies on:
object metadata (uid, resourceVersion, generation, timestamps), 404/409/410/422 `Status`
errors, finalizers and deletion, ownerReference garbage collection, the `/status`
subresource, CRD schema pruning/defaulting/validation (incl. CEL), resourceVersion-
and selector-aware watches with bookmarks, Table printing, pods/log and discovery. Tests
inject a flaky API through `faults` (see faults.py): error Statuses, resets, dropped watches,
compaction.

kmock internals relied upon (pinned `kmock==0.8`): `KubernetesEmulator` as the base
class (its attrs fields `_objects`, `_resources`, `_requests`, `_payloads`), the
`Request` model, `RawHandler._handle` for user-defined reactions (`server[...] << ...`),
`ResourcesArray.load_bundled()` and `ResourceInfo`, and `ObjectsArray`/`Object` as
the versioned object store. kmock's own request parsing, its fallback handlers and its
`Server` (which patches aiohttp's resolver process-wide) are deliberately not used.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import dataclasses
import datetime
import json
import logging
import pathlib
import random
import shutil
import tempfile
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import apps, rendering

from . import builtins, patches, quota
from .errors import (
    ApiError,
    FieldError,
    already_exists,
    bad_request,
    conflict,
    endpoint_not_found,
    gone,
    invalid,
    method_not_allowed,
    not_found,
)
from .faults import Faults
from .loops import start_loop_thread, stop_loop_thread
from .podlogs import PodLogs
from .printing import table
from .registry import CRD_RESOURCE, Registry, ResourceDef, load_crd_documents
from .schema import OBJECT_META_FIELDS
from .selectors import FieldSelector, LabelSelector, SelectorError

logger = logging.getLogger(__name__)

T = TypeVar("T")

SERVER_VERSION = {
    "major": "1",
    "minor": "34",
    "gitVersion": "v1.34.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-08-27T00:00:00Z",
    "goVersion": "go1.24.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
INITIAL_EVENTS_END = "k8s.io/initial-events-end"
_JOB_ORPHAN_WARNING = (
    "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background "
    "to remove them or set propagationPolicy=Orphan to suppress this warning"
)
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class Route:
    """A parsed API path: `/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/{sub}`."""

    group: str
    version: str
    namespace: str | None = None
    plural: str | None = None
    name: str | None = None
    subresource: str | None = None

    @classmethod
    def parse(cls, path: str) -> Route | None:
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        namespace = None
        namespace_subresource = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
        if rest and rest[0] == "namespaces" and len(rest) >= 3 and not namespace_subresource:
            namespace, rest = rest[1], rest[2:]
        if not rest:
            return cls(group, version, namespace)
        return cls(
            group=group,
            version=version,
            namespace=namespace,
            plural=rest[0],
            name=rest[1] if len(rest) > 1 else None,
            subresource="/".join(rest[2:]) or None,
        )

    def kmock_action(self, method: str, params: Mapping[str, str]) -> kmock.action | None:
        if self.plural is None:
            return None
        if method == "GET" and _flag(params.get("watch")):
            return kmock.action.WATCH
        if self.name is None:
            return {"GET": kmock.action.LIST, "POST": kmock.action.CREATE}.get(method)
        return {
            "GET": kmock.action.FETCH,
            "PATCH": kmock.action.UPDATE,
            "PUT": kmock.action.UPDATE,
            "DELETE": kmock.action.DELETE,
        }.get(method)


@dataclasses.dataclass(frozen=True)
class _Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None


@dataclasses.dataclass
class _Context:
    """Per-request bits that travel through the mutation pipeline."""

    dry_run: bool = False
    field_validation: str = "Warn"
    warnings: list[str] = dataclasses.field(default_factory=list)


def _json_response(
    body: Any,
    status: int = 200,
    warnings: Sequence[str] = (),
    headers: Mapping[str, str] | None = None,
) -> aiohttp.web.Response:
    response = aiohttp.web.Response(
        body=json.dumps(body).encode(), status=status, content_type="application/json"
    )
    for key, value in (headers or {}).items():
        response.headers[key] = value
    for warning in dict.fromkeys(warnings):
        escaped = warning.replace("\\", "\\\\").replace('"', '\\"')
        response.headers.add("Warning", f'299 - "{escaped}"')
    return response


def _flag(value: str | None) -> bool:
    """A boolean query parameter, as Go's strconv.ParseBool parses it (Python clients send True)."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _accepts_table(accept: str) -> str | None:
    """The Table version asked for in `Accept`, if any (`kubectl get` asks for one)."""
    versions = [part for part in accept.split(",") if "as=Table" in part.replace(" ", "")]
    if not versions:
        return None
    return "v1" if any("v=v1;" in v.replace(" ", "") + ";" for v in versions) else "v1beta1"


@attrs.define(kw_only=True)
class KubeServer(kmock.KubernetesEmulator):
    """The test API server. Use as a context manager, or `start()`/`stop()`."""

    crd_paths: Sequence[pathlib.Path | str] = ()
    host: str = "127.0.0.1"
    port: int = 0
    namespaces: Sequence[str] = DEFAULT_NAMESPACES
    max_watch_seconds: float = 1800.0
    watch_history: int = 20000
    pod_logs: PodLogs = attrs.field(factory=PodLogs)

    internal_errors: list[BaseException] = attrs.field(factory=list, init=False)
    faults: Faults = attrs.field(init=False)
    _watches: dict[int, aiohttp.web.BaseRequest] = attrs.field(factory=dict, init=False)
    _registry: Registry = attrs.field(init=False)
    _crd_docs: list[dict[str, Any]] = attrs.field(factory=list, init=False)
    _rv: int = attrs.field(default=0, init=False)
    _events: dict[kmock.resource, collections.deque[_Event]] = attrs.field(factory=dict, init=False)
    _compacted: dict[kmock.resource, int] = attrs.field(factory=dict, init=False)
    _reset_rv: int = attrs.field(default=0, init=False)
    _epoch: int = attrs.field(default=0, init=False)
    _changed: asyncio.Event | None = attrs.field(default=None, init=False)
    _stopping: bool = attrs.field(default=False, init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)
    _thread: threading.Thread | None = attrs.field(default=None, init=False)
    _runner: aiohttp.web.ServerRunner | None = attrs.field(default=None, init=False)
    _bound_port: int | None = attrs.field(default=None, init=False)
    _tmpdir: pathlib.Path | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        # NB: deliberately not calling the parent's: it registers kmock's own fallback reactions
        # (state kept in _handle(), 500 on JSON-patch test failures, ...), which we replace.
        self.faults = Faults(drop=self.drop_watches, compact=self.compact)
        self._registry = Registry(self._resources)
        self._registry.load_builtins()
        self._crd_docs = load_crd_documents(self.crd_paths)
        for doc in self._crd_docs:
            self._registry.add_crd(doc)
        self._seed()

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:  # type: ignore[override]
        if self._bound_port is None:
            raise RuntimeError("The server is not started.")
        return f"http://{self.host}:{self._bound_port}"

    @property
    def kubeconfig(self) -> pathlib.Path:
        """A kubeconfig file for this server (for kubectl, the client, and workers)."""
        if self._tmpdir is None:
            raise RuntimeError("The server is not started.")
        return self._tmpdir / "kubeconfig"

    def start(self) -> KubeServer:
        if self._thread is not None:
            raise RuntimeError("The server is already started.")
        self._stopping = False
        self._loop, self._thread = start_loop_thread("kube-server", self._astart)
        self._tmpdir = pathlib.Path(tempfile.mkdtemp(prefix="kube-server-"))
        self._write_kubeconfig(self.kubeconfig)
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        try:
            stop_loop_thread(self._loop, self._thread, self._astop)
        finally:
            self._thread = self._loop = None
            self._bound_port = None
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
                self._tmpdir = None
            self.pod_logs.clear()

    def __enter__(self) -> KubeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def _astart(self) -> None:
        await self.__aenter__()  # kmock's Root: the feeder of live streams for user reactions
        self._changed = asyncio.Event()
        server = aiohttp.web.Server(self, handler_cancellation=True, access_log=None)
        self._runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self._bound_port = self._runner.addresses[0][1]

    async def _astop(self) -> None:
        self._stopping = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.__aexit__(None, None, None)

    def call(self, fn: Callable[[], T], timeout: float = 30) -> T:
        """Run `fn` in the server's event loop (thread-safe access to the state)."""
        if self._loop is None or threading.current_thread() is self._thread:
            return fn()

        async def wrapper() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout=timeout)

    def reset(self) -> None:
        """Forget all objects, requests, and logs; re-seed namespaces and CRDs. Watches get 410."""

        def do_reset() -> None:
            self._objects.clear()
            self._requests.clear()
            self._payloads.clear()
            self.internal_errors.clear()
            self.faults.clear()
            self._registry = Registry(self._resources)
            self._resources.clear()
            self._registry.load_builtins()
            for doc in self._crd_docs:
                self._registry.add_crd(doc)
            self._epoch += 1
            self._reset_rv = self._rv
            self._events.clear()
            self._seed()
            self._notify()

        self.call(do_reset)
        self.pod_logs.clear()

    def _seed(self) -> None:
        for name in self.namespaces:
            rdef = self._rdef("", "v1", "namespaces")
            self._create(
                rdef,
                None,
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                _Context(),
            )
        crd_rdef = self._rdef(*CRD_RESOURCE)
        for doc in self._crd_docs:
            self._create(crd_rdef, None, copy.deepcopy(doc), _Context())

    def _write_kubeconfig(self, path: pathlib.Path) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "lifeboat-test", "cluster": {"server": self.url}}],
            "users": [{"name": "lifeboat-test", "user": {"token": "lifeboat-test-token"}}],
            "contexts": [
                {
                    "name": "lifeboat-test",
                    "context": {
                        "cluster": "lifeboat-test",
                        "user": "lifeboat-test",
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "lifeboat-test",
            "preferences": {},
        }
        path.write_text(yaml.safe_dump(config), encoding="utf-8")

    def kopf_login(self) -> Any:
        """A `kopf.ConnectionInfo` for an explicit `@kopf.on.login()` handler."""
        import kopf

        return kopf.ConnectionInfo(
            server=self.url, token="lifeboat-test-token", default_namespace="default"
        )

    def _rdef(self, group: str, version: str, plural: str) -> ResourceDef:
        rdef = self._registry.get(group, version, plural)
        if rdef is None:
            raise KeyError(f"{group}/{version}/{plural} is not served")
        return rdef

    # ------------------------------------------------------------------ HTTP entry point

    async def __call__(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        body = await raw.read()
        route = Route.parse(raw.path)
        params = dict(raw.query)
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        request = rendering.Request(
            id=len(self._requests),
            raw_request=raw,
            url=raw.url,
            method=raw.method,
            params=params,
            headers=dict(raw.headers),
            cookies=dict(raw.cookies),
            body=body,
            text=body.decode("utf-8", errors="replace"),
            data=data,
            action=route.kmock_action(raw.method, params) if route else None,
            resource=kmock.resource(route.group, route.version, route.plural)
            if route and route.plural
            else None,
            namespace=route.namespace if route else None,
            name=route.name if route else None,
            subresource=route.subresource if route else None,
        )
        self._requests.append(request)
        fault = self.faults.take(raw.method, raw.path, data)
        if fault is not None and fault.reset:
            if raw.transport is not None:
                raw.transport.abort()  # no answer at all: the client sees the connection reset
            return aiohttp.web.Response(status=500)
        try:
            if fault is not None and fault.commit:
                await self._dispatch(request, route)  # it happens; the client is told otherwise
            if fault is not None:
                raise fault.error(raw.path)
            if self._payloads:  # user-defined kmock reactions take precedence, e.g. fault injection
                try:
                    return await apps.RawHandler._handle(self, request)
                except NotImplementedError:
                    pass
            return await self._dispatch(request, route)
        except ApiError as e:
            return _json_response(e.status(), e.code, headers=e.headers)
        except kmock.KubernetesError as e:
            return await self._render_error(e)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:
            self.internal_errors.append(e)
            logger.exception(
                "Internal error of the test API server on %s %s", raw.method, raw.path_qs
            )
            status = ApiError(
                500,
                "InternalError",
                f"test server bug: {e!r}",
                {"causes": [{"message": traceback.format_exc()}]},
            )
            return _json_response(status.status(), 500)

    async def _dispatch(
        self, request: rendering.Request, route: Route | None
    ) -> aiohttp.web.StreamResponse:
        path = request.url.path.rstrip("/") or "/"
        method = str(request.method.value)
        if route is None:
            return self._serve_non_resource(path, method)
        if route.plural is None:
            if method != "GET":
                raise method_not_allowed()
            if route.namespace is not None:
                raise endpoint_not_found()
            return _json_response(self._resource_list(route.group, route.version))
        rdef = self._registry.get(route.group, route.version, route.plural)
        if rdef is None:
            raise endpoint_not_found()
        if route.namespace is not None and not rdef.namespaced:
            raise endpoint_not_found()
        if route.name is not None and rdef.namespaced and route.namespace is None:
            raise endpoint_not_found()
        params = dict(request.params)
        namespace = route.namespace
        accept = request.headers.get("Accept", "")

        if route.name is None:
            if method == "GET" and _flag(params.get("watch")):
                return await self._stream_watch(request, rdef, namespace, None, params)
            if method == "GET":
                return _json_response(self._list(rdef, namespace, params, accept))
            if method == "POST":
                if namespace is None and rdef.namespaced:
                    raise endpoint_not_found()
                ctx = self._context(params)
                obj = self._create(rdef, namespace, self._body(request), ctx)
                return _json_response(obj, 201, ctx.warnings)
            if method == "DELETE":
                ctx = self._context(params)
                return _json_response(
                    self._delete_collection(rdef, namespace, params, ctx), warnings=ctx.warnings
                )
            raise method_not_allowed()

        name = route.name
        sub = route.subresource
        if sub is None or (sub == "status" and rdef.has_status):
            if method == "GET" and _flag(params.get("watch")) and sub is None:
                return await self._stream_watch(request, rdef, namespace, name, params)
            if method == "GET":
                return _json_response(self._get(rdef, namespace, name, accept, params))
            ctx = self._context(params)
            if method == "PUT":
                obj = self._update(rdef, namespace, name, self._body(request), ctx, sub)
                return _json_response(obj, warnings=ctx.warnings)
            if method == "PATCH":
                content_type = request.headers.get("Content-Type", "")
                obj, created = self._patch(
                    rdef, namespace, name, content_type, request.body, params, ctx, sub
                )
                return _json_response(obj, 201 if created else 200, ctx.warnings)
            if method == "DELETE" and sub is None:
                options = request.data if isinstance(request.data, dict) else {}
                obj, code = self._delete(rdef, namespace, name, options, params, ctx)
                return _json_response(obj, code, ctx.warnings)
            raise method_not_allowed()
        if sub == "log" and (rdef.group, rdef.plural) == ("", "pods") and method == "GET":
            return await self._stream_log(request, rdef, namespace or "", name, params)
        if sub == "binding" and (rdef.group, rdef.plural) == ("", "pods") and method == "POST":
            return _json_response(self._bind(rdef, namespace or "", name, self._body(request)), 201)
        raise endpoint_not_found()

    def _context(self, params: Mapping[str, str]) -> _Context:
        return _Context(
            dry_run=params.get("dryRun") == "All",
            field_validation=params.get("fieldValidation") or "Warn",
        )

    @staticmethod
    def _body(request: rendering.Request) -> dict[str, Any]:
        if not request.body:
            raise bad_request("the request body is empty")
        content_type = request.headers.get("Content-Type", "application/json")
        if "protobuf" in content_type or "cbor" in content_type:
            raise _unsupported_encoding(content_type)
        try:
            data = json.loads(request.body)
        except ValueError:
            try:
                data = yaml.safe_load(request.body)
            except yaml.YAMLError as e:
                raise bad_request(f"the body is neither JSON nor YAML: {e}") from e
        if not isinstance(data, dict):
            raise bad_request("the request body must be a JSON object")
        return data

    # ------------------------------------------------------------------ discovery

    def _serve_non_resource(self, path: str, method: str) -> aiohttp.web.StreamResponse:
        if method != "GET":
            raise endpoint_not_found()
        if path == "/":
            paths = {
                "/api",
                "/api/v1",
                "/apis",
                "/version",
                "/healthz",
                "/readyz",
                "/livez",
                "/openapi/v3",
            }
            for group, versions in self._registry.groups().items():
                if group:
                    paths.add(f"/apis/{group}")
                    paths.update(f"/apis/{group}/{v}" for v in versions)
            return _json_response({"paths": sorted(paths)})
        if path == "/version":
            return _json_response(SERVER_VERSION)
        if path in ("/healthz", "/readyz", "/livez"):
            return aiohttp.web.Response(text="ok")
        if path == "/api":
            return _json_response(
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {
                            "clientCIDR": "0.0.0.0/0",
                            "serverAddress": f"{self.host}:{self._bound_port}",
                        }
                    ],
                }
            )
        if path == "/apis":
            return _json_response(
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [
                        self._api_group(g, v) for g, v in self._registry.groups().items() if g
                    ],
                }
            )
        if path.startswith("/apis/") and path.count("/") == 2:
            group = path.split("/")[2]
            versions = self._registry.groups().get(group) or []
            if not versions or not group:
                raise endpoint_not_found()
            return _json_response(
                {"kind": "APIGroup", "apiVersion": "v1", **self._api_group(group, versions)}
            )
        if path == "/openapi/v3":
            return _json_response(self._openapi_root())
        if path.startswith("/openapi/v3/"):
            return _json_response(self._openapi_group_version(path.removeprefix("/openapi/v3/")))
        raise endpoint_not_found()

    @staticmethod
    def _api_group(group: str, versions: Sequence[str]) -> dict[str, Any]:
        return {
            "name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
            "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
        }

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        rdefs = self._registry.in_group_version(group, version)
        if not rdefs:
            raise endpoint_not_found()
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": [entry for rdef in rdefs for entry in rdef.discovery()],
        }

    def _openapi_root(self) -> dict[str, Any]:
        paths = {}
        for group, versions in self._registry.groups().items():
            for version in versions:
                key = f"apis/{group}/{version}" if group else f"api/{version}"
                paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={self._epoch}"}
        return {"paths": paths}

    def _openapi_group_version(self, path: str) -> dict[str, Any]:
        """Just enough OpenAPI v3 for kubectl: PATCH (fieldValidation) and CRD schemas."""
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            raise endpoint_not_found()
        rdefs = self._registry.in_group_version(group, version)
        if not rdefs:
            raise endpoint_not_found()
        paths: dict[str, Any] = {}
        schemas: dict[str, Any] = {}
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        for rdef in rdefs:
            gvk = {"group": group, "version": version, "kind": rdef.kind}
            scope = "/namespaces/{namespace}" if rdef.namespaced else ""
            params = [
                {"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
                for n in ("dryRun", "fieldManager", "fieldValidation", "force")
            ]
            paths[f"{prefix}{scope}/{rdef.plural}/{{name}}"] = {
                "patch": {
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "x-kubernetes-action": "patch",
                },
                "put": {
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "x-kubernetes-action": "put",
                },
            }
            if rdef.custom and rdef.raw_schema is not None:
                schema_name = ".".join(reversed(group.split("."))) + f".{version}.{rdef.kind}"
                schema = copy.deepcopy(rdef.raw_schema)
                schema["x-kubernetes-group-version-kind"] = [gvk]
                schemas[schema_name] = schema
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths,
            "components": {"schemas": schemas},
        }

    # ------------------------------------------------------------------ storage

    def _key(
        self, rdef: ResourceDef, namespace: str | None, name: str
    ) -> tuple[kmock.resource, str | None, str]:
        return (rdef.storage, namespace if rdef.namespaced else None, name)

    def _load(self, key: tuple[kmock.resource, str | None, str]) -> dict[str, Any] | None:
        if key not in self._objects:
            return None
        stored = self._objects[key]
        if stored.deleted:
            return None
        return copy.deepcopy(stored.raw)

    def _iter_storage(self, storage: kmock.resource) -> Iterator[dict[str, Any]]:
        for (res, _, _), stored in list(self._objects.items()):
            if res == storage and not stored.deleted:
                yield stored.raw

    def _iter_all(self) -> Iterator[tuple[kmock.resource, dict[str, Any]]]:
        for (res, _, _), stored in list(self._objects.items()):
            if not stored.deleted:
                yield res, stored.raw

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    def _record(self, storage: kmock.resource, event: _Event) -> None:
        log = self._events.setdefault(storage, collections.deque())
        log.append(event)
        while len(log) > self.watch_history:
            self._compacted[storage] = log.popleft().rv
        self._notify()

    def _store(
        self, storage: kmock.resource, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self._next_rv())
        key = (storage, meta.get("namespace"), meta["name"])
        if key in self._objects:
            self._objects[key].history.append(copy.deepcopy(obj))
        else:
            self._objects[key] = copy.deepcopy(obj)
        self._record(
            storage, _Event(self._rv, "MODIFIED" if old else "ADDED", copy.deepcopy(obj), old)
        )
        return obj

    def _purge(self, storage: kmock.resource, obj: dict[str, Any]) -> dict[str, Any]:
        """The final removal: the DELETED event, then garbage collection of dependents."""
        meta = obj["metadata"]
        key = (storage, meta.get("namespace"), meta["name"])
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = str(self._next_rv())
        self._objects[key].delete()
        self._record(storage, _Event(self._rv, "DELETED", final, None))
        self._on_purged(storage, final)
        return final

    # ------------------------------------------------------------------ conversion

    def _to_storage(self, rdef: ResourceDef, obj: dict[str, Any]) -> dict[str, Any]:
        if (rdef.group, rdef.plural) == ("events.k8s.io", "events"):
            obj = builtins.event_to_storage(obj)
            obj["kind"] = "Event"
            return obj
        storage = rdef.storage
        obj["apiVersion"] = (
            f"{storage.group}/{storage.version}" if storage.group else storage.version
        )
        return obj

    def _from_storage(self, rdef: ResourceDef, obj: Mapping[str, Any]) -> dict[str, Any]:
        result = copy.deepcopy(dict(obj))
        if (rdef.group, rdef.plural) == ("events.k8s.io", "events"):
            result = builtins.event_from_storage(result)
        result["apiVersion"] = rdef.api_version
        result["kind"] = rdef.kind
        return result

    # ------------------------------------------------------------------ reading

    def _get(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str,
        accept: str,
        params: Mapping[str, str],
    ) -> dict[str, Any]:
        stored = self._load(self._key(rdef, namespace, name))
        if stored is None:
            raise not_found(rdef.plural, rdef.group, name)
        obj = self._from_storage(rdef, stored)
        table_version = _accepts_table(accept)
        if table_version:
            result = table(
                rdef.columns(),
                [obj],
                resource_version=obj["metadata"]["resourceVersion"],
                include_object=params.get("includeObject", "Metadata"),
            )
            result["apiVersion"] = f"meta.k8s.io/{table_version}"
            return result
        if "as=PartialObjectMetadata" in accept.replace(" ", ""):
            return {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        return obj

    def _matcher(
        self, rdef: ResourceDef, namespace: str | None, name: str | None, params: Mapping[str, str]
    ) -> Callable[[Mapping[str, Any]], bool]:
        try:
            labels = LabelSelector.parse(params.get("labelSelector"))
            allowed = None
            if rdef.custom:
                allowed_fields = {"metadata.name", "metadata.namespace", *rdef.selectable_fields}
                allowed = allowed_fields.__contains__
            fields = FieldSelector.parse(params.get("fieldSelector"), allowed)
        except SelectorError as e:
            raise bad_request(str(e)) from e

        def matches(obj: Mapping[str, Any]) -> bool:
            meta = _meta(obj)
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            if name is not None and meta.get("name") != name:
                return False
            return labels.matches(meta.get("labels")) and fields.matches(obj)

        return matches

    def _list(
        self, rdef: ResourceDef, namespace: str | None, params: Mapping[str, str], accept: str
    ) -> dict[str, Any]:
        matches = self._matcher(rdef, namespace, None, params)
        objs = [self._from_storage(rdef, o) for o in self._iter_storage(rdef.storage)]
        objs = sorted(
            (o for o in objs if matches(o)),
            key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]),
        )
        continue_token = ""
        token = params.get("continue")
        if token:
            try:
                after = json.loads(base64.urlsafe_b64decode(token.encode()))
            except ValueError as e:
                raise bad_request(f"continue key is not valid: {e}") from e
            objs = [
                o
                for o in objs
                if [o["metadata"].get("namespace") or "", o["metadata"]["name"]] > after
            ]
        remaining = None
        limit = int(params.get("limit") or 0)
        if limit and len(objs) > limit:
            remaining = len(objs) - limit
            objs = objs[:limit]
            last = objs[-1]["metadata"]
            continue_token = base64.urlsafe_b64encode(
                json.dumps([last.get("namespace") or "", last["name"]]).encode()
            ).decode()
        table_version = _accepts_table(accept)
        if table_version:
            result = table(
                rdef.columns(),
                objs,
                resource_version=str(self._rv),
                include_object=params.get("includeObject", "Metadata"),
                continue_token=continue_token,
            )
            result["apiVersion"] = f"meta.k8s.io/{table_version}"
            return result
        metadata: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if continue_token:
            metadata["continue"] = continue_token
            metadata["remainingItemCount"] = remaining
        if "as=PartialObjectMetadataList" in accept.replace(" ", ""):
            return {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": metadata,
                "items": [
                    {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    }
                    for o in objs
                ],
            }
        return {
            "kind": f"{rdef.kind}List",
            "apiVersion": rdef.api_version,
            "metadata": metadata,
            "items": objs,
        }

    # ------------------------------------------------------------------ writing

    def _admit(
        self, rdef: ResourceDef, obj: dict[str, Any], old: dict[str, Any] | None, ctx: _Context
    ) -> dict[str, Any]:
        """Prune, default and validate (schema, CEL, built-in rules); raise 422 if invalid."""
        errors: list[FieldError] = []
        unknown: list[str] = []
        if rdef.custom and rdef.schema is not None:
            admission = rdef.schema.admit(obj, old)
            obj, unknown = admission.obj, admission.unknown_fields
            errors.extend(admission.errors)
        else:
            meta = obj["metadata"]
            for key in [k for k in meta if k not in OBJECT_META_FIELDS]:
                unknown.append(f"metadata.{key}")
                del meta[key]
        if unknown:
            if ctx.field_validation == "Strict":
                listed = ", ".join(f'unknown field "{p}"' for p in unknown)
                raise bad_request(
                    f'{rdef.kind} in version "{rdef.version}" cannot be handled as a {rdef.kind}: '
                    f"strict decoding error: {listed}"
                )
            if ctx.field_validation != "Ignore":
                ctx.warnings.extend(f'unknown field "{p}"' for p in unknown)
        meta = obj["metadata"]
        errors.extend(
            builtins.validate_metadata(
                meta,
                namespaced=rdef.namespaced,
                name_is_label=(rdef.group, rdef.plural) in (("", "namespaces"),),
            )
        )
        errors.extend(self._validate_builtin(rdef, obj, old))
        if old is not None and _meta(old).get("deletionTimestamp"):
            added = [
                f for f in meta.get("finalizers") or [] if f not in _meta(old).get("finalizers", [])
            ]
            if added:
                errors.append(
                    FieldError(
                        "Forbidden",
                        "metadata.finalizers",
                        detail="no new finalizers can be added if the object is being deleted, "
                        "found new finalizers []string{"
                        + ", ".join(json.dumps(f) for f in added)
                        + "}",
                    )
                )
        if errors:
            raise invalid(rdef.kind, rdef.group, meta.get("name", ""), errors)
        return obj

    def _validate_builtin(
        self, rdef: ResourceDef, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> list[FieldError]:
        match rdef.group, rdef.plural:
            case "batch", "jobs":
                return builtins.validate_job(obj, old)
            case "", "pods":
                return builtins.validate_pod(obj, old)
            case "", "events":
                return builtins.validate_core_event(obj, obj["metadata"].get("namespace"))
        return []

    def _check_kind(self, rdef: ResourceDef, body: dict[str, Any]) -> None:
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if api_version and api_version != rdef.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the "
                f"expected API version ({rdef.api_version})"
            )
        if kind and kind != rdef.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rdef.kind})"
            )
        body["apiVersion"], body["kind"] = rdef.api_version, rdef.kind
        if not isinstance(body.get("metadata"), dict):
            body["metadata"] = {}

    def _create(
        self, rdef: ResourceDef, namespace: str | None, body: dict[str, Any], ctx: _Context
    ) -> dict[str, Any]:
        self._check_kind(rdef, body)
        meta = body["metadata"]
        if rdef.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request"
                )
            meta["namespace"] = namespace
            ns_obj = self._load(
                self._key(self._rdef("", "v1", "namespaces"), None, namespace or "")
            )
            if ns_obj is None:
                raise not_found("namespaces", "", namespace or "")
            if _meta(ns_obj).get("deletionTimestamp"):
                # As the NamespaceLifecycle admission plugin: clients tell this refusal from
                # others by its cause (client-go's HasStatusCause(err, NamespaceTerminatingCause)).
                raise ApiError(
                    403,
                    "Forbidden",
                    f"{rdef.plural}{'.' + rdef.group if rdef.group else ''} "
                    f'"{meta.get("name") or meta.get("generateName", "")}" is forbidden: '
                    f"unable to create new content in namespace {namespace} because it "
                    "is being terminated",
                    {
                        "name": meta.get("name", ""),
                        "group": rdef.group,
                        "kind": rdef.plural,
                        "causes": [
                            {
                                "reason": "NamespaceTerminating",
                                "message": f"namespace {namespace} is being terminated",
                                "field": "metadata.namespace",
                            }
                        ],
                    },
                )
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise invalid(
                    rdef.kind,
                    rdef.group,
                    "",
                    [
                        FieldError(
                            "Required", "metadata.name", detail="name or generateName is required"
                        )
                    ],
                )
            meta["name"] = meta["generateName"] + "".join(random.choices(_NAME_CHARS, k=5))
        name = meta["name"]
        if self._load(self._key(rdef, namespace, name)) is not None:
            raise already_exists(rdef.plural, rdef.group, name)

        uid = str(uuid.uuid4())
        for field in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ):
            meta.pop(field, None)
        meta["uid"] = uid
        meta["creationTimestamp"] = now()
        if rdef.tracks_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if rdef.has_status:
            body.pop("status", None)
            if not rdef.custom:
                body["status"] = {}  # a Go struct: always serialized, even if empty
        self._default_builtin(rdef, body, uid)
        body = self._admit(rdef, body, None, ctx)
        if (rdef.group, rdef.plural) == ("events.k8s.io", "events"):
            errors = builtins.validate_events_v1(body)
            if errors:
                raise invalid(rdef.kind, rdef.group, name, errors)
        if (rdef.group, rdef.plural) == ("", "pods"):
            self._admit_quota(body)
        if ctx.dry_run:
            return body
        stored = self._store(rdef.storage, self._to_storage(rdef, body), None)
        if (rdef.group, rdef.version, rdef.plural) == CRD_RESOURCE:
            self._on_crd_written(stored)
        return self._from_storage(rdef, stored)

    def _admit_quota(self, pod: dict[str, Any]) -> None:
        """The ResourceQuota admission plugin: 403 when the Pod would exceed a quota."""
        namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        in_namespace = [
            obj
            for obj in self._iter_storage(self._rdef("", "v1", "resourcequotas").storage)
            if obj["metadata"].get("namespace") == namespace
        ]
        if not in_namespace:
            return
        pods = [
            obj
            for obj in self._iter_storage(self._rdef("", "v1", "pods").storage)
            if obj["metadata"].get("namespace") == namespace
        ]
        why = quota.refusal(pod, in_namespace, pods)
        if why is not None:
            raise ApiError(
                403,
                "Forbidden",
                f'pods "{name}" is forbidden: {why}',
                {"name": name, "kind": "pods"},
            )

    def _default_builtin(self, rdef: ResourceDef, body: dict[str, Any], uid: str) -> None:
        match rdef.group, rdef.plural:
            case "batch", "jobs":
                builtins.default_job(body, uid)
            case "", "pods":
                builtins.default_pod(body)
                body["status"] = builtins.initial_pod_status()
            case "", "namespaces":
                builtins.default_namespace(body)
            case "", "secrets":
                errors = builtins.prepare_secret(body)
                if errors:
                    raise invalid(rdef.kind, rdef.group, body["metadata"]["name"], errors)
            case "apiextensions.k8s.io", "customresourcedefinitions":
                body["status"] = self._crd_status(body)

    def _update(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        ctx: _Context,
        subresource: str | None,
    ) -> dict[str, Any]:
        """PUT: replace the object (or only its status via `/status`)."""
        key = self._key(rdef, namespace, name)
        stored = self._load(key)
        if stored is None:
            raise not_found(rdef.plural, rdef.group, name)
        self._check_kind(rdef, body)
        meta = body["metadata"]
        if meta.get("name") and meta["name"] != name:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on "
                f"the URL ({name})"
            )
        if rdef.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request(
                "the namespace of the provided object does not match the namespace "
                "sent on the request"
            )
        rv = meta.get("resourceVersion")
        if rv and rv != stored["metadata"]["resourceVersion"]:
            raise conflict(rdef.plural, rdef.group, name)
        if not rv and rdef.custom:
            raise invalid(
                rdef.kind,
                rdef.group,
                name,
                [
                    FieldError(
                        "Invalid", "metadata.resourceVersion", 0, "must be specified for an update"
                    )
                ],
            )
        return self._write(rdef, stored, body, ctx, subresource)

    def _patch(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str,
        content_type: str,
        raw_body: bytes,
        params: Mapping[str, str],
        ctx: _Context,
        subresource: str | None,
    ) -> tuple[dict[str, Any], bool]:
        ctype = content_type.split(";")[0].strip().lower()
        key = self._key(rdef, namespace, name)
        stored = self._load(key)
        if ctype in (patches.APPLY_PATCH_YAML, patches.APPLY_PATCH_CBOR):
            if not params.get("fieldManager"):
                raise bad_request("PATCH /apply requires fieldManager to be set")
            try:
                applied = yaml.safe_load(raw_body)
            except yaml.YAMLError as e:
                raise bad_request(f"error decoding YAML: {e}") from e
            if not isinstance(applied, dict):
                raise bad_request("the apply body must be an object")
            if stored is None:
                if subresource is not None:
                    raise not_found(rdef.plural, rdef.group, name)
                applied.setdefault("metadata", {})["name"] = name
                return self._create(rdef, namespace, applied, ctx), True
            current = self._from_storage(rdef, stored)
            if rdef.custom:
                patched = patches.merge_by_list_map_keys(current, applied, rdef.list_map_keys)
            else:
                patched = patches.strategic_merge_patch(current, applied)
            patched["metadata"]["resourceVersion"] = (applied.get("metadata") or {}).get(
                "resourceVersion"
            ) or stored["metadata"]["resourceVersion"]
        else:
            if stored is None:
                raise not_found(rdef.plural, rdef.group, name)
            try:
                body = json.loads(raw_body) if raw_body else None
            except ValueError as e:
                raise bad_request(f"error decoding patch: {e}") from e
            current = self._from_storage(rdef, stored)
            patched = patches.apply_patch(content_type, current, body, strategic=not rdef.custom)
        if not isinstance(patched.get("metadata"), dict):
            raise unprocessable_metadata(rdef, name)
        rv = patched["metadata"].get("resourceVersion")
        if rv and rv != stored["metadata"]["resourceVersion"]:
            raise conflict(rdef.plural, rdef.group, name)
        return self._write(rdef, stored, patched, ctx, subresource), False

    def _write(
        self,
        rdef: ResourceDef,
        stored: dict[str, Any],
        new: dict[str, Any],
        ctx: _Context,
        subresource: str | None,
    ) -> dict[str, Any]:
        """The shared tail of PUT and PATCH: isolation, system fields, admission, generation."""
        old = self._from_storage(rdef, stored)
        new = copy.deepcopy(new)
        new["apiVersion"], new["kind"] = rdef.api_version, rdef.kind
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        else:
            if rdef.has_status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            meta = new.setdefault("metadata", {})
            if not isinstance(meta, dict):
                raise unprocessable_metadata(rdef, old["metadata"]["name"])
            for field in (
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ):
                if field in old["metadata"]:
                    meta[field] = old["metadata"][field]
                else:
                    meta.pop(field, None)
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            if (rdef.group, rdef.plural) == ("", "secrets"):
                errors = builtins.prepare_secret(new)
                if errors:
                    raise invalid(rdef.kind, rdef.group, meta["name"], errors)
            if (rdef.group, rdef.plural) == ("", "namespaces"):
                new["spec"], new["status"] = old.get("spec"), old.get("status")
        new = self._admit(rdef, new, old, ctx)
        spec_changed = _content(new) != _content(old)
        if rdef.tracks_generation and subresource != "status" and spec_changed:
            new["metadata"]["generation"] = old["metadata"].get("generation", 0) + 1
        if (rdef.group, rdef.plural) == ("apiextensions.k8s.io", "customresourcedefinitions"):
            new["status"] = self._crd_status(new)
        if new == old or ctx.dry_run:
            return new
        storage_new = self._to_storage(rdef, new)
        meta = storage_new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._from_storage(rdef, self._purge(rdef.storage, storage_new))
        result = self._store(rdef.storage, storage_new, copy.deepcopy(stored))
        if (rdef.group, rdef.version, rdef.plural) == CRD_RESOURCE:
            self._on_crd_written(result)
        self._gc_foreground()
        return self._from_storage(rdef, result)

    def _bind(
        self, rdef: ResourceDef, namespace: str, name: str, binding: dict[str, Any]
    ) -> dict[str, Any]:
        """pods/binding, as the scheduler binds a Pod to a node: sets `spec.nodeName` (which no
        update may change) and the PodScheduled condition."""
        stored = self._load(self._key(rdef, namespace, name))
        if stored is None:
            raise not_found(rdef.plural, rdef.group, name)
        node = (binding.get("target") or {}).get("name")
        if not node:
            raise invalid("Binding", "", name, [FieldError("Required", "target.name")])
        current = (stored.get("spec") or {}).get("nodeName")
        if current:
            raise conflict(
                rdef.plural, rdef.group, name, f'pod {name} is already assigned to node "{current}"'
            )
        old = copy.deepcopy(stored)
        stored["spec"]["nodeName"] = node
        status = stored.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        status["conditions"] = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
            *conditions,
        ]
        self._store(rdef.storage, stored, old)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }

    # ------------------------------------------------------------------ deletion & GC

    def _delete(
        self,
        rdef: ResourceDef,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any],
        params: Mapping[str, str],
        ctx: _Context,
    ) -> tuple[dict[str, Any], int]:
        stored = self._load(self._key(rdef, namespace, name))
        if stored is None:
            raise not_found(rdef.plural, rdef.group, name)
        preconditions = options.get("preconditions") or {}
        meta = stored["metadata"]
        if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
            raise conflict(
                rdef.plural,
                rdef.group,
                name,
                f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                f"UID in object meta: {meta['uid']}",
            )
        if (
            preconditions.get("resourceVersion")
            and preconditions["resourceVersion"] != meta["resourceVersion"]
        ):
            raise conflict(
                rdef.plural,
                rdef.group,
                name,
                f"Precondition failed: ResourceVersion in precondition: "
                f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                f"{meta['resourceVersion']}",
            )
        policy = options.get("propagationPolicy") or params.get("propagationPolicy")
        if options.get("orphanDependents") is True or _flag(params.get("orphanDependents")):
            policy = "Orphan"
        if policy is None and (rdef.group, rdef.plural) == ("batch", "jobs"):
            policy = "Orphan"
            ctx.warnings.append(_JOB_ORPHAN_WARNING)
        if ctx.dry_run:
            return self._from_storage(rdef, stored), 200
        result, removed = self._delete_stored(rdef.storage, stored, policy or "Background")
        # As the real server: 202 only when not removed at once and orphanDependents=false.
        code = 202 if not removed and options.get("orphanDependents") is False else 200
        return self._from_storage(rdef, result), code

    def _delete_stored(
        self, storage: kmock.resource, stored: dict[str, Any], policy: str
    ) -> tuple[dict[str, Any], bool]:
        """Delete now (True) or mark for deletion until finalizers are gone (False)."""
        meta = stored["metadata"]
        if meta.get("deletionTimestamp"):
            return stored, False
        if policy == "Orphan":
            self._orphan_dependents(meta["uid"])
        if storage == kmock.resource("", "v1", "namespaces"):
            return self._delete_namespace(storage, stored), False
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and self._dependents(meta["uid"]):
            finalizers.append("foregroundDeletion")
        if not finalizers:
            return self._purge(storage, stored), True
        old = copy.deepcopy(stored)
        meta["deletionTimestamp"] = now()
        meta["deletionGracePeriodSeconds"] = 0
        meta["finalizers"] = finalizers
        if "generation" in meta:
            meta["generation"] += 1
        result = self._store(storage, stored, old)
        if "foregroundDeletion" in finalizers:
            for dep_storage, dependent in self._dependents(meta["uid"]):
                self._delete_stored(dep_storage, copy.deepcopy(dependent), "Background")
            self._gc_foreground()
            result = self._load((storage, meta.get("namespace"), meta["name"])) or result
        return result, False

    def _delete_collection(
        self, rdef: ResourceDef, namespace: str | None, params: Mapping[str, str], ctx: _Context
    ) -> dict[str, Any]:
        matches = self._matcher(rdef, namespace, None, params)
        deleted = []
        for stored in list(self._iter_storage(rdef.storage)):
            obj = self._from_storage(rdef, stored)
            if matches(obj):
                result, _ = self._delete(
                    rdef, obj["metadata"].get("namespace"), obj["metadata"]["name"], {}, params, ctx
                )
                deleted.append(result)
        return {
            "kind": f"{rdef.kind}List",
            "apiVersion": rdef.api_version,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": deleted,
        }

    def _dependents(self, uid: str) -> list[tuple[kmock.resource, dict[str, Any]]]:
        return [
            (res, obj)
            for res, obj in self._iter_all()
            if any(ref.get("uid") == uid for ref in _meta(obj).get("ownerReferences") or [])
        ]

    def _orphan_dependents(self, uid: str) -> None:
        for res, dependent in self._dependents(uid):
            updated = copy.deepcopy(dependent)
            refs = [r for r in updated["metadata"]["ownerReferences"] if r.get("uid") != uid]
            if refs:
                updated["metadata"]["ownerReferences"] = refs
            else:
                del updated["metadata"]["ownerReferences"]
            self._store(res, updated, copy.deepcopy(dependent))

    def _on_purged(self, storage: kmock.resource, final: dict[str, Any]) -> None:
        meta = final["metadata"]
        # Background propagation: dependents whose last owner is gone are deleted.
        for res, dependent in self._dependents(meta["uid"]):
            dependent = copy.deepcopy(dependent)
            refs = dependent["metadata"].get("ownerReferences") or []
            alive = [r for r in refs if r.get("uid") != meta["uid"] and self._uid_exists(r["uid"])]
            if alive:
                old = copy.deepcopy(dependent)
                dependent["metadata"]["ownerReferences"] = [
                    r for r in refs if r.get("uid") != meta["uid"]
                ]
                self._store(res, dependent, old)
            else:
                self._delete_stored(res, dependent, "Background")
        if (storage.group, storage.plural) == ("apiextensions.k8s.io", "customresourcedefinitions"):
            self._registry.remove_crd(meta["name"])
        if meta.get("namespace"):
            self._finish_namespace(meta["namespace"])
        self._gc_foreground()

    def _uid_exists(self, uid: str) -> bool:
        return any(_meta(obj).get("uid") == uid for _, obj in self._iter_all())

    def _gc_foreground(self) -> None:
        """Owners in foreground deletion lose their finalizer once their dependents are gone."""
        for res, owner in self._iter_all():
            meta = _meta(owner)
            waiting = "foregroundDeletion" in (meta.get("finalizers") or [])
            if not waiting or not meta.get("deletionTimestamp") or self._dependents(meta["uid"]):
                continue
            updated = copy.deepcopy(owner)
            updated["metadata"]["finalizers"].remove("foregroundDeletion")
            if updated["metadata"]["finalizers"]:
                self._store(res, updated, copy.deepcopy(owner))
            else:
                self._purge(res, updated)

    def _delete_namespace(
        self, storage: kmock.resource, namespace: dict[str, Any]
    ) -> dict[str, Any]:
        old = copy.deepcopy(namespace)
        namespace["metadata"]["deletionTimestamp"] = now()
        namespace["metadata"]["deletionGracePeriodSeconds"] = 0
        namespace["status"] = {"phase": "Terminating"}
        result = self._store(storage, namespace, old)
        name = namespace["metadata"]["name"]
        for (res, ns, _), stored in list(self._objects.items()):
            if ns == name and not stored.deleted:
                self._delete_stored(res, copy.deepcopy(stored.raw), "Background")
        self._finish_namespace(name)
        return self._load((storage, None, name)) or result

    def _finish_namespace(self, name: str) -> None:
        storage = kmock.resource("", "v1", "namespaces")
        namespace = self._load((storage, None, name))
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return
        remaining = [
            (res, stored.raw)
            for (res, ns, _), stored in self._objects.items()
            if ns == name and not stored.deleted
        ]
        if remaining:
            self._report_remaining(storage, namespace, remaining)
            return
        if namespace["metadata"].get("finalizers"):
            return
        self._purge(storage, namespace)

    def _report_remaining(
        self,
        storage: kmock.resource,
        namespace: dict[str, Any],
        remaining: list[tuple[kmock.resource, dict[str, Any]]],
    ) -> None:
        """The namespace controller's conditions while content is left: what, and which
        finalizers hold it (`kubectl describe namespace` shows them)."""
        kinds: collections.Counter[str] = collections.Counter()
        finalizers: collections.Counter[str] = collections.Counter()
        for res, obj in remaining:
            kinds[f"{res.plural}.{res.group}" if res.group else str(res.plural)] += 1
            finalizers.update(_meta(obj).get("finalizers") or [])

        def listed(counts: collections.Counter[str]) -> str:
            return ", ".join(f"{k} has {n} resource instances" for k, n in sorted(counts.items()))

        conditions = [
            {
                "type": "NamespaceContentRemaining",
                "status": "True",
                "reason": "SomeResourcesRemain",
                "message": f"Some resources are remaining: {listed(kinds)}",
            }
        ]
        if finalizers:
            held = ", ".join(
                f"{f} in {n} resource instances" for f, n in sorted(finalizers.items())
            )
            conditions.append(
                {
                    "type": "NamespaceFinalizersRemaining",
                    "status": "True",
                    "reason": "SomeFinalizersRemain",
                    "message": f"Some content in the namespace has finalizers remaining: {held}",
                }
            )
        status = namespace.get("status") or {}
        previous = {c["type"]: c for c in status.get("conditions") or []}
        if [
            {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in previous.values()
        ] == conditions:
            return
        for condition in conditions:
            old_condition = previous.get(condition["type"]) or {}
            condition["lastTransitionTime"] = old_condition.get("lastTransitionTime") or now()
        old = copy.deepcopy(namespace)
        namespace["status"] = {**status, "phase": "Terminating", "conditions": conditions}
        self._store(storage, namespace, old)

    # ------------------------------------------------------------------ CRDs served at runtime

    def _crd_status(self, crd: Mapping[str, Any]) -> dict[str, Any]:
        ts = now()
        spec = crd.get("spec") or {}
        return {
            "acceptedNames": spec.get("names", {}),
            "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": ts,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": ts,
                },
            ],
        }

    def _on_crd_written(self, crd: Mapping[str, Any]) -> None:
        try:
            self._registry.add_crd(crd)
        except (KeyError, ValueError) as e:
            logger.warning("CRD %s is not served: %s", crd["metadata"]["name"], e)

    # ------------------------------------------------------------------ watching

    async def _stream_watch(
        self,
        request: rendering.Request,
        rdef: ResourceDef,
        namespace: str | None,
        name: str | None,
        params: Mapping[str, str],
    ) -> aiohttp.web.StreamResponse:
        matches = self._matcher(rdef, namespace, name, params)
        send_initial = _flag(params.get("sendInitialEvents"))
        bookmarks = _flag(params.get("allowWatchBookmarks"))
        rv_param = params.get("resourceVersion") or ""
        if send_initial and params.get("resourceVersionMatch") != "NotOlderThan":
            raise invalid(
                "ListOptions",
                "meta.k8s.io",
                "",
                [
                    FieldError(
                        "Forbidden",
                        "sendInitialEvents",
                        detail="sendInitialEvents is forbidden for watch unless "
                        "resourceVersionMatch is set to NotOlderThan",
                    )
                ],
            )
        try:
            timeout = float(params.get("timeoutSeconds") or self.max_watch_seconds)
            cursor = int(rv_param) if rv_param not in ("", "0") else None
        except ValueError as e:
            raise bad_request(f"invalid watch parameters: {e}") from e
        timeout = min(timeout, self.max_watch_seconds)

        storage = rdef.storage
        epoch = self._epoch
        initial: list[dict[str, Any]] = []
        expired = False
        if cursor is None or send_initial:
            initial = [
                o
                for o in (self._from_storage(rdef, s) for s in self._iter_storage(storage))
                if matches(o)
            ]
            initial.sort(key=lambda o: int(o["metadata"]["resourceVersion"]))
            cursor = self._rv
        elif cursor <= self._reset_rv or cursor < self._compacted.get(storage, 0):
            expired = True

        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.headers["Cache-Control"] = "no-cache, private"
        raw = request._raw_request
        assert raw is not None
        await response.prepare(raw)
        self._watches[id(raw)] = raw

        table_version = _accepts_table(request.headers.get("Accept", ""))

        async def send(event_type: str, obj: Mapping[str, Any]) -> None:
            if table_version and event_type in ("ADDED", "MODIFIED", "DELETED"):
                obj = table(  # `kubectl get -w` watches Tables, one row per event
                    rdef.columns(),
                    [obj],
                    resource_version=obj["metadata"]["resourceVersion"],
                    include_object=params.get("includeObject", "Metadata"),
                ) | {"apiVersion": f"meta.k8s.io/{table_version}"}
            line = json.dumps({"type": event_type, "object": obj}).encode() + b"\n"
            await response.write(line)

        def bookmark(annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
            meta: dict[str, Any] = {"resourceVersion": str(self._rv)}
            if annotations:
                meta["annotations"] = dict(annotations)
            return {"kind": rdef.kind, "apiVersion": rdef.api_version, "metadata": meta}

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            if expired:
                self.faults.record("GET", raw.path, 410, "Expired")
                await send(
                    "ERROR",
                    gone(
                        f"too old resource version: {rv_param} ({self._compacted.get(storage, 0)})"
                    ).status(),
                )
                await response.write_eof()
                return response
            for obj in initial:
                await send("ADDED", obj)
            if send_initial:
                await send("BOOKMARK", bookmark({INITIAL_EVENTS_END: "true"}))
            while not self._stopping and epoch == self._epoch:
                changed = self._changed
                for event in self._events_after(storage, cursor):
                    cursor = event.rv
                    translated = self._translate(rdef, event, matches)
                    if translated is not None:
                        await send(*translated)
                remaining = deadline - loop.time()
                if remaining <= 0 or changed is None:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=remaining)
            if epoch != self._epoch and not self._stopping:
                await send("ERROR", gone("the server state was reset").status())
            elif bookmarks and not self._stopping:
                await send("BOOKMARK", bookmark())
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        finally:
            self._watches.pop(id(raw), None)
        return response

    def drop_watches(self) -> int:
        """Abort the connection of every open watch (see `Faults.drop_watches`)."""

        def drop() -> int:
            dropped = 0
            for key, raw in list(self._watches.items()):
                del self._watches[key]
                if raw.transport is not None and not raw.transport.is_closing():
                    raw.transport.abort()
                    self.faults.record("GET", raw.path, None, "WatchDropped")
                    dropped += 1
            return dropped

        return self.call(drop)

    def compact(self) -> int:
        """Forget every resource's history up to now (see `Faults.compact`)."""

        def compact() -> int:
            revision = self._next_rv()  # every version handed out so far is now too old
            for storage in {res for res, _, _ in self._objects} | set(self._events):
                self._compacted[storage] = revision
            return revision

        return self.call(compact)

    def _events_after(self, storage: kmock.resource, cursor: int) -> list[_Event]:
        log = self._events.get(storage)
        if not log or log[-1].rv <= cursor:
            return []
        result = []
        for event in reversed(log):
            if event.rv <= cursor:
                break
            result.append(event)
        result.reverse()
        return result

    def _translate(
        self, rdef: ResourceDef, event: _Event, matches: Callable[[Mapping[str, Any]], bool]
    ) -> tuple[str, dict[str, Any]] | None:
        """Selector-aware event types: leaving the selection is DELETED, entering it is ADDED."""
        obj = self._from_storage(rdef, event.obj)
        new_match = matches(obj)
        if event.type != "MODIFIED" or event.old is None:
            return (event.type, obj) if new_match else None
        old_match = matches(self._from_storage(rdef, event.old))
        if new_match and old_match:
            return "MODIFIED", obj
        if new_match:
            return "ADDED", obj
        if old_match:
            return "DELETED", obj
        return None

    # ------------------------------------------------------------------ pods/log

    async def _stream_log(
        self,
        request: rendering.Request,
        rdef: ResourceDef,
        namespace: str,
        name: str,
        params: Mapping[str, str],
    ) -> aiohttp.web.StreamResponse:
        pod = self._load(self._key(rdef, namespace, name))
        if pod is None:
            raise not_found(rdef.plural, rdef.group, name)
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        container = params.get("container")
        if container is None:
            if len(containers) != 1:
                raise bad_request(
                    f"a container name must be specified for pod {name}, choose one "
                    f"of: [{' '.join(containers)}]"
                )
            container = containers[0]
        elif container not in containers:
            raise bad_request(f"container {container} is not valid for pod {name}")
        previous = _flag(params.get("previous"))
        path = self.pod_logs.path(namespace, name, container, previous)
        if path is None:
            reason = "ContainerCreating"
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                if status.get("name") == container:
                    reason = (status.get("state") or {}).get("waiting", {}).get("reason", reason)
            if previous:
                raise bad_request(
                    f'previous terminated container "{container}" in pod "{name}" not found'
                )
            raise bad_request(
                f'container "{container}" in pod "{name}" is waiting to start: {reason}'
            )
        follow = _flag(params.get("follow"))
        tail = int(params["tailLines"]) if params.get("tailLines") else None
        limit = int(params["limitBytes"]) if params.get("limitBytes") else None
        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = "text/plain"
        raw = request._raw_request
        assert raw is not None
        await response.prepare(raw)
        data = path.read_bytes()
        if tail is not None:
            data = b"".join(data.splitlines(keepends=True)[-tail:]) if tail else b""
        sent = 0
        try:
            chunk = data if limit is None else data[:limit]
            await response.write(chunk)
            sent += len(chunk)
            offset = path.stat().st_size if tail is not None else len(data)
            while follow and not self._stopping and (limit is None or sent < limit):
                running = self.pod_logs.running(namespace, name, container)
                with path.open("rb") as f:
                    f.seek(offset)
                    more = f.read()
                if more:
                    offset += len(more)
                    chunk = more if limit is None else more[: limit - sent]
                    await response.write(chunk)
                    sent += len(chunk)
                elif not running:
                    break
                else:
                    await asyncio.sleep(0.05)
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass
        return response


def _content(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What `generation` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _unsupported_encoding(content_type: str) -> ApiError:
    """Only JSON (and YAML) bodies: client-go then falls back to JSON, as with old servers."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"application/json, application/yaml (got {content_type})",
        {},
    )


def unprocessable_metadata(rdef: ResourceDef, name: str) -> ApiError:
    return invalid(
        rdef.kind, rdef.group, name, [FieldError("Invalid", "metadata", None, "must be an object")]
    )


__all__ = ["KubeServer", "Route"]
