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
"""

from __future__ import annotations

import contextlib
import logging
import urllib.parse
from collections.abc import AsyncIterator, Collection
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

__all__ = ["WATCHED", "Insights", "parse_endpoint", "serving_readiness", "waiting_for"]

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


def readiness_app(insights: Insights, path: str) -> web.Application:
    async def ready(_: web.Request) -> web.Response:
        missing = waiting_for(insights)
        body: dict[str, Any] = {"ready": not missing}
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
async def serving_readiness(endpoint: str | None, insights: Insights) -> AsyncIterator[None]:
    """Serve the readiness probe at `endpoint` (http://HOST:PORT/PATH) while the block runs;
    nothing when `endpoint` is None."""
    if endpoint is None:
        yield
        return
    host, port, path = parse_endpoint(endpoint)
    runner = web.AppRunner(readiness_app(insights, path), handle_signals=False, shutdown_timeout=1)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("serving the readiness probe at %s", endpoint)
        yield
    finally:
        await runner.cleanup()
