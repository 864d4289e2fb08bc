"""The operator's Prometheus endpoint, scraped over HTTP after real reconciliations: the real
operator (serving /metrics as `--metrics-address` makes it), real Jobs running the real worker.

The metrics live in one registry per process and these tests share the process with others, so
every check compares a scrape after the scenario with one before it (counters, histograms) or
with the exact value the status holds (gauges).
"""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from datetime import datetime

import kmock
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lifeboat.kube.retry import RetryPolicy
from tests.integration.operator.conftest import Cluster, OperatorControl, SqliteShop
from tests.integration.operator.test_schedules import TICK, FakeClock, at

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
NS = "default"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Scraper:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def text(self) -> str:
        with urllib.request.urlopen(self.url, timeout=10) as response:  # noqa: S310 - http on localhost
            assert response.headers["Content-Type"].startswith("text/plain")
            return str(response.read().decode())

    def samples(self) -> Samples:
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(self.text())
            for sample in family.samples
        }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(labels) for sample, labels in samples if sample == name]


def epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def metrics_operator(cluster: Cluster) -> Iterator[Scraper]:
    """The real operator with its metrics endpoint on a free local port."""
    port = free_port()
    control = OperatorControl(cluster.server, cluster.kubeconfig)
    control.start(metrics_address=f"127.0.0.1:{port}")
    try:
        yield Scraper(port)
    finally:
        control.stop()


def test_backups_and_restores_are_counted_timed_and_sized_by_result_and_reason(
    cluster: Cluster, metrics_operator: Scraper, sqlite_shop: SqliteShop
) -> None:
    before = metrics_operator.samples()
    good = {"namespace": NS, "engine": "sqlite", "database": "app-data/shop.db"}
    bad = {"namespace": NS, "engine": "sqlite", "database": "app-data/missing.db"}

    cluster.create("backups", "shop", sqlite_shop.spec())
    done = cluster.wait_phase("backups", "shop", "Completed", "Failed")
    assert done["phase"] == "Completed", done
    missing = {**sqlite_shop.spec(), "database": {**sqlite_shop.spec()["database"]}}
    missing["database"]["path"] = "missing.db"
    cluster.create("backups", "broken", missing)
    failed = cluster.wait_phase("backups", "broken", "Completed", "Failed")
    assert failed["phase"] == "Failed", failed
    cluster.create("restores", "shop-back", {"backupRef": {"name": "shop"}})
    restored = cluster.wait_phase("restores", "shop-back", "Completed", "Failed")
    assert restored["phase"] == "Completed", restored

    after = metrics_operator.samples()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    size = done["artifact"]["size"]
    assert delta("lifeboat_backups_total", **good, result="Completed", reason="Completed") == 1
    assert delta("lifeboat_backups_total", **bad, result="Failed", reason=failed["reason"]) == 1, (
        failed["reason"]
    )
    sqlite = {"namespace": NS, "engine": "sqlite"}
    assert delta("lifeboat_backup_duration_seconds_count", **sqlite, result="Completed") == 1
    assert delta("lifeboat_backup_duration_seconds_count", **sqlite, result="Failed") == 1
    took = epoch(done["completionTime"]) - epoch(done["startTime"])
    assert delta("lifeboat_backup_duration_seconds_sum", **sqlite, result="Completed") == (
        pytest.approx(took, abs=1.0)
    )
    assert delta("lifeboat_backup_artifact_bytes_count", **sqlite) == 1
    assert delta("lifeboat_backup_artifact_bytes_sum", **sqlite) == size
    assert value(after, "lifeboat_backup_last_success_timestamp_seconds", **good) == epoch(
        done["completionTime"]
    )
    assert value(after, "lifeboat_backup_last_success_artifact_bytes", **good) == size
    assert value(
        after, "lifeboat_backup_last_failure_timestamp_seconds", **bad, reason=failed["reason"]
    ) == epoch(failed["completionTime"])
    # Whatever failed earlier for this database (other tests share the process), it is older
    # than this success: what LifeboatBackupFailed compares.
    earlier = [
        value(after, "lifeboat_backup_last_failure_timestamp_seconds", **labels)
        for labels in series(after, "lifeboat_backup_last_failure_timestamp_seconds")
        if labels["database"] == good["database"]
    ]
    assert all(failed_at < epoch(done["completionTime"]) for failed_at in earlier)
    assert len(earlier) <= 1  # one series per database: the newest failure's reason

    into = {"namespace": NS, "engine": "sqlite", "database": "shop.db"}
    assert (
        delta(
            "lifeboat_restores_total",
            **into,
            result="Completed",
            reason="Completed",
            dry_run="false",
        )
        == 1
    )
    assert (
        delta(
            "lifeboat_restore_duration_seconds_count",
            **sqlite,
            result="Completed",
            dry_run="false",
        )
        == 1
    )
    assert value(after, "lifeboat_restore_last_success_timestamp_seconds", **into) == epoch(
        restored["completionTime"]
    )
    assert value(after, "lifeboat_jobs_in_flight", kind="backup", namespace=NS) == 0
    assert value(after, "lifeboat_build_info", version="0.1.0") == 1


