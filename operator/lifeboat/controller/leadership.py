"""Leader election decisions, pure: given the Lease as read, what this operator writes next.

The rules are client-go's `leaderelection` (what controller-runtime, CloudNativePG and
mariadb-operator run):

- a missing Lease is created with us as its holder; a Lease whose holder stepped down (no
  holder) is taken at once;
- a Lease someone else holds is taken only once it has expired, and expiry is judged by *our*
  clock: the Lease must have gone unchanged (same resourceVersion) for its whole
  `leaseDurationSeconds` since we first saw it so. The holder's `renewTime` is never compared
  with our clock: clocks on two machines disagree;
- the holder renews every `retry_seconds`; if no renewal has succeeded for
  `renew_deadline_seconds` it must stop acting. The deadline is shorter than the lease, so a
  leader that cannot renew has stopped before any standby may take over;
- on a clean shutdown the holder clears `holderIdentity`, so a standby takes over at once.

A standby therefore takes over a killed leader at most `lease_seconds + retry_seconds` after the
leader's last renewal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from lifeboat.contract import Object


@dataclass(frozen=True)
class ElectionTiming:
    lease_seconds: int = 15
    """How long a Lease nobody renews stays its holder's (`leaseDurationSeconds`)."""
    renew_deadline_seconds: float = 10.0
    """How long the leader keeps acting without a successful renewal before it gives up."""
    retry_seconds: float = 2.0
    """How often the leader renews and a standby looks at the Lease."""

    def __post_init__(self) -> None:
        if not self.lease_seconds > self.renew_deadline_seconds > self.retry_seconds > 0:
            raise ValueError(
                "leader election needs lease duration > renew deadline > retry period > 0, not "
                f"{self.lease_seconds} > {self.renew_deadline_seconds} > {self.retry_seconds}"
            )

    @property
    def takeover_seconds(self) -> float:
        """The most a standby waits after a killed leader's last renewal."""
        return self.lease_seconds + self.retry_seconds


class Step(StrEnum):
    CREATE = "Create"
    """No Lease yet: create it, held by us."""
    ACQUIRE = "Acquire"
    """Free or expired: take it (a new holder, one more transition)."""
    RENEW = "Renew"
    """Ours: write a new renewTime."""
    WAIT = "Wait"
    """Someone else holds it and it has not expired: stand by."""


@dataclass(frozen=True)
class Decision:
    step: Step
    spec: Object | None = None
    """The Lease spec to write (None for WAIT)."""
    holder: str | None = None
    """Who holds the Lease now (for WAIT: the other operator)."""


@dataclass(frozen=True)
class Sighting:
    """The Lease's version as we last saw it, and since when (our monotonic clock) it has not
    changed."""

    version: str
    since: float


def observe(previous: Sighting | None, lease: Object | None, now: float) -> Sighting | None:
    """Update what we saw: a new resourceVersion restarts the clock; the same one keeps it."""
    if lease is None:
        return None
    version = str(lease.get("metadata", {}).get("resourceVersion", ""))
    if previous is not None and previous.version == version:
        return previous
    return Sighting(version=version, since=now)


def micro_time(moment: datetime) -> str:
    """A metav1.MicroTime: RFC 3339 with microseconds, in UTC."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def holder_of(lease: Object | None) -> str | None:
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or None


def expired(lease: Object, sighting: Sighting | None, now: float, timing: ElectionTiming) -> bool:
    """Whether the Lease has gone unchanged for its whole duration, by our clock."""
    if sighting is None:
        return False
    duration = (lease.get("spec") or {}).get("leaseDurationSeconds") or timing.lease_seconds
    return now - sighting.since >= float(duration)


def decide(
    identity: str,
    lease: Object | None,
    sighting: Sighting | None,
    *,
    now: float,
    wall: datetime,
    timing: ElectionTiming,
) -> Decision:
    """What to do with the Lease as just read (`sighting` already updated from it)."""
    stamp = micro_time(wall)
    if lease is None:
        return Decision(Step.CREATE, _held(identity, stamp, stamp, 0, timing), identity)
    spec = lease.get("spec") or {}
    holder = holder_of(lease)
    transitions = int(spec.get("leaseTransitions") or 0)
    if holder == identity:
        acquired = spec.get("acquireTime") or stamp
        return Decision(Step.RENEW, _held(identity, acquired, stamp, transitions, timing), identity)
    if holder is None or expired(lease, sighting, now, timing):
        return Decision(
            Step.ACQUIRE, _held(identity, stamp, stamp, transitions + 1, timing), identity
        )
    return Decision(Step.WAIT, holder=holder)


def _held(
    identity: str, acquired: str, renewed: str, transitions: int, timing: ElectionTiming
) -> Object:
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": math.ceil(timing.lease_seconds),
        "acquireTime": acquired,
        "renewTime": renewed,
        "leaseTransitions": transitions,
    }


def released(lease: Object, wall: datetime) -> Object:
    """The spec that steps down: no holder (a standby takes it at once), as client-go writes."""
    spec = dict(lease.get("spec") or {})
    spec.update(
        {
            "holderIdentity": None,
            "leaseDurationSeconds": 1,
            "acquireTime": None,
            "renewTime": micro_time(wall),
        }
    )
    return spec


def renewal_overdue(last_renewed: float, now: float, timing: ElectionTiming) -> bool:
    """The leader has not renewed within its renew deadline: it must stop acting."""
    return now - last_renewed > timing.renew_deadline_seconds
