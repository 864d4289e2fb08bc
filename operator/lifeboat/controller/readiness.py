"""The operator's readiness probe: ready once it can do its work, not merely once it runs.

kopf serves a liveness endpoint (its event loop answers) and nothing for readiness. Here the
operator is ready when kopf has run its start-up handlers, logged in, discovered the cluster's
API resources and listed the namespaces it watches, and watches every kind Lifeboat's handlers
need there: Backups, Restores, BackupSchedules, BackupStores, RestoreDrills (their CRDs
installed) and Jobs.
Until then, and again whenever one of them disappears (a CRD deleted), `GET` on the endpoint
answers 503 with what it waits for; then 200. The signal is kopf's own record of what it
watches (`Insights`, the object its resource and namespace observers fill in), so it is what
the operator really does, not a guess from outside.

With leader election, a standby (waiting for the leader Lease) is ready: it is doing its job,
which is to wait, and a Deployment rollout must be able to proceed while the old leader still
holds the Lease (controller-runtime's standbys pass their readiness checks the same way). The
body says which it is: `"leader": false`.
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, Final

from aiohttp import web
from kopf._cogs.structs.references import Insights

from lifeboat.api import (
    BACKUP_PLURAL,
    DRILL_PLURAL,
    GROUP,
    RESTORE_PLURAL,
    SCHEDULE_PLURAL,
    STORE_PLURAL,
)

__all__ = [
    "WATCHED",
    "Insights",
    "parse_endpoint",
    "serving_readiness",
    "serving_standby_liveness",
    "waiting_for",
]

log = logging.getLogger(__name__)

WATCHED: Final = (
    (GROUP, BACKUP_PLURAL),
    (GROUP, RESTORE_PLURAL),
    (GROUP, SCHEDULE_PLURAL),
    (GROUP, STORE_PLURAL),
    (GROUP, DRILL_PLURAL),
    ("batch", "jobs"),
)
"""(API group, plural) of every kind the operator's handlers watch."""


def waiting_for(insights: Insights, needed: Collection[tuple[str, str]] = WATCHED) -> list[str]:
    """What the operator still lacks to be ready; empty when it is ready."""
    if not insights.ready_resources.is_set():
        return ["the API server's resources (kopf has not logged in and listed them yet)"]
    missing = []
    if not insights.ready_namespaces.is_set() or not insights.namespaces:
        missing.append("the namespaces to watch")
    watched = {(resource.group, resource.plural) for resource in insights.watched_resources}
    for group, plural in needed:
        if (group, plural) not in watched:
            where = f"{plural}.{group}" if group else plural
            hint = " (is its CRD installed?)" if group == GROUP else ""
            missing.append(f"a watch on {where}{hint}")
    return missing


def readiness_app(
    insights: Insights, path: str, leader: Callable[[], bool] | None = None
) -> web.Application:
    """`leader`: with leader election, whether this process holds the Lease now."""

    async def ready(_: web.Request) -> web.Response:
        if leader is not None and not leader():
            return web.json_response({"ready": True, "leader": False})
        missing = waiting_for(insights)
        body: dict[str, Any] = {"ready": not missing}
        if leader is not None:
            body["leader"] = True
        if missing:
            body["waitingFor"] = missing
        return web.json_response(body, status=503 if missing else 200)

    app = web.Application()
    app.add_routes([web.get(path, ready)])
    return app


def parse_endpoint(endpoint: str) -> tuple[str, int, str]:
    """(host, port, path) of `http://HOST:PORT/PATH`; ValueError names the expected form."""
    parts = urllib.parse.urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise ValueError(f"expected http://HOST:PORT/PATH, not {endpoint!r}")
    return parts.hostname, port, parts.path or "/"


@contextlib.asynccontextmanager
async def serving_readiness(
    endpoint: str | None, insights: Insights, leader: Callable[[], bool] | None = None
) -> AsyncIterator[None]:
    """Serve the readiness probe at `endpoint` (http://HOST:PORT/PATH) while the block runs;
    nothing when `endpoint` is None. `leader`: see `readiness_app`."""
    if endpoint is None:
        yield
        return
    host, port, path = parse_endpoint(endpoint)
    async with _serving(readiness_app(insights, path, leader), host, port):
        log.info("serving the readiness probe at %s", endpoint)
        yield


@contextlib.asynccontextmanager
async def serving_standby_liveness(endpoint: str | None) -> AsyncIterator[None]:
    """Answer the liveness probe at `endpoint` while the process stands by for the Lease.

    kopf serves liveness only once it runs, and a standby runs no kopf: without this, the
    kubelet would restart every standby when its probe's failureThreshold is reached. Like
    kopf's, it answers as long as the event loop does."""
    if endpoint is None:
        yield
        return
    host, port, path = parse_endpoint(endpoint)

    async def alive(_: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    app = web.Application()
    app.add_routes([web.get(path, alive)])
    async with _serving(app, host, port):
        yield


@contextlib.asynccontextmanager
async def _serving(app: web.Application, host: str, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield
    finally:
        await runner.cleanup()
