"""The kopf operator: handler registration (onto any registry) and `run`.

Handlers are thin: they name the resource and call a reconcile function that reads the world,
builds with pure builders and writes status. Registration takes a registry and a config, so tests
run the real operator with a fresh registry against a test API server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import kopf
from kubernetes import client
from kubernetes import config as kube_config

from lifeboat.api import (
    BACKUP_KIND,
    BACKUP_PLURAL,
    DRILL_KIND,
    DRILL_PLURAL,
    GROUP,
    RESTORE_KIND,
    RESTORE_PLURAL,
    SCHEDULE_KIND,
    SCHEDULE_PLURAL,
    STORE_KIND,
    STORE_PLURAL,
    VERSION,
)
from lifeboat.builders.backups import SCHEDULE_LABEL
from lifeboat.builders.naming import (
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    MANAGED_BY,
)
from lifeboat.controller import metrics
from lifeboat.controller.backup import clean_up_storage, reconcile_backup
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.drills import reconcile_drill, wake_drills_waiting_for
from lifeboat.controller.election import ElectionConfig, LeaderElector
from lifeboat.controller.readiness import Insights, serving_readiness, serving_standby_liveness
from lifeboat.controller.restore import (
    reconcile_restore,
    wake_restores_waiting_for,
    wake_restores_waiting_for_schedule,
)
from lifeboat.controller.schedule import (
    PhaseMemory,
    owning_schedule,
    reconcile_schedule,
    release_backups,
)
from lifeboat.controller.schedule_decisions import pending_trigger
from lifeboat.controller.schedule_drills import schedule_of_label
from lifeboat.controller.store import reconcile_store, wake_waiting_for_store
from lifeboat.controller.transitions import TERMINAL_PHASES
from lifeboat.kube.client import in_cluster, kubeconfig_path, make_api_client

log = logging.getLogger(__name__)
ANNOTATION_PREFIX = "lifeboat.dev"
FINALIZER = "lifeboat.dev/finalizer"


def _unfinished(status: Any, **_: Any) -> bool:
    return (status or {}).get("phase") not in TERMINAL_PHASES


def connection_info(config: OperatorConfig) -> kopf.ConnectionInfo:
    """kopf's credentials, from the same source the `kubernetes` client uses (explicitly)."""
    configuration = client.Configuration()
    if config.kubeconfig is None and in_cluster():
        kube_config.load_incluster_config(client_configuration=configuration)
    else:
        kube_config.load_kube_config(
            config_file=kubeconfig_path(config.kubeconfig), client_configuration=configuration
        )
    token = (configuration.api_key or {}).get("authorization", "")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        token=token.removeprefix("Bearer ").strip() or None,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class _ApiHolder:
    """One sync ApiClient for the handlers, made on first use (after login is possible)."""

    def __init__(self, config: OperatorConfig) -> None:
        self._config = config
        self._api: client.ApiClient | None = None
        self._lock = threading.Lock()

    def __call__(self) -> client.ApiClient:
        with self._lock:
            if self._api is None:
                self._api = make_api_client(self._config.kubeconfig)
            return self._api


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    """Register every Lifeboat handler onto `registry`."""
    api = _ApiHolder(config)
    backoff = config.handler_backoff_seconds

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix=ANNOTATION_PREFIX
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
        )
        settings.persistence.finalizer = FINALIZER
        settings.networking.error_backoffs = list(config.error_backoffs)
        settings.posting.level = logging.INFO
        metrics.operator_started()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(config)

    if config.metrics_address is not None:
        _register_metrics_endpoint(registry, config.metrics_address)

    def reconcile_backup_then_restores(
        api: client.ApiClient, namespace: str, name: str, config: OperatorConfig
    ) -> None:
        phase = reconcile_backup(api, namespace, name, config)
        if phase is not None and phase.value in TERMINAL_PHASES:
            wake_restores_waiting_for(api, namespace, name, config)
            wake_drills_waiting_for(api, namespace, name, config)

    reconcilers: dict[str, Reconcile] = {
        BACKUP_KIND.lower(): reconcile_backup_then_restores,
        RESTORE_KIND.lower(): reconcile_restore,
        STORE_KIND.lower(): reconcile_store,
        DRILL_KIND.lower(): reconcile_drill,
    }
    for kind, plural in (
        (BACKUP_KIND.lower(), BACKUP_PLURAL),
        (RESTORE_KIND.lower(), RESTORE_PLURAL),
        (DRILL_KIND.lower(), DRILL_PLURAL),
    ):
        _register_reconcile(registry, config, api, kind, plural, reconcilers[kind])
    _register_store(registry, config, api)
    _register_schedule(registry, config, api)

    @kopf.on.delete(
        GROUP, VERSION, BACKUP_PLURAL, id="backup-cleanup", registry=registry, backoff=backoff
    )
    @metrics.counting_errors(BACKUP_KIND)
    def backup_cleanup(body: kopf.Body, **_: Any) -> None:
        clean_up_storage(api(), dict(body), config)

    @kopf.on.event(
        "batch",
        "v1",
        "jobs",
        id="job-watch",
        labels={LABEL_MANAGED_BY: MANAGED_BY},
        registry=registry,
    )
    @metrics.counting_errors("Job")
    def job_changed(labels: kopf.Labels, meta: kopf.Meta, namespace: str | None, **_: Any) -> None:
        """A Job moved: reconcile its owner now, rather than at the next resync."""
        kind = labels.get(LABEL_OWNER_KIND, "")
        owner = job_owner_name(kind, dict(labels), list(meta.get("ownerReferences") or []))
        reconcile = reconcilers.get(kind)
        if owner and reconcile is not None:
            reconcile(api(), namespace or "", owner, config)


