"""The real kubectl against the test server: apply, get (Tables), wait, describe, logs."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import threading
from collections.abc import Callable

import kubernetes
import pytest

from tests.support.kube.jobs import JobRunner

from .helpers import Widgets

KUBECTL = pathlib.Path(sys.executable).parent / "kubectl"

MANIFEST = """\
apiVersion: example.dev/v1alpha1
kind: Widget
metadata:
  name: w1
spec:
  database: {engine: postgres, name: shop}
  size: 3
"""


Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kubectl(kubeconfig: pathlib.Path, tmp_path: pathlib.Path) -> Kubectl:
    def run(
        *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [
                str(KUBECTL),
                "--kubeconfig",
                str(kubeconfig),
                "--cache-dir",
                str(tmp_path / "cache"),
                *args,
            ],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run


def test_apply_creates_then_reports_unchanged(kubectl: Kubectl) -> None:
    assert (
        kubectl("apply", "-f", "-", stdin=MANIFEST).stdout.strip()
        == "widget.example.dev/w1 created"
    )
    assert (
        kubectl("apply", "-f", "-", stdin=MANIFEST).stdout.strip()
        == "widget.example.dev/w1 unchanged"
    )
    changed = MANIFEST.replace("size: 3", "size: 4")
    assert (
        kubectl("apply", "-f", "-", stdin=changed).stdout.strip()
        == "widget.example.dev/w1 configured"
    )


def test_apply_of_an_invalid_object_shows_the_field(kubectl: Kubectl) -> None:
    result = kubectl("apply", "-f", "-", stdin=MANIFEST.replace("postgres", "oracle"), check=False)
    assert result.returncode != 0
    assert 'spec.database.engine: Unsupported value: "oracle"' in result.stderr


def test_apply_with_an_unknown_field_is_rejected_by_strict_validation(kubectl: Kubectl) -> None:
    result = kubectl("apply", "-f", "-", stdin=MANIFEST + "  colour: red\n", check=False)
    assert result.returncode != 0
    assert 'unknown field "spec.colour"' in result.stderr


def test_get_prints_the_crd_printer_columns(
    kubectl: Kubectl, kube_api: kubernetes.client.ApiClient
) -> None:
    kubectl("apply", "-f", "-", stdin=MANIFEST)
    Widgets(kube_api).patch_status(
        "w1", {"status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "True"}]}}
    )
    lines = kubectl("get", "widgets").stdout.splitlines()
    assert lines[0].split() == ["NAME", "ENGINE", "PHASE", "READY", "AGE"]
    assert lines[1].split()[:4] == ["w1", "postgres", "Ready", "True"]
    wide = kubectl("get", "wg", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "ENGINE", "PHASE", "READY", "SIZE", "AGE"]
    assert wide[1].split()[4] == "3"


def test_get_prints_name_and_age_for_builtins(kubectl: Kubectl) -> None:
    # `kubectl create configmap` would send protobuf, which the test server does not speak.
    kubectl("create", "-f", "-", stdin="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c1}\n")
    assert kubectl("get", "configmaps").stdout.splitlines()[0].split() == ["NAME", "AGE"]


def test_wait_for_a_condition_set_later(
    kubectl: Kubectl, kube_api: kubernetes.client.ApiClient
) -> None:
    kubectl("apply", "-f", "-", stdin=MANIFEST)
    patcher = threading.Timer(
        0.5,
        lambda: Widgets(kube_api).patch_status(
            "w1", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        ),
    )
    patcher.start()
    result = kubectl("wait", "--for=condition=Ready", "--timeout=20s", "widget/w1")
    patcher.join()
    assert result.stdout.strip() == "widget.example.dev/w1 condition met"


def test_wait_for_deletion(kubectl: Kubectl, kube_api: kubernetes.client.ApiClient) -> None:
    kubectl("apply", "-f", "-", stdin=MANIFEST)
    deleter = threading.Timer(0.3, lambda: Widgets(kube_api).delete("w1"))
    deleter.start()
    kubectl("wait", "--for=delete", "--timeout=20s", "widget/w1")
    deleter.join()


def test_describe_shows_the_object_and_its_events(
    kubectl: Kubectl, kube_api: kubernetes.client.ApiClient
) -> None:
    kubectl("apply", "-f", "-", stdin=MANIFEST)
    owner = Widgets(kube_api).get()
    kubernetes.client.CoreV1Api(kube_api).create_namespaced_event(
        "default",
        {
            "metadata": {"generateName": "w1."},
            "reason": "BackupStarted",
            "message": "dumping shop",
            "type": "Normal",
            "source": {"component": "lifeboat"},
            "involvedObject": {
                "apiVersion": "example.dev/v1alpha1",
                "kind": "Widget",
                "name": "w1",
                "namespace": "default",
                "uid": owner["metadata"]["uid"],
            },
        },
    )
    output = kubectl("describe", "widget", "w1").stdout
    assert "Name:         w1" in output
    assert re.search(r"Engine:\s+postgres", output)
    assert "BackupStarted" in output
    assert "dumping shop" in output


def test_delete(kubectl: Kubectl, kube_api: kubernetes.client.ApiClient) -> None:
    kubectl("apply", "-f", "-", stdin=MANIFEST)
    kubectl("delete", "widget", "w1")
    assert not Widgets(kube_api).exists()


def test_logs_of_a_job_run_by_the_job_runner(kubectl: Kubectl, job_runner: JobRunner) -> None:
    manifest = """\
apiVersion: batch/v1
kind: Job
metadata: {name: hello}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: example/worker:1
        command: [python, -c, "print('hello from the job')"]
"""
    kubectl("apply", "-f", "-", stdin=manifest)
    kubectl("wait", "--for=condition=Complete", "--timeout=20s", "job/hello")
    assert kubectl("logs", "job/hello").stdout == "hello from the job\n"
    lines = kubectl("get", "pods").stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1].split()[1:4] == ["0/1", "Completed", "0"]
    assert kubectl("get", "jobs").stdout.splitlines()[1].split()[1:3] == ["Complete", "1/1"]


def test_get_watch_prints_rows_as_they_change(
    kubectl: Kubectl, kube_api: kubernetes.client.ApiClient
) -> None:
    kubectl("apply", "-f", "-", stdin=MANIFEST)
    patcher = threading.Timer(
        0.3, lambda: Widgets(kube_api).patch_status("w1", {"status": {"phase": "Running"}})
    )
    patcher.start()
    lines = kubectl("get", "widgets", "-w", "--request-timeout=1s").stdout.splitlines()
    patcher.join()
    assert len(lines) == 3  # the header, the row as it was, the row after the change
    assert "Running" not in lines[1]
    assert lines[2].split()[:3] == ["w1", "postgres", "Running"]
