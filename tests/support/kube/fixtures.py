"""Pytest fixtures for testing against the in-process Kubernetes API server.

Register with `pytest_plugins = ["tests.support.kube.fixtures"]` in the root conftest.

- `kube_crd_paths` (session): the CRD files/directories to serve; `<repo>/crds` by default.
  Override it in a conftest to serve other CRDs.
- `kube_server_session` (session): the running `KubeServer`.
- `kube_server`: the same server, reset to a clean state (namespaces and CRDs only) for the
  test; fails the test if the server had an internal error.
- `kubeconfig`: the path of a kubeconfig file for the server (kubectl, clients, workers).
- `kube_api`: a `kubernetes.client.ApiClient` configured explicitly from that kubeconfig.
- `job_runner`: the Job controller + kubelet stand-in, started for the test.
- `wait_for`: deadline-bounded polling, `wait_for(predicate, timeout=10)`.

An operator test, end to end (Backup → operator → Job → `lifeboat` worker → status)::

    from lifeboat.controller.config import OperatorConfig
    from lifeboat.controller.operator import register
    from tests.support.kube.operators import run_operator

    def test_backup_completes(kube_server, kubeconfig, kube_api, job_runner, wait_for, tmp_path):
        job_runner.volumes["db-pvc"] = tmp_path / "db"  # PVC claim -> local directory
        registry = kopf.OperatorRegistry()
        register(registry, OperatorConfig(kubeconfig=str(kubeconfig), all_namespaces=True,
                                          error_backoffs=(0.1,), handler_backoff_seconds=0.1))
        with run_operator(registry, kube_server):
            api = kubernetes.client.CustomObjectsApi(kube_api)
            api.create_namespaced_custom_object("lifeboat.dev", "v1alpha1", "default", "backups",
                                                backup_manifest)
            wait_for(lambda: get_backup()["status"]["phase"] == "Completed", timeout=30)

Overriding `kube_crd_paths` in a sub-directory's conftest also needs `kube_server_session`
imported there (session fixtures are cached per definition, not per parameters).
"""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import kubernetes
import pytest

from .jobs import JobRunner
from .server import KubeServer

T = TypeVar("T")

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
DEFAULT_CRDS = REPO_ROOT / "crds"
TESTDATA = pathlib.Path(__file__).parent / "testdata"


class WaitTimeout(AssertionError):
    """A condition was not met before its deadline."""


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    *,
    interval: float = 0.01,
    max_interval: float = 0.1,
    message: str | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy; return it. Fail after `timeout` seconds.

    An `AssertionError` from the predicate counts as "not yet" (so assertions can be polled);
    the last one is reported on timeout. Other exceptions propagate at once.
    """
    deadline = time.monotonic() + timeout
    last_error: AssertionError | None = None
    result: T | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except AssertionError as e:
            last_error = e
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            detail = f": {last_error}" if last_error is not None else f" (last result: {result!r})"
            raise WaitTimeout(f"Not met within {timeout}s: {what}{detail}") from last_error
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 1.5, max_interval)


@pytest.fixture(scope="session")
def kube_crd_paths() -> list[pathlib.Path]:
    return [DEFAULT_CRDS]


@pytest.fixture(scope="session")
def kube_server_session(kube_crd_paths: list[pathlib.Path]) -> Iterator[KubeServer]:
    with KubeServer(crd_paths=kube_crd_paths) as server:
        yield server


@pytest.fixture
def kube_server(kube_server_session: KubeServer) -> Iterator[KubeServer]:
    kube_server_session.reset()
    yield kube_server_session
    errors = list(kube_server_session.internal_errors)
    if errors:
        pytest.fail(f"The test API server had internal errors (bugs of the server): {errors!r}")


@pytest.fixture
def kubeconfig(kube_server: KubeServer) -> pathlib.Path:
    return kube_server.kubeconfig


@pytest.fixture
def kube_api(kubeconfig: pathlib.Path) -> Iterator[kubernetes.client.ApiClient]:
    client = kubernetes.config.new_client_from_config(config_file=os.fspath(kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def job_runner(kube_server: KubeServer, kubeconfig: pathlib.Path) -> Iterator[JobRunner]:
    runner = JobRunner(
        kube_server.url,
        pod_logs=kube_server.pod_logs,
        extra_env={"KUBECONFIG": os.fspath(kubeconfig)},
    )
    with runner:
        yield runner
    if runner.errors:
        pytest.fail(f"The job runner failed (a bug of the runner): {runner.errors!r}")


@pytest.fixture(name="wait_for")
def wait_for_fixture() -> Callable[..., object]:
    return wait_for