Reconcile = Callable[[client.ApiClient, str, str, OperatorConfig], None]


def job_owner_name(kind: str, labels: dict[str, str], owners: list[Any]) -> str | None:
    """The full name of the object a Job works for: its controller ownerReference's. The
    owner-name label is the fallback (a cleanup Job has no owner): a label value stops at 63
    characters, where object names go on to 253."""
    for owner in owners:
        if owner.get("controller") and str(owner.get("kind", "")).lower() == kind:
            return str(owner.get("name") or "") or None
    return labels.get(LABEL_OWNER_NAME) or None


def _register_metrics_endpoint(registry: kopf.OperatorRegistry, address: str) -> None:
    """Serve /metrics at `address` while the operator runs (from its start-up to its cleanup)."""
    servers: list[metrics.MetricsServer] = []

    @kopf.on.startup(id="metrics-endpoint", registry=registry)
    def serve_metrics(**_: Any) -> None:
        server = metrics.serve(address)
        servers.append(server)
        log.info("serving Prometheus metrics at http://%s/metrics", address)

    @kopf.on.cleanup(id="metrics-endpoint-stop", registry=registry)
    def stop_metrics(**_: Any) -> None:
        while servers:
            servers.pop().close()


def _register_reconcile(
    registry: kopf.OperatorRegistry,
    config: OperatorConfig,
    api: _ApiHolder,
    kind: str,
    plural: str,
    reconcile: Reconcile,
) -> None:
    """Backups and Restores: run on create, on a spec edit (a finished object then only
    observes the new generation), on operator start, and on a resync timer while unfinished."""
    _on_change_and_timer(
        registry,
        config,
        plural,
        kind,
        on_change=lambda namespace, name: reconcile(api(), namespace, name, config),
        timer_id="resync",
        interval=config.resync_seconds,
        when=_unfinished,
    )


def _on_change_and_timer(
    registry: kopf.OperatorRegistry,
    config: OperatorConfig,
    plural: str,
    kind: str,
    *,
    on_change: Callable[[str, str], None],
    timer_id: str,
    interval: float,
    on_tick: Callable[[str, str], None] | None = None,
    when: Callable[..., bool] | None = None,
) -> None:
    """The level-triggered shape every kind shares: `on_change` when an object is created,
    edited or found at operator start; `on_tick` (default: `on_change`) every `interval`."""
    backoff = config.handler_backoff_seconds
    on_change = metrics.counting_errors(kind)(on_change)
    tick = metrics.counting_errors(kind)(on_tick) if on_tick is not None else on_change

    @kopf.on.create(GROUP, VERSION, plural, id=f"{kind}-start", registry=registry, backoff=backoff)
    @kopf.on.update(GROUP, VERSION, plural, id=f"{kind}-update", registry=registry, backoff=backoff)
    @kopf.on.resume(GROUP, VERSION, plural, id=f"{kind}-resume", registry=registry, backoff=backoff)
    def changed(namespace: str | None, name: str, **_: Any) -> None:
        on_change(namespace or "", name)

    @kopf.timer(
        GROUP, VERSION, plural, id=f"{kind}-{timer_id}", interval=interval, when=when,
        registry=registry,
    )  # fmt: skip
    def timer(namespace: str | None, name: str, **_: Any) -> None:
        tick(namespace or "", name)


