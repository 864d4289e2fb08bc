"""The Job controller + kubelet stand-in: Jobs run as local processes, with status as on 1.31+."""

from __future__ import annotations

import json
import os
import pathlib
import sys
from typing import Any, TypeAlias

import kubernetes
import pytest

from tests.support.kube.fixtures import wait_for
from tests.support.kube.jobs import Image, JobRunner
from tests.support.kube.server import KubeServer

PY = sys.executable


def job(
    name: str,
    code: str,
    *,
    backoff_limit: int = 0,
    image: str = "example/worker:1",
    env: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "worker",
        "image": image,
        "command": ["python", "-c", code],
    }
    if env:
        container["env"] = env
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            **spec,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


BatchApi: TypeAlias = kubernetes.client.BatchV1Api
CoreApi: TypeAlias = kubernetes.client.CoreV1Api


@pytest.fixture
def batch(kube_api: kubernetes.client.ApiClient) -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(kube_api)


@pytest.fixture
def core(kube_api: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kube_api)


def conditions(batch: kubernetes.client.BatchV1Api, name: str) -> list[tuple[str, str]]:
    status = batch.read_namespaced_job_status(name, "default").status
    return [(c.type, c.reason) for c in status.conditions or []]


def finished(batch: kubernetes.client.BatchV1Api, name: str) -> list[tuple[str, str]]:
    found = conditions(batch, name)
    return found if any(t in ("Complete", "Failed") for t, _ in found) else []


def pods_of(core: kubernetes.client.CoreV1Api, name: str) -> list[Any]:
    selector = f"batch.kubernetes.io/job-name={name}"
    pods: list[Any] = core.list_namespaced_pod("default", label_selector=selector).items
    return pods


def test_a_successful_job(batch: BatchApi, core: CoreApi, job_runner: JobRunner) -> None:
    batch.create_namespaced_job("default", job("ok", "print('all good')"))
    assert wait_for(lambda: finished(batch, "ok")) == [
        ("SuccessCriteriaMet", "CompletionsReached"),
        ("Complete", "CompletionsReached"),
    ]
    status = batch.read_namespaced_job_status("ok", "default").status
    assert (status.succeeded, status.failed, status.active) == (1, 0, 0)
    assert status.start_time is not None
    assert status.completion_time is not None
    [pod] = pods_of(core, "ok")
    assert pod.status.phase == "Succeeded"
    assert pod.metadata.labels["job-name"] == "ok"
    assert pod.metadata.owner_references[0].kind == "Job"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert (
        core.read_namespaced_pod_log(pod.metadata.name, "default", _preload_content=False).data
        == b"all good\n"
    )
    assert job_runner.starts("ok") == 1


