"""Leader election at run time: one operator process acts, the others stand by.

`LeaderElector` applies `leadership.decide` to the Lease every retry period, from a thread of its
own (the sync `kubernetes` client; the kopf event loop is never blocked, and a stalled event loop
does not stop renewals). A leader that cannot renew within its renew deadline, or finds the Lease
held by another, ends the process at once with exit code 1, as controller-runtime does: a handler
must never run in a process that is no longer the leader, and the Deployment restarts the Pod as
a standby.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kubernetes import client

from lifeboat.contract import Object
from lifeboat.controller import metrics
from lifeboat.controller.leadership import (
    Decision,
    ElectionTiming,
    Sighting,
    Step,
    decide,
    observe,
    released,
    renewal_overdue,
)
from lifeboat.kube.leases import LeaseConflict, create_lease, read_lease, replace_lease

log = logging.getLogger(__name__)

LOST_EXIT_CODE = 1


@dataclass(frozen=True)
class ElectionConfig:
    namespace: str
    name: str
    identity: str
    timing: ElectionTiming = field(default_factory=ElectionTiming)


def exit_process() -> None:
    """Stop acting now: no cleanup that could run one more handler."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(LOST_EXIT_CODE)


class LeaderElector:
    def __init__(
        self,
        api: Callable[[], client.ApiClient],
        config: ElectionConfig,
        *,
        on_lost: Callable[[], None] = exit_process,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = api
        self.config = config
        self._on_lost = on_lost
        self._clock = clock
        self._wall = wall
        self._lease: Object | None = None
        self._sighting: Sighting | None = None
        self._last_renewed = 0.0
        self._last_seen_holder: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.leader = False
        self.lost = False

    @property
    def where(self) -> str:
        return f"Lease {self.config.namespace}/{self.config.name}"

    def _try(self) -> Decision | None:
        """Read the Lease and act on it once; the decision taken, None when a write lost a race
        or the API failed (both: try again next period)."""
        timing = self.config.timing
        timeout = max(timing.retry_seconds, 1.0)
        started = self._clock()
        try:
            lease = read_lease(
                self._api(), self.config.namespace, self.config.name, timeout=timeout
            )
            self._sighting = observe(self._sighting, lease, self._clock())
            decision = decide(
                self.config.identity,
                lease,
                self._sighting,
                now=self._clock(),
                wall=self._wall(),
                timing=timing,
            )
            if decision.step is Step.WAIT or decision.spec is None:
                return decision
            if lease is None:
                written = create_lease(
                    self._api(),
                    self.config.namespace,
                    self.config.name,
                    decision.spec,
                    timeout=timeout,
                )
            else:
                written = replace_lease(self._api(), lease, decision.spec, timeout=timeout)
        except LeaseConflict as exc:
            log.debug("lost a race for the %s: %s", self.where, exc)
            return None
        except Exception as exc:  # noqa: BLE001 - any failure is "not renewed"; the deadline decides
            log.warning("could not read or write the %s: %s", self.where, exc)
            return None
        self._lease = written
        self._sighting = observe(self._sighting, written, self._clock())
        self._last_renewed = started
        return decision

    def acquire(self, stop: threading.Event) -> bool:
        """Stand by until this process holds the Lease (True), or `stop` is set (False)."""
        waited_from = self._clock()
        while not stop.is_set():
            decision = self._try()
            if decision is not None and decision.step is not Step.WAIT:
                self.leader = True
                metrics.leader_changed(leader=True)
                log.info(
                    "became the leader: %s holds the %s (after %.1fs standing by); handling "
                    "objects now",
                    self.config.identity,
                    self.where,
                    self._clock() - waited_from,
                )
                return True
            if decision is not None and decision.holder != self._last_seen_holder:
                self._last_seen_holder = decision.holder
                log.info(
                    "standing by: %s holds the %s; this operator (%s) takes over when it is "
                    "released or expires",
                    decision.holder,
                    self.where,
                    self.config.identity,
                )
            stop.wait(self.config.timing.retry_seconds)
        return False

    def start_renewing(self) -> None:
        """Renew every retry period from a thread of its own, until `stop_and_release`."""
        self._renewer = threading.Thread(
            target=self._renew_loop, name="leader-renewal", daemon=True
        )
        self._renewer.start()

    def _renew_loop(self) -> None:
        timing = self.config.timing
        while not self._stop.wait(timing.retry_seconds):
            decision = self._try()
            if self._stop.is_set():
                return
            if decision is not None and decision.step is Step.WAIT:
                self._lose(f"{decision.holder} holds the {self.where} now")
                return
            if decision is None and renewal_overdue(self._last_renewed, self._clock(), timing):
                self._lose(
                    f"the {self.where} was not renewed for {timing.renew_deadline_seconds:g}s "
                    "(the renew deadline)"
                )
                return

    def _lose(self, why: str) -> None:
        self.leader = False
        self.lost = True
        metrics.leader_changed(leader=False)
        log.error("lost leadership: %s; exiting so that no handler runs in a non-leader", why)
        self._on_lost()

    def stop_and_release(self) -> None:
        """Stop renewing and step down (clear the holder), so a standby takes over at once."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=self.config.timing.retry_seconds + 5)
        if not self.leader or self._lease is None:
            return
        self.leader = False
        metrics.leader_changed(leader=False)
        try:
            replace_lease(
                self._api(),
                self._lease,
                released(self._lease, self._wall()),
                timeout=max(self.config.timing.retry_seconds, 1.0),
            )
        except Exception as exc:  # noqa: BLE001 - the Lease then expires on its own
            log.warning("could not release the %s (it expires on its own): %s", self.where, exc)
            return
        log.info("released the %s: a standby takes over now", self.where)


def election_identity(pod_name: str | None = None) -> str:
    """The Pod's name (downward API) or the host's, with a random suffix: a restarted
    container is a new candidate, never mistaken for the old holder."""
    import socket
    import uuid

    base = pod_name or os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"
