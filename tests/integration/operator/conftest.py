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
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from lifeboat.builders.jobs import JobDefaults
from lifeboat.builders.naming import LABEL_MANAGED_BY, MANAGED_BY
from lifeboat.controller.config import OperatorConfig
from lifeboat.controller.operator import register
from lifeboat.controller.tenancy import JobPolicy
from tests.support.e2e import E2E_SETTINGS
from tests.support.kube.operators import run_operator
from tests.support.kube.server import KubeServer

GROUP, VERSION = "lifeboat.dev", "v1alpha1"
NAMESPACE = "default"
TEST_IMAGE = E2E_SETTINGS.image or "lifeboat:test"
REPO = Path(__file__).resolve().parents[3]


class NoLocalRunner:
    """Stands in for the Job runner on a real cluster, where real Jobs run the real image:
    scenarios that need the runner's controls (holding Jobs, PVCs as local directories, fake
    images, counting process starts) are skipped there."""

    def __getattr__(self, name: str) -> Any:
        pytest.skip(f"needs the local Job runner ({name}): not available on a real cluster")


@dataclass
class Cluster:
    api: client.ApiClient
    server: KubeServer | None
    runner: Any  # JobRunner, or NoLocalRunner on a real cluster
    wait_for: Callable[..., Any]
    kubeconfig: Path
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
        kind = {
            "backups": "Backup",
            "restores": "Restore",
            "backupstores": "BackupStore",
            "backupschedules": "BackupSchedule",
            "restoredrills": "RestoreDrill",
        }[plural]
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
def cluster(request: pytest.FixtureRequest, wait_for: Callable[..., Any]) -> Iterator[Cluster]:
    """The test API server with the local Job runner; or, with LIFEBOAT_E2E_KUBECONFIG, a real
    cluster and a fresh namespace (with the worker's service account and RBAC) per test."""
    if not E2E_SETTINGS.enabled:
        yield Cluster(
            api=request.getfixturevalue("kube_api"),
            server=request.getfixturevalue("kube_server"),
            runner=request.getfixturevalue("job_runner"),
            wait_for=wait_for,
            kubeconfig=request.getfixturevalue("kubeconfig"),
        )
        return
    assert E2E_SETTINGS.kubeconfig is not None
    kubeconfig = Path(E2E_SETTINGS.kubeconfig)
    api = _api_from(kubeconfig)
    namespace = f"lifeboat-e2e-{uuid.uuid4().hex[:8]}"
    real = Cluster(
        api=api,
        server=None,
        runner=NoLocalRunner(),
        wait_for=wait_for,
        kubeconfig=kubeconfig,
        namespace=namespace,
    )
    _prepare_namespace(real)
    try:
        yield real
    finally:
        _tear_down_namespace(real)
        api.close()


def _api_from(kubeconfig: Path) -> client.ApiClient:
    from kubernetes import config

    return config.new_client_from_config(config_file=str(kubeconfig))


def _prepare_namespace(cluster: Cluster) -> None:
    ns = cluster.namespace
    cluster.core.create_namespace({"metadata": {"name": ns}})
    cluster.core.create_namespaced_service_account(ns, {"metadata": {"name": "lifeboat-worker"}})
    rules = yaml.safe_load((REPO / "charts/lifeboat/files/rbac/worker.yaml").read_text())
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rbac.create_namespaced_role(ns, {"metadata": {"name": "lifeboat-worker"}, "rules": rules})
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "lifeboat-worker"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "lifeboat-worker",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "lifeboat-worker", "namespace": ns}],
        },
    )


def _tear_down_namespace(cluster: Cluster) -> None:
    """Finalizers would keep the namespace terminating once no operator runs: drop them."""
    for plural in ("backups", "restores", "backupschedules", "restoredrills"):
        listed = cluster.custom.list_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, plural
        )
        for item in listed.get("items", []):
            with contextlib.suppress(ApiException):
                cluster.custom.patch_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    cluster.namespace,
                    plural,
                    item["metadata"]["name"],
                    {"metadata": {"finalizers": None}},
                )
    cluster.core.delete_namespace(cluster.namespace)


def test_config(kubeconfig: Path, **changes: Any) -> OperatorConfig:
    base: dict[str, Any] = {
        "kubeconfig": str(kubeconfig),
        "all_namespaces": True,
        "job_defaults": JobDefaults(image=TEST_IMAGE, image_pull_policy="IfNotPresent"),
        # The images scenarios give spec.job.image (an unpullable one, a stand-in worker); the
        # tenancy tests start the operator with their own allow-lists.
        "job_policy": JobPolicy(allowed_images=("registry.invalid/*", "lifeboat:*")),
        "resync_seconds": 0.5,
        "stuck_pod_seconds": 1.0,
        "unschedulable_seconds": 1.0,
        "volume_mount_seconds": 1.0,
        "backup_wait_seconds": 2.0,
        "store_wait_seconds": 2.0,
        "cleanup_retry_seconds": 0.5,
        "error_backoffs": (0.1, 0.2, 0.5),
        "handler_backoff_seconds": 0.2,
    }
    base.update(changes)
    return OperatorConfig(**base)


def operator_command(
    cluster: Cluster, *options: str, debug: bool = False, json_logs: bool = False
) -> list[str]:
    """`lifeboat operator` as the chart runs it, as a process against this cluster.

    For scenarios that need a real process: its logs, its exit code, SIGKILL."""
    return [
        sys.executable,
        "-m",
        "lifeboat",
        *(["--debug"] if debug else []),
        "operator",
        *(["--log-format", "json"] if json_logs else []),
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--namespace",
        cluster.namespace,
        "--worker-image",
        TEST_IMAGE,
        "--resync-seconds",
        "1",
        *options,
    ]


class OperatorControl:
    """Start and stop the real operator; each start is a new process-like instance."""

    def __init__(self, server: KubeServer | None, kubeconfig: Path) -> None:
        self._server = server
        self._kubeconfig = kubeconfig
        self._stack = contextlib.ExitStack()
        self.running = False

    def start(self, **changes: Any) -> None:
        registry = kopf.OperatorRegistry()
        register(registry, test_config(self._kubeconfig, **changes))
        # login=False: the operator logs in with its own @kopf.on.login, from the kubeconfig.
        self._stack.enter_context(run_operator(registry, self._server, login=False))  # type: ignore[arg-type]
        self.running = True

    def stop(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self.running = False


@pytest.fixture
def lifeboat_operator(cluster: Cluster) -> Iterator[OperatorControl]:
    control = OperatorControl(cluster.server, cluster.kubeconfig)
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
