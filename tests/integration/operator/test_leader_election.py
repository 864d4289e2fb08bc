"""Two `lifeboat operator` processes at once (the chart's replicaCount: 2), as real processes
against the API server: exactly one holds the leader Lease and acts, the other stands by and takes
over within lease duration + retry period when the leader is killed, at once when the leader
stops cleanly, and there is one Job per Backup throughout.

Short timings keep the file fast: a 3 s lease, a 2 s renew deadline, a 0.5 s retry period.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.integration.operator.conftest import Cluster, SqliteShop, operator_command

LEASE = "lifeboat-operator"
LEASE_SECONDS, RENEW_DEADLINE, RETRY = 3, 2.0, 0.5
SLACK = 1.5
"""Seconds on top of a bound for process scheduling on a loaded 2-core machine."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OperatorProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    readiness: str
    metrics: str
    liveness: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def handled_anything(self) -> bool:
        return "Handler '" in self.output()

    def ready(self) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(self.readiness, timeout=2) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def alive(self) -> int:
        """The liveness probe's status code, as the kubelet sees it."""
        try:
            with urllib.request.urlopen(self.liveness, timeout=2) as response:  # noqa: S310
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except urllib.error.URLError:
            return 0  # nothing listens

    def leader_gauge(self) -> float:
        with urllib.request.urlopen(self.metrics, timeout=2) as response:  # noqa: S310
            text = response.read().decode()
        (line,) = [x for x in text.splitlines() if x.startswith("lifeboat_leader ")]
        return float(line.split()[1])


class Operators:
    """Starts `lifeboat operator --leader-elect` processes; kills what is left at the end."""

    def __init__(self, cluster: Cluster, tmp_path: Path) -> None:
        self.cluster = cluster
        self.tmp_path = tmp_path
        self.started: list[OperatorProcess] = []

    def start(self, name: str, lease_seconds: int = LEASE_SECONDS) -> OperatorProcess:
        log = self.tmp_path / f"{name}.log"
        ready_port, metrics_port, live_port = free_port(), free_port(), free_port()
        command = operator_command(
            self.cluster,
            "--leader-elect",
            "--leader-election-namespace",
            self.cluster.namespace,
            "--leader-election-lease-seconds",
            str(lease_seconds),
            "--leader-election-renew-deadline-seconds",
            str(RENEW_DEADLINE),
            "--leader-election-retry-seconds",
            str(RETRY),
            "--readiness",
            f"http://127.0.0.1:{ready_port}/readyz",
            "--liveness",
            f"http://127.0.0.1:{live_port}/healthz",
            "--metrics-address",
            f"127.0.0.1:{metrics_port}",
        )
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "POD_NAME": name},
            )
        started = OperatorProcess(
            name,
            process,
            log,
            f"http://127.0.0.1:{ready_port}/readyz",
            f"http://127.0.0.1:{metrics_port}/metrics",
            f"http://127.0.0.1:{live_port}/healthz",
        )
        self.started.append(started)
        return started

    def stop_all(self) -> None:
        for operator in self.started:
            if operator.process.poll() is None:
                operator.process.kill()
            operator.process.wait(timeout=10)


@pytest.fixture
def operators(cluster: Cluster, tmp_path: Path) -> Iterator[Operators]:
    control = Operators(cluster, tmp_path)
    try:
        yield control
    finally:
        control.stop_all()