def _register_store(
    registry: kopf.OperatorRegistry, config: OperatorConfig, api: _ApiHolder
) -> None:
    """BackupStores: checked when created, at once when their spec changes, on operator start,
    then every `store_check_seconds` (the timer only asks whether a check is due, and follows
    the one in flight); Backups and Restores waiting for a store go as soon as it appears."""

    def store_changed(namespace: str, name: str) -> None:
        reconcile_store(api(), namespace, name, config)
        wake_waiting_for_store(api(), namespace, name, config)

    _on_change_and_timer(
        registry,
        config,
        STORE_PLURAL,
        STORE_KIND.lower(),
        on_change=store_changed,
        on_tick=lambda namespace, name: reconcile_store(api(), namespace, name, config),
        timer_id="check",
        interval=min(config.resync_seconds, config.store_check_seconds),
    )

    @kopf.on.event(GROUP, VERSION, STORE_PLURAL, id="backupstore-deleted", registry=registry)
    def store_deleted(type: str | None, namespace: str | None, name: str, **_: Any) -> None:
        """A deleted store's Ready series goes, so no alert fires for a store that is gone."""
        if type == "DELETED":
            metrics.store_deleted(namespace or "", name)


def _register_schedule(
    registry: kopf.OperatorRegistry, config: OperatorConfig, api: _ApiHolder
) -> None:
    """BackupSchedules: reconciled when created, edited or found at start-up, every
    `schedule_check_seconds` (a slot fires at most that late), at once when the trigger
    annotation gets a new value (kopf's diff ignores lifeboat.dev/* annotations, so a filtered
    event handler sees it), and when one of their Backups changes phase. On deletion their
    Backups are released (kept), unless deleted in the foreground."""
    backoff = config.handler_backoff_seconds
    kind = SCHEDULE_KIND.lower()
    _on_change_and_timer(
        registry,
        config,
        SCHEDULE_PLURAL,
        kind,
        on_change=lambda namespace, name: reconcile_schedule(api(), namespace, name, config),
        timer_id="tick",
        interval=config.schedule_check_seconds,
    )

    def trigger_pending(annotations: kopf.Annotations, status: kopf.Status, **_: Any) -> bool:
        return pending_trigger(dict(annotations), dict(status)) is not None

    @kopf.on.event(
        GROUP,
        VERSION,
        SCHEDULE_PLURAL,
        id=f"{kind}-trigger",
        when=trigger_pending,
        registry=registry,
    )
    @metrics.counting_errors(kind)
    def schedule_triggered(namespace: str | None, name: str, **_: Any) -> None:
        reconcile_schedule(api(), namespace or "", name, config)

    @kopf.on.delete(
        GROUP, VERSION, SCHEDULE_PLURAL, id=f"{kind}-release", registry=registry, backoff=backoff
    )
    @metrics.counting_errors(kind)
    def schedule_deleted(body: kopf.Body, **_: Any) -> None:
        release_backups(api(), dict(body))

    phases = PhaseMemory()

    @kopf.on.event(
        GROUP,
        VERSION,
        BACKUP_PLURAL,
        id="scheduled-backup-watch",
        labels={SCHEDULE_LABEL: kopf.PRESENT},
        registry=registry,
    )
    @metrics.counting_errors(kind)
    def scheduled_backup_changed(
        type: str | None, body: kopf.Body, namespace: str | None, uid: str | None, **_: Any
    ) -> None:
        """A scheduled Backup changed phase: its schedule's status, retention and waiting
        Restores move now, not at the next tick."""
        if type == "DELETED":
            phases.forget(uid or "")
            return
        phase = (body.get("status") or {}).get("phase")
        if not phases.changed(uid or "", phase):
            return
        schedule = owning_schedule(dict(body))
        if schedule is not None:
            reconcile_schedule(api(), namespace or "", schedule, config)
        if phase in TERMINAL_PHASES:
            label = body.get("metadata", {}).get("labels", {}).get(SCHEDULE_LABEL, "")
            wake_restores_waiting_for_schedule(api(), namespace or "", label, config)

    drill_phases = PhaseMemory()

    @kopf.on.event(
        GROUP,
        VERSION,
        DRILL_PLURAL,
        id="scheduled-drill-watch",
        labels={SCHEDULE_LABEL: kopf.PRESENT},
        registry=registry,
    )
    @metrics.counting_errors(kind)
    def scheduled_drill_changed(
        type: str | None, body: kopf.Body, namespace: str | None, uid: str | None, **_: Any
    ) -> None:
        """A schedule's RestoreDrill ended: the schedule's Verified condition and
        lastVerifiedTime move now, not at the next tick."""
        if type == "DELETED":
            drill_phases.forget(uid or "")
            return
        phase = (body.get("status") or {}).get("phase")
        if not drill_phases.changed(uid or "", phase) or phase not in TERMINAL_PHASES:
            return
        label = body.get("metadata", {}).get("labels", {}).get(SCHEDULE_LABEL, "")
        schedule = schedule_of_label(api(), namespace or "", label)
        if schedule is not None:
            reconcile_schedule(api(), namespace or "", schedule, config)


