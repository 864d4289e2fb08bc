"""The operator's probes, as the chart's Deployment uses them: `lifeboat operator --liveness URL
--readiness URL`, a real process against an API server.

Readiness means "connected and watching every kind": it stays 503 while the API server cannot be
reached or a CRD is missing, whatever liveness says.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.operator.conftest import REPO, TEST_IMAGE, Cluster
from tests.support.e2e import E2E_SETTINGS
from tests.support.kube.fixtures import wait_for
from tests.support.kube.server import KubeServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def probe(url: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of a probe, as the kubelet sees it; (0, {}) when nothing
    answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a local URL
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}


@contextmanager
def operator_process(kubeconfig: Path, namespace: str) -> Iterator[tuple[str, str]]:
    """`lifeboat operator` with both probes; yields (liveness URL, readiness URL)."""
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    readiness = f"http://127.0.0.1:{free_port()}/readyz"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lifeboat",
            "operator",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            namespace,
            "--worker-image",
            TEST_IMAGE,
            f"--liveness={liveness}",
            f"--readiness={readiness}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        yield liveness, readiness
        assert process.poll() is None, process.communicate()[0]
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def test_operator_becomes_ready_once_it_watches_every_kind(cluster: Cluster) -> None:
    with operator_process(cluster.kubeconfig, cluster.namespace) as (liveness, readiness):
        _, body = wait_for(lambda: (s := probe(readiness))[0] == 200 and s, timeout=60)
        assert body == {"ready": True}
        assert probe(liveness)[0] == 200


def test_operator_is_alive_but_not_ready_while_the_api_server_is_unreachable(
    tmp_path: Path,
) -> None:
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{free_port()}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    with operator_process(unreachable, "default") as (liveness, readiness):
        wait_for(lambda: probe(liveness)[0] == 200, timeout=60)
        for _ in range(3):
            status, body = probe(readiness)
            assert status == 503, body
            assert body["ready"] is False
            assert "the API server's resources" in body["waitingFor"][0]


@pytest.mark.skipif(E2E_SETTINGS.enabled, reason="needs its own test API server")
def test_operator_is_not_ready_while_a_crd_is_missing() -> None:
    crds = sorted((REPO / "crds").glob("*.yaml"))
    without_stores = [path for path in crds if not path.name.startswith("backupstores.")]
    assert len(without_stores) == len(crds) - 1
    with (
        KubeServer(crd_paths=without_stores) as server,
        operator_process(server.kubeconfig, "default") as (liveness, readiness),
    ):
        wait_for(lambda: probe(liveness)[0] == 200, timeout=60)

        def waiting_only_for_stores() -> list[str]:
            status, body = probe(readiness)
            assert status == 503, body
            waiting: list[str] = body["waitingFor"]
            assert waiting == ["a watch on backupstores.lifeboat.dev (is its CRD installed?)"]
            return waiting

        wait_for(waiting_only_for_stores, timeout=60)