def test_in_flight_jobs_and_reconcile_errors(
    cluster: Cluster, metrics_operator: Scraper, sqlite_shop: SqliteShop
) -> None:
    before = metrics_operator.samples()
    errors = {"kind": "backup", "error": "KubeError"}
    assert cluster.server is not None
    # As many 503s as one handler run retries (RetryPolicy's attempts): that run fails, and
    # kopf's retry of the handler creates the Job.
    attempts = RetryPolicy().attempts
    cluster.server[kmock.method.POST, kmock.resource("batch", "v1", "jobs")][:attempts] << 503
    cluster.runner.hold_when(lambda namespace, name: name.startswith("held-"))

    cluster.create("backups", "held", sqlite_shop.spec())
    cluster.wait_for(lambda: cluster.status("backups", "held").get("jobName"))
    cluster.wait_for(
        lambda: (
            value(
                metrics_operator.samples(), "lifeboat_jobs_in_flight", kind="backup", namespace=NS
            )
            == 1
        )
    )
    scraped = metrics_operator.samples()
    assert (
        value(scraped, "lifeboat_reconcile_errors_total", **errors)
        - value(before, "lifeboat_reconcile_errors_total", **errors)
        >= 1
    )  # the refused Job creates; kopf retried the handler

    cluster.runner.release(cluster.status("backups", "held")["jobName"])
    assert cluster.wait_phase("backups", "held", "Completed", "Failed")["phase"] == "Completed"
    cluster.wait_for(
        lambda: (
            value(
                metrics_operator.samples(), "lifeboat_jobs_in_flight", kind="backup", namespace=NS
            )
            == 0
        )
    )


def test_store_checks_and_a_deleted_stores_series(
    cluster: Cluster, metrics_operator: Scraper, sqlite_shop: SqliteShop
) -> None:
    labels = {"namespace": NS, "store": "local"}
    before = metrics_operator.samples()
    cluster.create("backupstores", "local", {"volume": {"persistentVolumeClaim": "backups"}})
    cluster.wait_for(
        lambda: value(metrics_operator.samples(), "lifeboat_store_ready", **labels) == 1
    )
    after = metrics_operator.samples()
    assert (
        value(after, "lifeboat_store_checks_total", **labels, reason="Reachable")
        - value(before, "lifeboat_store_checks_total", **labels, reason="Reachable")
        == 1
    )

    cluster.delete("backupstores", "local")
    cluster.wait_for(
        lambda: (
            {"namespace": NS, "store": "local"}
            not in series(metrics_operator.samples(), "lifeboat_store_ready")
        )
    )


def test_schedule_slots_fired_skipped_and_pruned(cluster: Cluster, sqlite_shop: SqliteShop) -> None:
    port = free_port()
    clock = FakeClock(at(1, 59, 30))
    control = OperatorControl(cluster.server, cluster.kubeconfig)
    control.start(clock=clock, schedule_check_seconds=TICK, metrics_address=f"127.0.0.1:{port}")
    scrape = Scraper(port)
    labels = {"namespace": NS, "schedule": "nightly"}
    try:
        before = scrape.samples()
        cluster.create(
            "backupschedules",
            "nightly",
            {"schedule": "0 * * * *", "template": sqlite_shop.spec(), "retention": {"keepLast": 1}},
        )
        cluster.wait_for(
            lambda: cluster.status("backupschedules", "nightly").get("nextScheduleTime")
        )
        clock.set(at(2, 0, 5))
        cluster.wait_for(lambda: cluster.get("backups", "nightly-20261203-0200") is not None)
        cluster.wait_phase("backups", "nightly-20261203-0200", "Completed", "Failed")

        suspend = {"spec": {"suspend": True}}
        cluster.custom.patch_namespaced_custom_object(
            "lifeboat.dev", "v1alpha1", NS, "backupschedules", "nightly", suspend
        )
        cluster.wait_for(
            lambda: "nextScheduleTime" not in cluster.status("backupschedules", "nightly")
        )
        clock.set(at(3, 0, 5))
        cluster.wait_for(
            lambda: (
                cluster.status("backupschedules", "nightly").get("lastSkippedReason") == "Suspended"
            )
        )
        resume = {"spec": {"suspend": False}}
        cluster.custom.patch_namespaced_custom_object(
            "lifeboat.dev", "v1alpha1", NS, "backupschedules", "nightly", resume
        )
        cluster.wait_for(
            lambda: cluster.status("backupschedules", "nightly").get("nextScheduleTime")
        )
        clock.set(at(4, 0, 5))
        cluster.wait_for(lambda: cluster.get("backups", "nightly-20261203-0400") is not None)
        cluster.wait_phase("backups", "nightly-20261203-0400", "Completed", "Failed")
        cluster.wait_for(lambda: cluster.get("backups", "nightly-20261203-0200") is None)

        after = scrape.samples()

        def delta(name: str, **more: str) -> float:
            return value(after, name, **labels, **more) - value(before, name, **labels, **more)

        assert delta("lifeboat_schedule_slots_fired_total") == 2
        assert delta("lifeboat_schedule_slots_skipped_total", reason="Suspended") == 1
        assert delta("lifeboat_retention_pruned_total", outcome="Succeeded") == 1
    finally:
        control.stop()
