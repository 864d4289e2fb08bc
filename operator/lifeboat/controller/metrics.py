"""The operator's Prometheus metrics: every metric is defined here, and recorded by one call at the
place where the controller writes the fact it counts (a terminal phase, a schedule's slot, a
store's check result), so a metric can never disagree with the status it mirrors.

Labels are bounded and never secret: a namespace, an engine, a database's identity (host, port
and name, or a SQLite file's claim and path: what the spec names, never a login or a password),
a schedule's or a store's name, a CamelCase reason. Never a Backup's or a Restore's own name:
every scheduled Backup has a new one, so they would grow without bound.

The last-success and last-failure gauges are also seeded from the finished Backups and Restores
the operator finds when it starts (kopf resumes every object), so they survive a restart as
long as those objects exist.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Final, ParamSpec, TypeVar
from wsgiref.simple_server import WSGIServer

import kopf
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lifeboat import __version__
from lifeboat.api import BACKUP_KIND, DRILL_KIND, RESTORE_KIND, Phase
from lifeboat.contract import DEFAULT_PORTS, Object
from lifeboat.controller.restore_history import ALREADY_RESTORED

# `*_created` series double every counter's series for a timestamp nobody alerts on.
disable_created_metrics()  # type: ignore[no-untyped-call]

REGISTRY: Final = CollectorRegistry()
"""Lifeboat's own registry (not the process-global one): what the endpoint serves."""
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

DURATION_BUCKETS: Final = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)
"""Seconds: from a small SQLite file to the 6-hour default deadline and beyond."""
BYTE_BUCKETS: Final = tuple(float(2**20 * 4**i) for i in range(11))
"""Bytes: 1 MiB, 4 MiB, ... 1 TiB."""
_LABEL_LIMIT: Final = 256
_REASON: Final = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")

DATABASE_LABELS: Final = ("namespace", "engine", "database")

