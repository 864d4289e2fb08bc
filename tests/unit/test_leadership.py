"""Leader election: the pure decisions (table-driven), and the elector's loop on an in-memory
Lease store that enforces resourceVersion preconditions as the API server does."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from lifeboat.controller import election as election_module
from lifeboat.controller.election import ElectionConfig, LeaderElector
from lifeboat.controller.leadership import (
    ElectionTiming,
    Sighting,
    Step,
    decide,
    observe,
    released,
    renewal_overdue,
)
from lifeboat.kube.leases import LeaseConflict

TIMING = ElectionTiming(lease_seconds=15, renew_deadline_seconds=10, retry_seconds=2)
WALL = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
STAMP = "2026-01-02T03:04:05.600000Z"


def lease(holder: str | None, version: str = "7", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "lifeboat-operator", "namespace": "ops", "resourceVersion": version},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": "2020-01-01T00:00:00.000000Z",
            "renewTime": "2020-01-01T00:00:09.000000Z",
            "leaseTransitions": 4,
            **spec,
        },
    }


@pytest.mark.parametrize(
    ("case", "current", "seen_since", "now", "step", "holder", "transitions"),
    [
        ("no Lease yet: create it", None, None, 100.0, Step.CREATE, "me", 0),
        ("held by another, renewed 1 s ago", lease("other"), 99.0, 100.0, Step.WAIT, "other", None),
        ("held, unchanged 14.9 s", lease("other"), 85.1, 100.0, Step.WAIT, "other", None),
        ("held, unchanged 15 s: expired", lease("other"), 85.0, 100.0, Step.ACQUIRE, "me", 5),
        (
            "held, first seen now (no history)",
            lease("other"),
            100.0,
            100.0,
            Step.WAIT,
            "other",
            None,
        ),
        ("released (no holder): take it at once", lease(None), 100.0, 100.0, Step.ACQUIRE, "me", 5),
        ("released as an empty string", lease(""), 100.0, 100.0, Step.ACQUIRE, "me", 5),
        ("ours: renew", lease("me"), 50.0, 100.0, Step.RENEW, "me", 4),
        (
            "its own shorter duration counts",
            lease("other", leaseDurationSeconds=3),
            97.0,
            100.0,
            Step.ACQUIRE,
            "me",
            5,
        ),
    ],
)
def test_decide(
    case: str,
    current: dict[str, Any] | None,
    seen_since: float | None,
    now: float,
    step: Step,
    holder: str,
    transitions: int | None,
) -> None:
    sighting = None if seen_since is None else Sighting("7", seen_since)
    decision = decide("me", current, sighting, now=now, wall=WALL, timing=TIMING)
    assert (decision.step, decision.holder) == (step, holder), case
    if transitions is None:
        assert decision.spec is None
        return
    assert decision.spec is not None
    assert decision.spec["holderIdentity"] == "me"
    assert decision.spec["leaseTransitions"] == transitions
    assert decision.spec["renewTime"] == STAMP
    assert decision.spec["leaseDurationSeconds"] == 15
    expected_acquired = "2020-01-01T00:00:00.000000Z" if step is Step.RENEW else STAMP
    assert decision.spec["acquireTime"] == expected_acquired


def test_expiry_is_judged_by_our_clock_never_by_the_holders_renew_time() -> None:
    """A renewTime from a clock hours behind does not make a live leader's Lease expired: only
    a resourceVersion that stops changing for the lease duration does."""
    sighting = None
    for now, version in [(0.0, "1"), (2.0, "2"), (4.0, "3"), (6.0, "4")]:
        current = lease("other", version, renewTime="1999-01-01T00:00:00.000000Z")
        sighting = observe(sighting, current, now)
        decision = decide("me", current, sighting, now=now, wall=WALL, timing=TIMING)
        assert decision.step is Step.WAIT
    assert sighting == Sighting("4", 6.0)
    still = lease("other", "4")
    assert observe(sighting, still, 20.9) == Sighting("4", 6.0)
    assert decide("me", still, sighting, now=20.9, wall=WALL, timing=TIMING).step is Step.WAIT
    assert decide("me", still, sighting, now=21.0, wall=WALL, timing=TIMING).step is Step.ACQUIRE


@pytest.mark.parametrize(
    ("since_renewal", "overdue"), [(0.0, False), (9.9, False), (10.0, False), (10.1, True)]
)
def test_a_leader_must_stop_once_it_has_not_renewed_within_the_deadline(
    since_renewal: float, overdue: bool
) -> None:
    assert renewal_overdue(100.0, 100.0 + since_renewal, TIMING) is overdue


def test_stepping_down_clears_the_holder_and_keeps_the_transitions() -> None:
    spec = released(lease("me"), WALL)
    assert spec["holderIdentity"] is None
    assert spec["leaseTransitions"] == 4
    assert spec["renewTime"] == STAMP


@pytest.mark.parametrize(
    ("lease_seconds", "deadline", "retry"), [(10, 10, 2), (15, 10, 10), (15, 10, 0), (5, 10, 2)]
)
def test_timings_must_leave_the_leader_time_to_stop_before_anyone_takes_over(
    lease_seconds: int, deadline: float, retry: float
) -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline > retry period"):
        ElectionTiming(lease_seconds, deadline, retry)


def test_the_takeover_bound_is_lease_duration_plus_retry_period() -> None:
    assert TIMING.takeover_seconds == 17


# -- the elector, on an in-memory Lease store ---------------------------------------------------


class Leases:
    """One Lease with the API server's resourceVersion rules; `fail` makes every call fail;
    `before_write` runs once, just before the next write (another operator's move)."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.fail = False
        self.before_write: Callable[[], None] | None = None

    def _interleave(self) -> None:
        if self.fail:
            raise ConnectionError("API server unreachable")
        hook, self.before_write = self.before_write, None
        if hook is not None:
            hook()

    def _store(self, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": str(self.version),
            },
            "spec": copy.deepcopy(spec),
        }
        return copy.deepcopy(self.lease)

    def read(self, api: Any, namespace: str, name: str, *, timeout: float) -> Any:
        if self.fail:
            raise ConnectionError("API server unreachable")
        return copy.deepcopy(self.lease)

    def create(self, api: Any, namespace: str, name: str, spec: Any, *, timeout: float) -> Any:
        self._interleave()
        if self.lease is not None:
            raise LeaseConflict("exists")
        return self._store(name, namespace, spec)

    def replace(self, api: Any, current: Any, spec: Any, *, timeout: float) -> Any:
        self._interleave()
        assert self.lease is not None
        if current["metadata"]["resourceVersion"] != self.lease["metadata"]["resourceVersion"]:
            raise LeaseConflict("stale")
        return self._store(current["metadata"]["name"], current["metadata"]["namespace"], spec)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def leases(monkeypatch: pytest.MonkeyPatch) -> Leases:
    store = Leases()
    monkeypatch.setattr(election_module, "read_lease", store.read)
    monkeypatch.setattr(election_module, "create_lease", store.create)
    monkeypatch.setattr(election_module, "replace_lease", store.replace)
    return store