def test_a_failing_job_is_retried_up_to_the_backoff_limit(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    batch.create_namespaced_job("default", job("bad", "import sys; sys.exit(3)", backoff_limit=2))
    assert wait_for(lambda: finished(batch, "bad")) == [
        ("FailureTarget", "BackoffLimitExceeded"),
        ("Failed", "BackoffLimitExceeded"),
    ]
    status = batch.read_namespaced_job_status("bad", "default").status
    assert (status.failed, status.succeeded, status.active) == (3, 0, 0)
    assert job_runner.starts("bad") == 3
    pods = pods_of(core, "bad")
    assert len(pods) == 3
    assert {p.status.container_statuses[0].state.terminated.exit_code for p in pods} == {3}


def test_a_job_that_succeeds_on_retry(
    batch: BatchApi, job_runner: JobRunner, tmp_path: pathlib.Path
) -> None:
    marker = tmp_path / "tried"
    code = (
        f"import sys, pathlib; p = pathlib.Path({str(marker)!r}); tried = p.exists(); p.touch(); "
        "sys.exit(0 if tried else 1)"
    )
    batch.create_namespaced_job("default", job("flaky", code, backoff_limit=1))
    assert wait_for(lambda: finished(batch, "flaky"))[-1] == ("Complete", "CompletionsReached")
    status = batch.read_namespaced_job_status("flaky", "default").status
    assert (status.failed, status.succeeded) == (1, 1)


def test_active_deadline_kills_the_process(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    batch.create_namespaced_job(
        "default", job("slow", "import time; time.sleep(60)", activeDeadlineSeconds=1)
    )
    wait_for(lambda: job_runner.running == 1, message="the process runs")
    assert batch.read_namespaced_job_status("slow", "default").status.active == 1
    assert wait_for(lambda: finished(batch, "slow"), timeout=10) == [
        ("FailureTarget", "DeadlineExceeded"),
        ("Failed", "DeadlineExceeded"),
    ]
    assert job_runner.running == 0
    [pod] = pods_of(core, "slow")
    assert pod.status.phase == "Failed"


def test_env_from_secrets_config_maps_and_field_refs(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    core.create_namespaced_secret(
        "default", {"metadata": {"name": "db"}, "stringData": {"password": "s3cr3t"}}
    )
    core.create_namespaced_secret(
        "default", {"metadata": {"name": "s3"}, "stringData": {"KEY": "k", "SECRET": "z"}}
    )
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "cfg"}, "data": {"mode": "fast"}}
    )
    env: list[dict[str, Any]] = [
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "GREETING", "value": "hi $(POD)"},
        {
            "name": "OPTIONAL",
            "valueFrom": {"secretKeyRef": {"name": "absent", "key": "x", "optional": True}},
        },
    ]
    code = (
        "import os; print(os.environ['PASSWORD'], os.environ['MODE'], os.environ['NS'], "
        "os.environ['S3_KEY'], os.environ['GREETING'] == 'hi ' + os.environ['POD'], "
        "'OPTIONAL' in os.environ, os.environ['KUBECONFIG'] != '')"
    )
    body = job("env", code, env=env)
    body["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [
        {"secretRef": {"name": "s3"}, "prefix": "S3_"}
    ]
    batch.create_namespaced_job("default", body)
    assert wait_for(lambda: finished(batch, "env"))[-1][0] == "Complete"
    [pod] = pods_of(core, "env")
    assert job_runner.logs(pod.metadata.name) == "s3cr3t fast default k True False True\n"


def test_a_missing_secret_means_the_container_never_starts(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    env = [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "password"}}}]
    batch.create_namespaced_job("default", job("nosecret", "print('ran')", env=env))

    def waiting_reason() -> str | None:
        pods = pods_of(core, "nosecret")
        statuses = pods[0].status.container_statuses if pods else None
        return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None

    assert wait_for(waiting_reason) == "CreateContainerConfigError"
    pod = pods_of(core, "nosecret")[0]
    assert pod.status.container_statuses[0].state.waiting.message == 'secret "nope" not found'
    assert pod.status.phase == "Pending"
    assert batch.read_namespaced_job_status("nosecret", "default").status.active == 1
    assert job_runner.starts("nosecret") == 0


def test_the_container_starts_once_the_secret_appears(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    env = [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "late", "key": "password"}}}]
    batch.create_namespaced_job("default", job("late", "print('ran')", env=env))
    wait_for(lambda: pods_of(core, "late"))
    core.create_namespaced_secret(
        "default", {"metadata": {"name": "late"}, "stringData": {"password": "x"}}
    )
    assert wait_for(lambda: finished(batch, "late"))[-1][0] == "Complete"