BUILD_INFO: Final = Gauge(
    "lifeboat_build_info",
    "Always 1: the running operator's version. Absent when no operator is scraped.",
    ["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(__version__).set(1)

BACKUPS: Final = Counter(
    "lifeboat_backups",
    "Backups that ended, by result (Completed or Failed) and the reason in their status.",
    [*DATABASE_LABELS, "result", "reason"],
    registry=REGISTRY,
)
RESTORES: Final = Counter(
    "lifeboat_restores",
    "Restores that ended, by result (Completed or Failed), reason, and whether it was a dry run.",
    [*DATABASE_LABELS, "result", "reason", "dry_run"],
    registry=REGISTRY,
)
BACKUP_DURATION: Final = Histogram(
    "lifeboat_backup_duration_seconds",
    "From the backup Job's start to its end, for Backups that ran a Job.",
    ["namespace", "engine", "result"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
RESTORE_DURATION: Final = Histogram(
    "lifeboat_restore_duration_seconds",
    "From the restore Job's start to its end, for Restores that ran a Job (dry runs included).",
    ["namespace", "engine", "result", "dry_run"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
BACKUP_BYTES: Final = Histogram(
    "lifeboat_backup_artifact_bytes",
    "Size of each Completed backup's stored (compressed) artifact; _sum is the bytes stored.",
    ["namespace", "engine"],
    buckets=BYTE_BUCKETS,
    registry=REGISTRY,
)
LAST_BACKUP_SUCCESS: Final = Gauge(
    "lifeboat_backup_last_success_timestamp_seconds",
    "Unix time the newest Completed Backup of this database completed.",
    list(DATABASE_LABELS),
    registry=REGISTRY,
)
LAST_BACKUP_SUCCESS_BYTES: Final = Gauge(
    "lifeboat_backup_last_success_artifact_bytes",
    "Size of the artifact of the newest Completed Backup of this database.",
    list(DATABASE_LABELS),
    registry=REGISTRY,
)
LAST_BACKUP_FAILURE: Final = Gauge(
    "lifeboat_backup_last_failure_timestamp_seconds",
    "Unix time the newest Failed Backup of this database failed, with its reason (one series "
    "per database: the newest failure's reason).",
    [*DATABASE_LABELS, "reason"],
    registry=REGISTRY,
)
LAST_RESTORE_SUCCESS: Final = Gauge(
    "lifeboat_restore_last_success_timestamp_seconds",
    "Unix time the newest Completed Restore (not a dry run) into this database completed.",
    list(DATABASE_LABELS),
    registry=REGISTRY,
)
LAST_RESTORE_FAILURE: Final = Gauge(
    "lifeboat_restore_last_failure_timestamp_seconds",
    "Unix time the newest Failed Restore (not a dry run, not refused as AlreadyRestored) into "
    "this database failed, with its reason (one series per database).",
    [*DATABASE_LABELS, "reason"],
    registry=REGISTRY,
)
DRILLS: Final = Counter(
    "lifeboat_drills",
    "Restore drills that ended, by result (Completed or Failed) and reason (DrillPassed, or why "
    "they failed: DrillCheckFailed, RestoreFailed, VerificationFailed...).",
    [*DATABASE_LABELS, "result", "reason"],
    registry=REGISTRY,
)
DRILL_RESTORE_DURATION: Final = Histogram(
    "lifeboat_drill_restore_duration_seconds",
    "How long each drill's restore took, as the worker measured it (manifest to verified "
    "commit): the recovery time the backup needs. Drills whose restore did not finish have none.",
    ["namespace", "engine", "result"],
    buckets=DURATION_BUCKETS,
    registry=REGISTRY,
)
LAST_VERIFIED: Final = Gauge(
    "lifeboat_backup_last_verified_timestamp_seconds",
    "Unix time the newest Backup of this database that a restore drill proved restorable "
    "completed (when the backup was taken, not when the drill ran).",
    list(DATABASE_LABELS),
    registry=REGISTRY,
)
LAST_DRILL_FAILURE: Final = Gauge(
    "lifeboat_drill_last_failure_timestamp_seconds",
    "Unix time the newest failed restore drill of a Backup of this database ended, with its "
    "reason (one series per database).",
    [*DATABASE_LABELS, "reason"],
    registry=REGISTRY,
)
RECONCILE_ERRORS: Final = Counter(
    "lifeboat_reconcile_errors",
    "Handler runs that ended in an unexpected error (kopf retries them), by kind and error type.",
    ["kind", "error"],
    registry=REGISTRY,
)
SLOTS_FIRED: Final = Counter(
    "lifeboat_schedule_slots_fired",
    "Slots of a BackupSchedule for which its Backup was created.",
    ["namespace", "schedule"],
    registry=REGISTRY,
)
SLOTS_SKIPPED: Final = Counter(
    "lifeboat_schedule_slots_skipped",
    "Slots of a BackupSchedule skipped, by reason (Suspended, BackupStillRunning, "
    "MissedStartingDeadline).",
    ["namespace", "schedule", "reason"],
    registry=REGISTRY,
)
TRIGGERS: Final = Counter(
    "lifeboat_schedule_triggers",
    "Backups created on request by a BackupSchedule's lifeboat.dev/trigger annotation.",
    ["namespace", "schedule"],
    registry=REGISTRY,
)
PRUNED: Final = Counter(
    "lifeboat_retention_pruned",
    "Backups a BackupSchedule's retention deleted, by the pruned Backup's outcome "
    "(Succeeded or Failed).",
    ["namespace", "schedule", "outcome"],
    registry=REGISTRY,
)
STORE_CHECKS: Final = Counter(
    "lifeboat_store_checks",
    "Reachability checks of BackupStores that ended, by result (Reachable or the reason why not).",
    ["namespace", "store", "reason"],
    registry=REGISTRY,
)
STORE_READY: Final = Gauge(
    "lifeboat_store_ready",
    "1 when the BackupStore's last check reached its storage, 0 when it did not.",
    ["namespace", "store"],
    registry=REGISTRY,
)
LEADER: Final = Gauge(
    "lifeboat_leader",
    "1 while this operator process acts (it holds the leader Lease, or runs without leader "
    "election), 0 while it stands by. Summed over the operator's Pods it should be exactly 1.",
    registry=REGISTRY,
)
LEADER.set(1)


# -- label values -----------------------------------------------------------------------------


def _label(value: object) -> str:
    return str(value or "")[:_LABEL_LIMIT]


def reason_label(reason: object) -> str:
    """A CamelCase reason as written in status; anything else (never expected) is Unknown, so a
    label can never carry free text."""
    text = str(reason or "")
    return text if _REASON.match(text) else "Unknown"


def database_identity(database: Object | None) -> tuple[str, str]:
    """(engine, database) labels of a spec's database: `host:port/name` for a server (the port
    defaulted as the Job defaults it), `claim/path` for a SQLite file. Neither user nor password
    appear, whatever the spec holds."""
    database = database or {}
    engine = _label(database.get("engine"))
    if engine == "sqlite":
        identity = f"{database.get('persistentVolumeClaim') or ''}/{database.get('path') or ''}"
    else:
        port = database.get("port") or DEFAULT_PORTS.get(engine, "")
        identity = f"{database.get('host') or ''}:{port}/{database.get('name') or ''}"
    return engine, _label(identity)


def _database_of(kind: str, obj: Object) -> tuple[str, str]:
    """A Backup's database; a Restore's target (spec.target), else (a restore in place into its
    Backup's database, which the Restore does not spell out) the engine and name the controller
    recorded in its status; a RestoreDrill's Backup's database, as the controller recorded it
    (status.sourceDatabase: the drill's throwaway database is not the database it proves)."""
    spec = obj.get("spec") or {}
    if kind == DRILL_KIND:
        status = obj.get("status") or {}
        return _label(status.get("engine")), _label(status.get("sourceDatabase"))
    if kind == BACKUP_KIND or spec.get("target"):
        return database_identity(spec.get("database") if kind == BACKUP_KIND else spec["target"])
    status = obj.get("status") or {}
    return _label(status.get("engine")), _label(status.get("database"))


def _seconds(value: object) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


# -- gauges that keep the newest value --------------------------------------------------------


class _Newest:
    """A gauge per database holding the newest time seen (an older one never overwrites it),
    and, for failures, only the newest failure's reason as a label."""

    def __init__(self, gauge: Gauge, *, with_reason: bool = False) -> None:
        self._gauge = gauge
        self._with_reason = with_reason
        self._seen: dict[tuple[str, ...], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def record(self, key: tuple[str, ...], when: float, reason: str = "") -> bool:
        """True when `when` is the newest for `key` (the gauge now says it)."""
        with self._lock:
            previous = self._seen.get(key)
            if previous is not None and previous[0] >= when:
                return False
            if previous is not None and self._with_reason and previous[1] != reason:
                self._gauge.remove(*key, previous[1])
            self._seen[key] = (when, reason)
            labels = (*key, reason) if self._with_reason else key
            self._gauge.labels(*labels).set(when)
            return True


_LAST = {
    (BACKUP_KIND, True): _Newest(LAST_BACKUP_SUCCESS),
    (BACKUP_KIND, False): _Newest(LAST_BACKUP_FAILURE, with_reason=True),
    (RESTORE_KIND, True): _Newest(LAST_RESTORE_SUCCESS),
    (RESTORE_KIND, False): _Newest(LAST_RESTORE_FAILURE, with_reason=True),
    (DRILL_KIND, True): _Newest(LAST_VERIFIED),
    (DRILL_KIND, False): _Newest(LAST_DRILL_FAILURE, with_reason=True),
}


def _record_last(kind: str, obj: Object, status: Object) -> None:
    """The last-success/last-failure gauges for one finished Backup or Restore."""
    phase, reason = status.get("phase"), reason_label(status.get("reason"))
    when = _seconds(status.get("completionTime"))
    if kind == DRILL_KIND and phase == Phase.COMPLETED.value:
        when = _seconds(status.get("backupCompletionTime"))  # what the drill proved: the backup
    if when is None or phase not in (Phase.COMPLETED.value, Phase.FAILED.value):
        return
    if kind == RESTORE_KIND and (
        (obj.get("spec") or {}).get("dryRun") or reason == ALREADY_RESTORED
    ):
        return  # nothing was restored, nothing failed to restore (AlreadyRestored: refused)
    namespace = _label(obj["metadata"].get("namespace"))
    key = (namespace, *_database_of(kind, obj))
    succeeded = phase == Phase.COMPLETED.value
    newest = _LAST[(kind, succeeded)].record(key, when, "" if succeeded else reason)
    size = (status.get("artifact") or {}).get("size")
    if kind == BACKUP_KIND and succeeded and newest and size is not None:
        LAST_BACKUP_SUCCESS_BYTES.labels(*key).set(size)


# -- recording: Backups and Restores ----------------------------------------------------------


def operation_finished(
    kind: str,
    obj: Object,
    status: Object,
    *,
    job_start: str | None,
    job_end: str | None,
) -> None:
    """A Backup or Restore reached Completed or Failed just now: `status` is what the controller
    wrote (merged over what it read: the worker's artifact is there). Called once, where the
    terminal phase is written; `job_start`/`job_end` are the Job's times (end: now when the Job
    did not say, as for a failed Job)."""
    phase = str(status.get("phase"))
    reason = reason_label(status.get("reason"))
    namespace = _label(obj["metadata"].get("namespace"))
    engine, database = _database_of(kind, obj)
    started, ended = _seconds(job_start), _seconds(job_end or status.get("completionTime"))
    duration = None if started is None or ended is None else max(0.0, ended - started)
    if kind == BACKUP_KIND:
        BACKUPS.labels(namespace, engine, database, phase, reason).inc()
        if duration is not None:
            BACKUP_DURATION.labels(namespace, engine, phase).observe(duration)
        size = (status.get("artifact") or {}).get("size")
        if phase == Phase.COMPLETED.value and size is not None:
            BACKUP_BYTES.labels(namespace, engine).observe(size)
    elif kind == DRILL_KIND:
        DRILLS.labels(namespace, engine, database, phase, reason).inc()
        restore_seconds = (status.get("report") or {}).get("restoreSeconds")
        if restore_seconds is not None:
            DRILL_RESTORE_DURATION.labels(namespace, engine, phase).observe(float(restore_seconds))
    else:
        dry_run = "true" if (obj.get("spec") or {}).get("dryRun") else "false"
        RESTORES.labels(namespace, engine, database, phase, reason, dry_run).inc()
        if duration is not None:
            RESTORE_DURATION.labels(namespace, engine, phase, dry_run).observe(duration)
    _record_last(kind, obj, status)


def operation_seen_finished(kind: str, obj: Object) -> None:
    """A finished Backup or Restore was read (at operator start, or on a later event): seeds the
    last-success/last-failure gauges after a restart. Counters are not replayed."""
    _record_last(kind, obj, obj.get("status") or {})


class _InFlight(Collector):
    """Backups and Restores whose Job exists and has not ended, per kind and namespace."""

    def __init__(self) -> None:
        self._jobs: dict[tuple[str, str, str], bool] = {}
        self._lock = threading.Lock()

    def track(self, kind: str, namespace: str, name: str, in_flight: bool) -> None:
        with self._lock:
            self._jobs[(kind.lower(), namespace, name)] = in_flight

    def forget_all(self) -> None:
        with self._lock:
            self._jobs.clear()

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "lifeboat_jobs_in_flight",
            "Backups and Restores whose Job has been created and has not ended yet.",
            labels=["kind", "namespace"],
        )
        with self._lock:
            counts: dict[tuple[str, str], int] = {}
            for (kind, namespace, _), in_flight in self._jobs.items():
                counts[(kind, namespace)] = counts.get((kind, namespace), 0) + int(in_flight)
        for (kind, namespace), count in sorted(counts.items()):
            family.add_metric([kind, namespace], count)
        yield family


IN_FLIGHT: Final = _InFlight()
REGISTRY.register(IN_FLIGHT)


def job_in_flight(kind: str, namespace: str, name: str, in_flight: bool) -> None:
    """Whether this Backup's or Restore's Job is running now (False once it ended or is gone)."""
    IN_FLIGHT.track(kind, namespace, name, in_flight)


def operator_started() -> None:
    """An operator starts knowing of no Job in flight: kopf resumes every object at once, and
    each unfinished one says again whether its Job runs."""
    IN_FLIGHT.forget_all()


def leader_changed(*, leader: bool) -> None:
    """This process became the leader (it acts) or stands by / lost the lead."""
    LEADER.set(1 if leader else 0)


# -- recording: errors, schedules, stores -----------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def counting_errors(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Wrap a handler: an unexpected exception is counted, then re-raised for kopf to retry.
    kopf.TemporaryError is Lifeboat's own "not yet, retry later" (a cleanup Job still running),
    not an error."""

    def decorate(handler: Callable[P, R]) -> Callable[P, R]:
        @wraps(handler)
        def counted(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return handler(*args, **kwargs)
            except kopf.TemporaryError:
                raise
            except Exception as exc:
                RECONCILE_ERRORS.labels(kind.lower(), type(exc).__name__).inc()
                raise

        return counted

    return decorate


def slot_fired(namespace: str, schedule: str) -> None:
    SLOTS_FIRED.labels(_label(namespace), _label(schedule)).inc()


def slot_skipped(namespace: str, schedule: str, reason: str) -> None:
    SLOTS_SKIPPED.labels(_label(namespace), _label(schedule), reason_label(reason)).inc()


def trigger_fired(namespace: str, schedule: str) -> None:
    TRIGGERS.labels(_label(namespace), _label(schedule)).inc()


def backup_pruned(namespace: str, schedule: str, outcome: str) -> None:
    PRUNED.labels(_label(namespace), _label(schedule), reason_label(outcome)).inc()


def store_checked(namespace: str, store: str, *, reachable: bool, reason: str) -> None:
    """A store's check ended (or its spec was found invalid): count it, set Ready."""
    STORE_CHECKS.labels(_label(namespace), _label(store), reason_label(reason)).inc()
    STORE_READY.labels(_label(namespace), _label(store)).set(1 if reachable else 0)


def store_seen(namespace: str, store: str, status: Object) -> None:
    """A store's status as read: Ready True or False sets the gauge (after an operator restart
    it is known before the next check); Unknown (the first check runs) leaves it as it is."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") in ("True", "False"):
            value = 1 if condition["status"] == "True" else 0
            STORE_READY.labels(_label(namespace), _label(store)).set(value)


def store_deleted(namespace: str, store: str) -> None:
    """A deleted store is no longer reachable or not: its series goes (and its alert with it)."""
    with contextlib.suppress(KeyError):
        STORE_READY.remove(_label(namespace), _label(store))


# -- the endpoint -----------------------------------------------------------------------------


@dataclass
class MetricsServer:
    """The /metrics endpoint, served from a thread of its own."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def parse_address(address: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (every interface) or `PORT`; ValueError with the expected form."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - a Pod serves its metrics on all interfaces
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{address!r} is not HOST:PORT, :PORT or PORT (for example :8000)")
    return host, int(port)


def serve(address: str, registry: CollectorRegistry = REGISTRY) -> MetricsServer:
    """Serve `registry` at http://ADDRESS/metrics (any path, as prometheus_client does)."""
    host, port = parse_address(address)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)


def metric_names(registry: CollectorRegistry = REGISTRY) -> Iterable[str]:
    """Every sample name the endpoint can serve (the families' names and their suffixes), for
    the tests that check alert rules and dashboards name only what exists."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return sorted(names)


__all__ = [
    "REGISTRY",
    "MetricsServer",
    "backup_pruned",
    "counting_errors",
    "database_identity",
    "job_in_flight",
    "leader_changed",
    "metric_names",
    "operation_finished",
    "operation_seen_finished",
    "operator_started",
    "parse_address",
    "reason_label",
    "serve",
    "slot_fired",
    "slot_skipped",
    "store_checked",
    "store_deleted",
    "store_seen",
    "trigger_fired",
]
