"""Retrying API calls through the errors a healthy cluster gives under load or while it is
upgraded: 429 (honoring Retry-After), 500/502/503/504, a dropped connection, and (for writes
that carry no resourceVersion) a 409 Conflict.

Bounded: after `attempts` the last error is raised for the caller, so a handler fails for kopf
to retry with its own backoff, and the worker's final status write gives up with a reason.
Nothing here decides an outcome: a transient error never reads as "not found" or "exists".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import urllib3
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
"""Statuses kube-apiserver answers when the request may well succeed if sent again: throttled
(TooManyRequests, also API Priority and Fairness), InternalError, and a proxy or load balancer
in front of the API server that is restarting or timed out."""
CONNECTION_ERRORS = (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)
"""A reset, a refused connection, a read timeout: the request may or may not have arrived."""


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff: `first_delay`, doubled each time up to `max_delay`, for at
    most `attempts` calls; a Retry-After from the server (429/503) wins, up to `max_retry_after`.
    """

    attempts: int = 4
    first_delay: float = 0.2
    max_delay: float = 5.0
    max_retry_after: float = 10.0

    def delays(self) -> Iterator[float]:
        """The backoff before each retry (attempts - 1 of them)."""
        delay = self.first_delay
        for _ in range(self.attempts - 1):
            yield min(delay, self.max_delay)
            delay *= 2


DEFAULT_POLICY = RetryPolicy()


def is_transient(exc: BaseException, *, conflicts: bool = False) -> bool:
    """True for an error worth sending the same request again for; `conflicts` adds 409 (for
    writes whose body holds no resourceVersion, so sending them again applies them to the
    latest version: the re-read and retry a Conflict asks for)."""
    if isinstance(exc, ApiException):
        status = exc.status or 0
        return status in TRANSIENT_STATUSES or status == 0 or (conflicts and status == 409)
    return isinstance(exc, CONNECTION_ERRORS)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait: the Retry-After header, else the Status body's
    `details.retryAfterSeconds`; None if it did not say."""
    if not isinstance(exc, ApiException):
        return None
    headers = exc.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass  # an HTTP date: not sent by kube-apiserver; fall back to the body
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return None
    seconds = ((body if isinstance(body, dict) else {}).get("details") or {}).get(
        "retryAfterSeconds"
    )
    return float(seconds) if isinstance(seconds, int | float) and seconds >= 0 else None


def call_with_retries(
    call: Callable[[], T],
    what: str,
    *,
    conflicts: bool = False,
    policy: RetryPolicy = DEFAULT_POLICY,
    sleep: Callable[[float], None] | None = None,
) -> T:
    """`call()`, sent again after a transient error (see `is_transient`) with `policy`'s
    backoff. The last error is raised as it is, except a connection error, which becomes an
    `ApiException` with status 0, so callers handle one exception type."""
    delays = policy.delays()
    while True:
        try:
            return call()
        except (ApiException, *CONNECTION_ERRORS) as exc:
            if not is_transient(exc, conflicts=conflicts):
                raise
            delay = next(delays, None)
            if delay is None:
                if isinstance(exc, ApiException):
                    raise
                raise ApiException(status=0, reason=f"{type(exc).__name__}: {exc}") from exc
            asked = retry_after(exc)
            if asked is not None:
                delay = min(max(delay, asked), policy.max_retry_after)
            log.warning("%s failed (%s); retrying in %.1fs", what, describe(exc), delay)
            (sleep or time.sleep)(delay)


def describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