def test_a_missing_key_is_reported_like_the_kubelet(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    core.create_namespaced_secret(
        "default", {"metadata": {"name": "db"}, "stringData": {"user": "u"}}
    )
    env = [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]
    batch.create_namespaced_job("default", job("nokey", "print('ran')", env=env))

    def message() -> str | None:
        pods = pods_of(core, "nokey")
        statuses = pods[0].status.container_statuses if pods else None
        return statuses[0].state.waiting.message if statuses else None

    assert wait_for(message) == "couldn't find key password in Secret default/db"


def test_image_pull_back_off(batch: BatchApi, core: CoreApi, job_runner: JobRunner) -> None:
    job_runner.fail_image_pull("registry.invalid/worker:404")
    batch.create_namespaced_job(
        "default", job("nopull", "print('ran')", image="registry.invalid/worker:404")
    )

    def reason() -> str | None:
        pods = pods_of(core, "nopull")
        statuses = pods[0].status.container_statuses if pods else None
        return statuses[0].state.waiting.reason if statuses else None

    assert wait_for(lambda: reason() == "ImagePullBackOff")
    assert job_runner.starts("nopull") == 0


def test_held_jobs_start_when_released(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    job_runner.hold("held")
    batch.create_namespaced_job("default", job("held", "print('ran')"))
    batch.create_namespaced_job("default", job("free", "print('ran')"))
    wait_for(lambda: finished(batch, "free"))
    assert pods_of(core, "held") == []
    assert job_runner.starts("held") == 0
    job_runner.release("held")
    assert wait_for(lambda: finished(batch, "held"))[-1][0] == "Complete"


def test_deleting_the_job_kills_its_process(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    batch.create_namespaced_job("default", job("doomed", "import time; time.sleep(60)"))
    wait_for(lambda: job_runner.running == 1)
    batch.delete_namespaced_job("doomed", "default", propagation_policy="Background")
    wait_for(lambda: job_runner.running == 0, timeout=10)
    wait_for(lambda: pods_of(core, "doomed") == [])


def test_image_mapping_and_entrypoints(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    job_runner.images["lifeboat"] = Image(
        entrypoint=["lifeboat"], executables={"lifeboat": PY}, env={"FROM_IMAGE": "yes"}
    )
    body = job("mapped", "")
    container = body["spec"]["template"]["spec"]["containers"][0]
    container.update(
        image="ghcr.io/x/lifeboat:1.0", args=["-c", "import os; print(os.environ['FROM_IMAGE'])"]
    )
    del container["command"]
    job_runner.images["ghcr.io/x/lifeboat"] = job_runner.images.pop("lifeboat")
    batch.create_namespaced_job("default", body)
    assert wait_for(lambda: finished(batch, "mapped"))[-1][0] == "Complete"
    [pod] = pods_of(core, "mapped")
    assert job_runner.logs(pod.metadata.name) == "yes\n"


def test_an_unknown_executable_fails_to_start(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    body = job("noexec", "")
    body["spec"]["template"]["spec"]["containers"][0]["command"] = ["no-such-binary-here"]
    batch.create_namespaced_job("default", body)
    assert wait_for(lambda: finished(batch, "noexec"))[-1] == ("Failed", "BackoffLimitExceeded")
    [pod] = pods_of(core, "noexec")
    assert pod.status.container_statuses[0].state.terminated.reason == "StartError"


def test_pod_failure_policy_fails_the_job_at_once(batch: BatchApi, job_runner: JobRunner) -> None:
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
    batch.create_namespaced_job(
        "default",
        job("fatal", "import sys; sys.exit(42)", backoff_limit=5, podFailurePolicy=policy),
    )
    assert wait_for(lambda: finished(batch, "fatal"))[-1] == ("Failed", "PodFailurePolicy")
    assert job_runner.starts("fatal") == 1


def test_jobs_are_validated_like_a_cluster_would(batch: BatchApi) -> None:
    body = job("invalid", "")
    body["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(kubernetes.client.ApiException) as err:
        batch.create_namespaced_job("default", body)
    assert err.value.status == 422
    message = json.loads(err.value.body)["message"]
    assert 'spec.template.spec.restartPolicy: Unsupported value: "Always"' in message


def test_job_defaults_selector_and_labels(batch: BatchApi) -> None:
    created = batch.create_namespaced_job("default", job("defaults", "pass"))
    uid = created.metadata.uid
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert created.spec.template.metadata.labels["batch.kubernetes.io/job-name"] == "defaults"
    assert created.spec.completions == 1
    assert created.spec.parallelism == 1


def test_the_runner_counts_processes_per_job(batch: BatchApi, job_runner: JobRunner) -> None:
    assert job_runner.starts("none") == 0
    batch.create_namespaced_job("default", job("count", "pass"))
    wait_for(lambda: finished(batch, "count"))
    assert job_runner.starts("count") == 1


def test_garbage_collection_of_the_owner_kills_the_process(
    batch: BatchApi,
    job_runner: JobRunner,
    kube_api: kubernetes.client.ApiClient,
) -> None:
    from .helpers import Widgets, widget

    widgets = Widgets(kube_api)
    owner = widgets.create(widget())
    body = job("owned", "import time; time.sleep(60)")
    body["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "example.dev/v1alpha1",
            "kind": "Widget",
            "name": "w1",
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    batch.create_namespaced_job("default", body)
    wait_for(lambda: job_runner.running == 1)
    widgets.delete()
    wait_for(lambda: job_runner.running == 0)
    assert batch.list_namespaced_job("default").items == []


def test_following_pod_logs_returns_when_the_container_exits(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    code = "import time; print('one', flush=True); time.sleep(0.3); print('two', flush=True)"
    batch.create_namespaced_job("default", job("chatty", code))
    wait_for(lambda: job_runner.running == 1)
    [pod] = pods_of(core, "chatty")
    followed = core.read_namespaced_pod_log(
        pod.metadata.name, "default", follow=True, _preload_content=False
    )
    assert followed.data == b"one\ntwo\n"
    tail = core.read_namespaced_pod_log(
        pod.metadata.name, "default", tail_lines=1, _preload_content=False
    )
    assert tail.data == b"two\n"


def test_volumes_are_local_directories_behind_rewritten_mount_paths(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner, tmp_path: pathlib.Path
) -> None:
    core.create_namespaced_secret(
        "default", {"metadata": {"name": "tls"}, "stringData": {"ca.crt": "CA"}}
    )
    job_runner.volumes["backups"] = tmp_path
    write = job("write", "import sys; open(sys.argv[1], 'w').write(open(sys.argv[2]).read())")
    pod_spec = write["spec"]["template"]["spec"]
    pod_spec["volumes"] = [
        {"name": "data", "persistentVolumeClaim": {"claimName": "backups"}},
        {"name": "certs", "secret": {"secretName": "tls"}},
    ]
    container = pod_spec["containers"][0]
    container["args"] = ["/var/lib/lifeboat/backups/out.txt", "/etc/certs/ca.crt"]
    container["volumeMounts"] = [
        {"name": "data", "mountPath": "/var/lib/lifeboat/backups"},
        {"name": "certs", "mountPath": "/etc/certs", "readOnly": True},
    ]
    batch.create_namespaced_job("default", write)
    assert wait_for(lambda: finished(batch, "write"))[-1][0] == "Complete"
    assert (tmp_path / "out.txt").read_text() == "CA"


def test_a_claim_is_shared_by_the_jobs_that_mount_it(
    batch: BatchApi, job_runner: JobRunner
) -> None:
    def with_claim(body: dict[str, Any]) -> dict[str, Any]:
        pod_spec = body["spec"]["template"]["spec"]
        pod_spec["volumes"] = [{"name": "d", "persistentVolumeClaim": {"claimName": "shared"}}]
        pod_spec["containers"][0]["volumeMounts"] = [{"name": "d", "mountPath": "/data"}]
        pod_spec["containers"][0]["env"] = [{"name": "FILE", "value": "/data/f"}]
        return body

    batch.create_namespaced_job(
        "default", with_claim(job("one", "import os; open(os.environ['FILE'], 'w').write('1')"))
    )
    wait_for(lambda: finished(batch, "one"))
    batch.create_namespaced_job(
        "default",
        with_claim(job("two", "import os; assert open(os.environ['FILE']).read() == '1'")),
    )
    assert wait_for(lambda: finished(batch, "two"))[-1][0] == "Complete"


def test_stopping_the_runner_kills_its_processes(
    batch: BatchApi, kube_server: KubeServer, tmp_path: pathlib.Path
) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    runner = JobRunner(kube_server.url, pod_logs=kube_server.pod_logs).start()
    try:
        batch.create_namespaced_job("default", job("sleeper", code))
        pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text()))
    finally:
        runner.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