def elector(identity: str, clock: Clock, lost: list[str]) -> LeaderElector:
    return LeaderElector(
        lambda: None,  # type: ignore[arg-type,return-value]
        ElectionConfig("ops", "lifeboat-operator", identity, TIMING),
        on_lost=lambda: lost.append(identity),
        clock=clock,
        wall=lambda: WALL,
    )


def test_of_two_operators_racing_for_a_new_lease_the_second_writer_gets_409_and_stands_by(
    leases: Leases,
) -> None:
    clock, lost = Clock(), []
    a, b = elector("a", clock, lost), elector("b", clock, lost)
    leases.before_write = lambda: a._try()  # a creates it between b's read and b's create
    assert b._try() is None
    assert leases.lease is not None
    assert leases.lease["spec"]["holderIdentity"] == "a"
    decision = b._try()
    assert decision is not None
    assert (decision.step, decision.holder) == (Step.WAIT, "a")


def test_of_two_operators_taking_an_expired_lease_the_stale_writer_gets_409(
    leases: Leases,
) -> None:
    clock, lost = Clock(), []
    old, a, b = elector("old", clock, lost), elector("a", clock, lost), elector("b", clock, lost)
    old._try()
    a._try(), b._try()  # both see "old" hold it
    clock.now += 15
    leases.before_write = lambda: a._try()  # a takes it between b's read and b's write
    assert b._try() is None
    assert leases.lease is not None
    assert leases.lease["spec"]["holderIdentity"] == "a"
    assert leases.lease["spec"]["leaseTransitions"] == 1


def test_a_leader_that_cannot_renew_keeps_acting_until_the_deadline_then_stops(
    leases: Leases,
) -> None:
    clock, lost = Clock(), []
    leader = elector("a", clock, lost)
    assert leader.acquire(threading.Event())
    leases.fail = True
    clock.now += TIMING.renew_deadline_seconds
    leader._stop.set()  # drive the loop by hand: one iteration per call
    assert leader._try() is None
    assert not renewal_overdue(leader._last_renewed, clock.now, TIMING)
    clock.now += 0.5
    leader._stop = _OnceEvent()
    leader._renew_loop()
    assert lost == ["a"]
    assert not leader.leader


def test_a_leader_that_finds_another_holder_stops_at_once(leases: Leases) -> None:
    clock, lost = Clock(), []
    leader = elector("a", clock, lost)
    assert leader.acquire(threading.Event())
    assert leases.lease is not None
    leases._store("lifeboat-operator", "ops", {**leases.lease["spec"], "holderIdentity": "b"})
    leader._stop = _OnceEvent()
    leader._renew_loop()
    assert lost == ["a"]


def test_a_released_lease_is_taken_by_the_standby_on_its_next_look(leases: Leases) -> None:
    clock, lost = Clock(), []
    a, b = elector("a", clock, lost), elector("b", clock, lost)
    assert a.acquire(threading.Event())
    decision = b._try()
    assert decision is not None
    assert decision.step is Step.WAIT
    a.stop_and_release()
    assert leases.lease is not None
    assert leases.lease["spec"]["holderIdentity"] is None
    decision = b._try()
    assert decision is not None
    assert decision.step is Step.ACQUIRE
    assert leases.lease["spec"]["holderIdentity"] == "b"
    assert lost == []


class _OnceEvent(threading.Event):
    """An event whose first wait returns at once unset (one loop iteration), then is set."""

    def __init__(self) -> None:
        super().__init__()
        self._waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        self._waits += 1
        if self._waits > 1:
            self.set()
        return self.is_set()


def test_a_standby_stopped_while_waiting_never_leads(leases: Leases) -> None:
    clock, lost = Clock(), []
    holder, standby = elector("a", clock, lost), elector("b", clock, lost)
    assert holder.acquire(threading.Event())
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    assert standby.acquire(stop) is False
    assert not standby.leader
    assert leases.lease is not None
    assert leases.lease["spec"]["holderIdentity"] == "a"
