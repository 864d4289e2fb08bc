"""Fault injection for the test API server: the errors a real cluster gives a client under load,
during an upgrade, or when etcd compacts, on command and counted.

    server.faults.add(method="POST", path_glob="/apis/batch/v1/namespaces/*/jobs", status=500,
                      times=2)
    server.faults.add(method="PATCH", path_glob="/apis/lifeboat.dev/*/backups/*/status",
                      status=409, times=3)
    server.faults.add(method="POST", path_glob="...", status=429, retry_after=1)
    server.faults.add(method="GET", path_glob="...", reset=True)  # the connection drops
    server.faults.add(method="POST", path_glob="...", status=504, commit=True)  # done, answer lost
    server.faults.drop_watches()   # every open watch stream ends abruptly
    server.faults.compact()        # history forgotten: watches from older versions get 410

Answers are `Status` objects as kube-apiserver words them (TooManyRequests with a Retry-After
header and `details.retryAfterSeconds`, InternalError, Conflict, ServiceUnavailable, ...).
Everything injected is recorded in `fired`, so a test asserts its faults really happened.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import ApiError

_REASONS = {
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclasses.dataclass
class Fault:
    """One rule: requests matching `method`, `path_glob` (fnmatch on the URL path) and `when`
    (a predicate on the parsed JSON body) are answered with `status`, at most `times` times
    (None: for ever), or have their connection reset (`reset`). With `commit` the request takes
    effect first and only its answer is replaced: a create that happened although the client
    was told it failed (a timeout at a proxy), the case that tempts a client into a duplicate."""

    method: str
    path_glob: str
    status: int = 500
    times: int | None = 1
    retry_after: int | None = None
    reset: bool = False
    message: str | None = None
    when: Callable[[Any], bool] | None = None
    commit: bool = False
    hits: int = 0

    def matches(self, method: str, path: str, data: Any) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method != "*" and self.method.upper() != method.upper():
            return False
        if not fnmatch.fnmatchcase(path, self.path_glob):
            return False
        if self.when is not None:
            try:
                return bool(self.when(data))
            except Exception:
                return False
        return True

    def error(self, path: str) -> ApiError:
        reason = _REASONS.get(self.status, "InternalError")
        message = self.message or {
            409: f"Operation cannot be fulfilled on {path}: the object has been modified; "
            "please apply your changes to the latest version and try again",
            429: "Too many requests, please try again later.",
            500: "Internal error occurred: injected by the test server",
            503: "the server is currently unable to handle the request",
            504: "the server was unable to return a response in the time allotted",
        }.get(self.status, f"injected {self.status}")
        details: dict[str, Any] | None = None
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            details = {"retryAfterSeconds": self.retry_after}
            headers["Retry-After"] = str(self.retry_after)
        return ApiError(self.status, reason, message, details, headers)


@dataclasses.dataclass(frozen=True)
class Fired:
    """A fault as it happened: what was asked, and what the server answered instead."""

    method: str
    path: str
    status: int | None  # None: the connection was reset (or a watch stream dropped)
    reason: str
    data: Any = None
    at: float = dataclasses.field(default_factory=time.monotonic)


class Faults:
    """The fault rules of one server and the record of what fired."""

    def __init__(
        self,
        drop: Callable[[], int] | None = None,
        compact: Callable[[], int] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._rules: list[Fault] = []
        self._drop = drop
        self._compact = compact
        self.fired: list[Fired] = []

    def add(
        self,
        *,
        method: str,
        path_glob: str,
        status: int = 500,
        times: int | None = 1,
        retry_after: int | None = None,
        reset: bool = False,
        message: str | None = None,
        when: Callable[[Any], bool] | None = None,
        commit: bool = False,
    ) -> Fault:
        fault = Fault(method, path_glob, status, times, retry_after, reset, message, when, commit)
        with self._lock:
            self._rules.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.fired.clear()

    def take(self, method: str, path: str, data: Any) -> Fault | None:
        """The first rule this request triggers (counted and recorded), else None."""
        with self._lock:
            for fault in self._rules:
                if fault.matches(method, path, data):
                    fault.hits += 1
                    reason = "ConnectionReset" if fault.reset else fault.error(path).reason
                    status = None if fault.reset else fault.status
                    self.fired.append(Fired(method, path, status, reason, data))
                    return fault
        return None

    def record(self, method: str, path: str, status: int | None, reason: str) -> None:
        """Record a fault the server produced itself (a dropped watch, a 410 after compaction)."""
        with self._lock:
            self.fired.append(Fired(method, path, status, reason))

    def count(
        self, *, status: int | str | None = "any", reason: str | None = None, path_glob: str = "*"
    ) -> int:
        with self._lock:
            return sum(
                1
                for f in self.fired
                if (status == "any" or f.status == status)
                and (reason is None or f.reason == reason)
                and fnmatch.fnmatchcase(f.path, path_glob)
            )

    def drop_watches(self) -> int:
        """End every open watch stream abruptly (no final event, no bookmark); the number
        dropped. Clients must watch again, and re-list if their version is gone."""
        if self._drop is None:
            raise RuntimeError("this server cannot drop watches")
        return self._drop()

    def compact(self) -> int:
        """Forget the history up to now, as etcd compaction does: a watch from any older
        resourceVersion is answered with a 410 Gone ERROR event. The compacted revision."""
        if self._compact is None:
            raise RuntimeError("this server cannot compact")
        return self._compact()
