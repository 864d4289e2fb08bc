"""The real operator against the test API server, with real Jobs (local worker processes).

`cluster` is the whole stage: the API server loaded with crds/, the Job runner playing the Job
controller and kubelet, and helpers to create Secrets and resources and to wait for phases.
`lifeboat_operator` starts the real operator (our own `register`, our own kubeconfig login) and
can be stopped and started again to play an operator restart.

The same scenarios can run against a real cluster (kind/k3d): see docs/operator.md.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lifeboat.builders.jobs import JobDefaults
from lifeboat.builders.naming import LABEL_MANAGED_BY, MANAGED_BY
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.operator import register
from tests.support.kube.jobs import JobRunner
from tests.support.kube.operators import run_operator
from tests.support.kube.server import KubeServer

GROUP, VERSION = "lifeboat.dev", "v1alpha1"
NAMESPACE = "default"
TEST_IMAGE = "lifeboat:test"


@dataclass
class Cluster:
    api: client.ApiClient
    server: KubeServer
    runner: JobRunner
    wait_for: Callable[..., Any]
    namespace: str = NAMESPACE
    custom: client.CustomObjectsApi = field(init=False)
    core: client.CoreV1Api = field(init=False)
    batch: client.BatchV1Api = field(init=False)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)
        self.batch = client.BatchV1Api(self.api)

    def secret(self, name: str, data: dict[str, str]) -> None:
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": encoded}
        self.core.create_namespaced_secret(self.namespace, body)

    def create(self, plural: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        kind = {"backups": "Backup", "restores": "Restore"}[plural]
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": spec,
        }
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, body
        )
        return created

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, plural, name
            )
            return found
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def status(self, plural: str, name: str) -> dict[str, Any]:
        obj = self.get(plural, name) or {}
        status: dict[str, Any] = obj.get("status") or {}
        return status

    def delete(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def wait_phase(
        self, plural: str, name: str, *phases: str, timeout: float = 60
    ) -> dict[str, Any]:
        self.wait_for(lambda: self.status(plural, name).get("phase") in phases, timeout=timeout)
        return self.status(plural, name)

    def jobs(self) -> list[dict[str, Any]]:
        listed = self.batch.list_namespaced_job(
            self.namespace, label_selector=f"{LABEL_MANAGED_BY}={MANAGED_BY}"
        )
        return [self.api.sanitize_for_serialization(job) for job in listed.items]

    def events_for(self, name: str) -> list[tuple[str, str]]:
        events = self.core.list_namespaced_event(self.namespace).items
        return [(e.reason, e.message or "") for e in events if e.involved_object.name == name]


@pytest.fixture
def cluster(
    kube_server: KubeServer,
    kube_api: client.ApiClient,
    job_runner: JobRunner,
    wait_for: Callable[..., Any],
) -> Cluster:
    return Cluster(api=kube_api, server=kube_server, runner=job_runner, wait_for=wait_for)


def test_config(kubeconfig: Path, **changes: Any) -> OperatorConfig:
    base: dict[str, Any] = {
        "kubeconfig": str(kubeconfig),
        "all_namespaces": True,
        "job_defaults": JobDefaults(image=TEST_IMAGE),
        "resync_seconds": 0.5,
        "stuck_pod_seconds": 1.0,
        "backup_wait_seconds": 2.0,
        "cleanup_retry_seconds": 0.5,
        "error_backoffs": (0.1, 0.2, 0.5),
        "handler_backoff_seconds": 0.2,
    }
    base.update(changes)
    return OperatorConfig(**base)


class OperatorControl:
    """Start and stop the real operator; each start is a new process-like instance."""

    def __init__(self, server: KubeServer, kubeconfig: Path) -> None:
        self._server = server
        self._kubeconfig = kubeconfig
        self._stack = contextlib.ExitStack()
        self.running = False

    def start(self, **changes: Any) -> None:
        registry = kopf.OperatorRegistry()
        register(registry, test_config(self._kubeconfig, **changes))
        self._stack.enter_context(run_operator(registry, self._server, login=False))
        self.running = True

    def stop(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self.running = False


@pytest.fixture
def lifeboat_operator(kube_server: KubeServer, kubeconfig: Path) -> Iterator[OperatorControl]:
    control = OperatorControl(kube_server, kubeconfig)
    control.start()
    try:
        yield control
    finally:
        control.stop()


@dataclass
class SqliteShop:
    """A SQLite database on a 'PersistentVolumeClaim' and a backup volume, for fast Jobs."""

    db_path: Path
    backups: Path

    def spec(self, **extra: Any) -> dict[str, Any]:
        return {
            "database": {
                "engine": "sqlite",
                "persistentVolumeClaim": "app-data",
                "path": "shop.db",
            },
            "storage": {"volume": {"persistentVolumeClaim": "backups", "path": "nightly"}},
            **extra,
        }


@pytest.fixture
def sqlite_shop(cluster: Cluster, tmp_path: Path) -> SqliteShop:
    from lifeboat.cli.demo import create_shop

    data, backups = tmp_path / "app-data", tmp_path / "backups"
    data.mkdir()
    backups.mkdir()
    create_shop(data / "shop.db", orders=300)
    cluster.runner.volumes["app-data"] = data
    cluster.runner.volumes["backups"] = backups
    return SqliteShop(db_path=data / "shop.db", backups=backups)
