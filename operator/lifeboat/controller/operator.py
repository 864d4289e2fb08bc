"""The kopf operator: handler registration (onto any registry) and `run`.

Handlers are thin: they name the resource and call a reconcile function that reads the world,
builds with pure builders and writes status. Registration takes a registry and a config, so tests
run the real operator with a fresh registry against a test API server.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import kopf
from kubernetes import client
from kubernetes import config as kube_config

from lifeboat.api import BACKUP_KIND, BACKUP_PLURAL, GROUP, RESTORE_KIND, RESTORE_PLURAL, VERSION
from lifeboat.builders.naming import (
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    MANAGED_BY,
)
from lifeboat.controller.backup import clean_up_storage, reconcile_backup
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.restore import reconcile_restore, wake_restores_waiting_for
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

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(config)

    def reconcile_backup_then_restores(
        api: client.ApiClient, namespace: str, name: str, config: OperatorConfig
    ) -> None:
        phase = reconcile_backup(api, namespace, name, config)
        if phase is not None and phase.value in TERMINAL_PHASES:
            wake_restores_waiting_for(api, namespace, name, config)

    reconcilers: dict[str, Reconcile] = {
        BACKUP_KIND.lower(): reconcile_backup_then_restores,
        RESTORE_KIND.lower(): reconcile_restore,
    }
    for kind, plural in (
        (BACKUP_KIND.lower(), BACKUP_PLURAL),
        (RESTORE_KIND.lower(), RESTORE_PLURAL),
    ):
        _register_reconcile(registry, config, api, kind, plural, reconcilers[kind])

    @kopf.on.delete(
        GROUP, VERSION, BACKUP_PLURAL, id="backup-cleanup", registry=registry, backoff=backoff
    )
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
    def job_changed(labels: kopf.Labels, namespace: str | None, **_: Any) -> None:
        """A Job moved: reconcile its owner now, rather than at the next resync."""
        owner = labels.get(LABEL_OWNER_NAME)
        reconcile = reconcilers.get(labels.get(LABEL_OWNER_KIND, ""))
        if owner and reconcile is not None:
            reconcile(api(), namespace or "", owner, config)


Reconcile = Callable[[client.ApiClient, str, str, OperatorConfig], None]


def _register_reconcile(
    registry: kopf.OperatorRegistry,
    config: OperatorConfig,
    api: _ApiHolder,
    kind: str,
    plural: str,
    reconcile: Reconcile,
) -> None:
    """One reconcile function, run on create, on a spec edit (a finished object then only
    observes the new generation), on operator start and on a resync timer."""
    backoff = config.handler_backoff_seconds

    @kopf.on.create(GROUP, VERSION, plural, id=f"{kind}-start", registry=registry, backoff=backoff)
    @kopf.on.update(GROUP, VERSION, plural, id=f"{kind}-update", registry=registry, backoff=backoff)
    @kopf.on.resume(GROUP, VERSION, plural, id=f"{kind}-resume", registry=registry, backoff=backoff)
    def start(namespace: str | None, name: str, **_: Any) -> None:
        reconcile(api(), namespace or "", name, config)

    @kopf.timer(
        GROUP,
        VERSION,
        plural,
        id=f"{kind}-resync",
        interval=config.resync_seconds,
        when=_unfinished,
        registry=registry,
    )
    def resync(namespace: str | None, name: str, **_: Any) -> None:
        reconcile(api(), namespace or "", name, config)


def run(config: OperatorConfig, *, liveness_endpoint: str | None = None) -> None:
    """Run the operator until interrupted."""
    registry = kopf.OperatorRegistry()
    register(registry, config)
    asyncio.run(
        kopf.operator(
            registry=registry,
            clusterwide=config.all_namespaces,
            namespaces=list(config.namespaces),
            standalone=True,
            liveness_endpoint=liveness_endpoint,
        )
    )