def run(
    config: OperatorConfig,
    *,
    liveness_endpoint: str | None = None,
    readiness_endpoint: str | None = None,
    election: ElectionConfig | None = None,
) -> None:
    """Run the operator until interrupted, with kopf's liveness probe and our readiness probe
    (see `lifeboat.controller.readiness`) when their endpoints are given.

    With `election`, the process first stands by until it holds the leader Lease (see
    `lifeboat.controller.election`): no kopf operator, so no handler, runs before that. Metrics
    and the probes are served meanwhile. On SIGTERM/SIGINT the leader stops kopf, waits for the
    handlers in flight, then releases the Lease so a standby takes over at once."""
    if election is None:
        registry = kopf.OperatorRegistry()
        register(registry, config)
        asyncio.run(_operate(registry, config, liveness_endpoint, readiness_endpoint))
        return
    metrics_server = None
    if config.metrics_address is not None:
        metrics_server = metrics.serve(config.metrics_address)
        log.info("serving Prometheus metrics at http://%s/metrics", config.metrics_address)
    try:
        registry = kopf.OperatorRegistry()
        register(registry, dataclasses.replace(config, metrics_address=None))
        executors = _remember_executor(registry)
        elector = LeaderElector(_ApiHolder(config), election)
        metrics.leader_changed(leader=False)
        asyncio.run(
            _operate_when_elected(
                registry, config, elector, executors, liveness_endpoint, readiness_endpoint
            )
        )
    finally:
        if metrics_server is not None:
            metrics_server.close()


async def _operate(
    registry: kopf.OperatorRegistry,
    config: OperatorConfig,
    liveness_endpoint: str | None,
    readiness_endpoint: str | None,
    leader: Callable[[], bool] | None = None,
) -> None:
    insights = Insights()
    async with serving_readiness(readiness_endpoint, insights, leader):
        await kopf.operator(
            registry=registry,
            clusterwide=config.all_namespaces,
            namespaces=list(config.namespaces),
            standalone=True,
            liveness_endpoint=liveness_endpoint,
            insights=insights,
        )


def _remember_executor(registry: kopf.OperatorRegistry) -> list[Executor]:
    """kopf's thread pool of sync handlers, once kopf starts: drained before the Lease goes."""
    executors: list[Executor] = []

    @kopf.on.startup(id="leader-handler-threads", registry=registry)
    async def remember(settings: kopf.OperatorSettings, **_: Any) -> None:
        executors.append(settings.execution.executor)

    return executors


async def _operate_when_elected(
    registry: kopf.OperatorRegistry,
    config: OperatorConfig,
    elector: LeaderElector,
    executors: list[Executor],
    liveness_endpoint: str | None,
    readiness_endpoint: str | None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)  # kopf installs its own once it runs
    async with (
        serving_readiness(readiness_endpoint, Insights(), lambda: elector.leader),
        serving_standby_liveness(liveness_endpoint),
    ):
        elected = await asyncio.to_thread(elector.acquire, stop)
    if not elected:
        log.info("stopped while standing by for the %s", elector.where)
        return
    elector.start_renewing()
    try:
        await _operate(
            registry, config, liveness_endpoint, readiness_endpoint, lambda: elector.leader
        )
    finally:
        for executor in executors:
            # Handlers already running finish before a standby may start the same work.
            await asyncio.to_thread(executor.shutdown, wait=True)
        await asyncio.to_thread(elector.stop_and_release)
