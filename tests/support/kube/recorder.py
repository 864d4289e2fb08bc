"""Warning Events, posted as Kubernetes' components post them (client-go's event recorder).

Core v1 Events about an object (`involvedObject` with its uid), from a `source.component`
(job-controller, default-scheduler, kubelet, attachdetach-controller). Repeats of one reason
about one object are aggregated into one Event whose `count`, `lastTimestamp` and `message`
follow the latest occurrence while `firstTimestamp` keeps the first, and repeats come at most
once per `min_interval` (the real recorder's spam filter). Posting is best effort, as in
Kubernetes: in a terminating namespace the API server refuses new Events, and that is all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import uuid
from collections.abc import Mapping
from typing import Any, Protocol


class Requester(Protocol):
    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        **params: str,
    ) -> tuple[int, Any]: ...


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class _Series:
    name: str
    count: int
    posted_at: float


class EventRecorder:
    def __init__(self, api: Requester, min_interval: float = 1.0) -> None:
        self.api = api
        self.min_interval = min_interval
        self._series: dict[tuple[str, str], _Series] = {}

    async def warn(self, obj: Mapping[str, Any], reason: str, message: str, component: str) -> None:
        meta = obj["metadata"]
        namespace = meta["namespace"]
        key = (meta["uid"], reason)
        loop_time = asyncio.get_running_loop().time()
        series = self._series.get(key)
        path = f"/api/v1/namespaces/{namespace}/events"
        if series is not None:
            if loop_time - series.posted_at < self.min_interval:
                return
            series.count += 1
            series.posted_at = loop_time
            await self.api.request(
                "PATCH",
                f"{path}/{series.name}",
                {"count": series.count, "lastTimestamp": _now(), "message": message},
                "application/merge-patch+json",
            )
            return
        stamp = _now()
        name = f"{meta['name']}.{uuid.uuid4().hex[:16]}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": obj.get("apiVersion", "v1"),
                "kind": obj.get("kind", ""),
                "namespace": namespace,
                "name": meta["name"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion", ""),
            },
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": "Warning",
            "reportingComponent": component,
            "reportingInstance": "",
        }
        status, _ = await self.api.request("POST", path, body)
        if status == 201:
            self._series[key] = _Series(name, 1, loop_time)