def lease_of(cluster: Cluster) -> dict[str, Any] | None:
    try:
        response = client.CoordinationV1Api(cluster.api).read_namespaced_lease(
            LEASE, cluster.namespace, _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    lease: dict[str, Any] = json.loads(response.data)
    return lease


def holder(cluster: Cluster) -> str | None:
    lease = lease_of(cluster)
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or None


def wait_for_holder(cluster: Cluster, *candidates: OperatorProcess, timeout: float) -> Any:
    def held() -> OperatorProcess | None:
        name = holder(cluster) or ""
        return next((c for c in candidates if name.startswith(f"{c.name}_")), None)

    return cluster.wait_for(held, timeout=timeout, interval=0.02, max_interval=0.05)


def jobs_per_backup(cluster: Cluster) -> Counter[str]:
    return Counter(
        owner["name"]
        for job in cluster.jobs()
        for owner in job["metadata"].get("ownerReferences") or []
        if owner.get("kind") == "Backup"
    )


def complete(cluster: Cluster, shop: SqliteShop, names: list[str]) -> None:
    for name in names:
        status = cluster.wait_phase("backups", name, "Completed", "Failed", timeout=30)
        assert status["phase"] == "Completed", (name, status)


def test_two_operators_elect_one_and_the_standby_takes_over_a_killed_leader(
    cluster: Cluster, sqlite_shop: SqliteShop, operators: Operators
) -> None:
    first, second = operators.start("operator-a"), operators.start("operator-b")
    leader = wait_for_holder(cluster, first, second, timeout=20)
    standby = second if leader is first else first
    cluster.wait_for(lambda: "standing by" in standby.output(), timeout=10)

    before = [f"before-{i}" for i in range(2)]
    for name in before:
        cluster.create("backups", name, sqlite_shop.spec())
    complete(cluster, sqlite_shop, before)
    assert leader.handled_anything(), leader.output()
    assert not standby.handled_anything(), standby.output()
    assert standby.ready() == (200, {"ready": True, "leader": False})
    assert standby.alive() == 200  # or the kubelet would restart every standby
    assert leader.alive() == 200
    assert cluster.wait_for(lambda: leader.ready()[0] == 200, timeout=10)
    assert standby.leader_gauge() == 0
    assert leader.leader_gauge() == 1

    leader.process.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    during = ["during"]
    for name in during:
        cluster.create("backups", name, sqlite_shop.spec())
    bound = LEASE_SECONDS + RETRY
    wait_for_holder(cluster, standby, timeout=bound + SLACK)
    takeover = time.monotonic() - killed_at
    print(f"takeover after SIGKILL of the leader: {takeover:.2f}s (bound {bound}s)")
    assert takeover <= bound + SLACK
    assert "became the leader" in standby.output()
    assert cluster.wait_for(lambda: standby.alive() == 200, timeout=10)  # kopf's own, now

    after = ["after"]
    for name in after:
        cluster.create("backups", name, sqlite_shop.spec())
    complete(cluster, sqlite_shop, during + after)
    assert standby.handled_anything()
    assert jobs_per_backup(cluster) == Counter({n: 1 for n in before + during + after})
    assert standby.process.poll() is None


def test_a_leader_stopped_cleanly_releases_the_lease_and_the_standby_takes_over_at_once(
    cluster: Cluster, sqlite_shop: SqliteShop, operators: Operators
) -> None:
    # A long lease: a takeover that waited for expiry would take 30 s.
    a = operators.start("operator-a", lease_seconds=30)
    b = operators.start("operator-b", lease_seconds=30)
    leader = wait_for_holder(cluster, a, b, timeout=20)
    standby = b if leader is a else a
    cluster.wait_for(lambda: "standing by" in standby.output(), timeout=20)
    cluster.create("backups", "first", sqlite_shop.spec())
    complete(cluster, sqlite_shop, ["first"])

    leader.process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    wait_for_holder(cluster, standby, timeout=RETRY + SLACK + 1)
    takeover = time.monotonic() - stopped_at
    print(f"takeover after SIGTERM of the leader: {takeover:.2f}s")
    assert leader.process.wait(timeout=20) == 0, leader.output()
    assert "released the Lease" in leader.output()
    lease = lease_of(cluster)
    assert lease is not None
    assert lease["spec"]["leaseTransitions"] >= 1

    cluster.create("backups", "second", sqlite_shop.spec())
    complete(cluster, sqlite_shop, ["second"])
    assert jobs_per_backup(cluster) == Counter({"first": 1, "second": 1})


def test_a_leader_that_finds_its_lease_taken_exits_non_zero_at_once(
    cluster: Cluster, operators: Operators
) -> None:
    leader = operators.start("operator-a")
    wait_for_holder(cluster, leader, timeout=20)
    lease = lease_of(cluster)
    assert lease is not None
    lease["spec"]["holderIdentity"] = "someone-else"
    client.CoordinationV1Api(cluster.api).replace_namespaced_lease(LEASE, cluster.namespace, lease)
    assert leader.process.wait(timeout=RETRY + SLACK + 2) == 1
    assert "lost leadership: someone-else holds the Lease" in leader.output()
    assert holder(cluster) == "someone-else"


def test_a_leader_cut_off_from_its_lease_stops_within_the_renew_deadline_and_the_standby_leads(
    cluster: Cluster, sqlite_shop: SqliteShop, operators: Operators
) -> None:
    """The leader's renewals fail (the API server answers 503 to its Lease writes, as when it is
    partitioned from it): it must stop acting by the renew deadline, before the lease can expire
    for the standby, so two operators never act at once."""
    assert cluster.server is not None
    a, b = operators.start("operator-a"), operators.start("operator-b")
    leader = wait_for_holder(cluster, a, b, timeout=20)
    standby = b if leader is a else a
    cluster.wait_for(lambda: "standing by" in standby.output(), timeout=10)

    fault = cluster.server.faults.add(
        method="PUT",
        path_glob=f"/apis/coordination.k8s.io/v1/namespaces/*/leases/{LEASE}",
        status=503,
        times=None,
        when=lambda body: str(body["spec"]["holderIdentity"]).startswith(f"{leader.name}_"),
    )
    cut_at = time.monotonic()
    assert leader.process.wait(timeout=RENEW_DEADLINE + RETRY + SLACK) == 1, leader.output()
    stopped = time.monotonic() - cut_at
    assert "lost leadership" in leader.output()
    assert stopped < LEASE_SECONDS, f"stopped after {stopped:.2f}s, the lease is {LEASE_SECONDS}s"
    assert cluster.server.faults.count(status=503, path_glob=fault.path_glob) >= 1

    wait_for_holder(cluster, standby, timeout=LEASE_SECONDS + RETRY + SLACK)
    cluster.create("backups", "after-the-cut", sqlite_shop.spec())
    complete(cluster, sqlite_shop, ["after-the-cut"])
    assert jobs_per_backup(cluster) == Counter({"after-the-cut": 1})
