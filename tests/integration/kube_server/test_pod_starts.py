"""Pods that do not start, as a cluster shows them: refused by a ResourceQuota (FailedCreate on
the Job, no Pod), unschedulable (PodScheduled=False), stuck attaching or mounting a volume
(ContainerCreating with FailedAttachVolume/FailedMount Events); each starts once its cause goes."""

from __future__ import annotations

from typing import Any

import kubernetes
import pytest

from tests.support.kube.fixtures import wait_for
from tests.support.kube.jobs import JobRunner

from .test_jobs import BatchApi, CoreApi, finished, job, pods_of

PREEMPTION = "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."


@pytest.fixture
def batch(kube_api: kubernetes.client.ApiClient) -> BatchApi:
    return kubernetes.client.BatchV1Api(kube_api)


@pytest.fixture
def core(kube_api: kubernetes.client.ApiClient) -> CoreApi:
    return kubernetes.client.CoreV1Api(kube_api)


def warnings_about(core: CoreApi, uid: str) -> list[Any]:
    selector = f"involvedObject.uid={uid},type=Warning"
    events: list[Any] = core.list_namespaced_event("default", field_selector=selector).items
    return events


def quota(core: CoreApi, name: str, hard: dict[str, str]) -> None:
    core.create_namespaced_resource_quota(
        "default", {"metadata": {"name": name}, "spec": {"hard": hard}}
    )


def with_pod_spec(body: dict[str, Any], **pod_spec: Any) -> dict[str, Any]:
    body["spec"]["template"]["spec"].update(pod_spec)
    return body


def test_a_pod_refused_by_a_quota_is_a_failed_create_event_and_no_pod(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    quota(core, "no-pods", {"pods": "0"})
    created = batch.create_namespaced_job("default", job("refused", "print('ran')"))

    [event] = wait_for(lambda: warnings_about(core, created.metadata.uid))
    assert event.reason == "FailedCreate"
    assert event.source.component == "job-controller"
    assert event.involved_object.kind == "Job"
    assert event.message.startswith('Error creating: pods "refused-')
    assert event.message.endswith(
        '" is forbidden: exceeded quota: no-pods, requested: pods=1, used: pods=0, limited: pods=0'
    )
    assert pods_of(core, "refused") == []
    status = batch.read_namespaced_job_status("refused", "default").status
    assert status.start_time is not None
    assert not status.active
    # The Job controller keeps trying: one Event, counted.
    wait_for(lambda: warnings_about(core, created.metadata.uid)[0].count >= 2, timeout=5)
    assert job_runner.starts("refused") == 0

    core.delete_namespaced_resource_quota("no-pods", "default")
    assert wait_for(lambda: finished(batch, "refused"))[-1][0] == "Complete"


def test_compute_quotas_are_worded_as_the_api_server_words_them(core: CoreApi) -> None:
    quota(core, "compute", {"requests.memory": "1Gi", "limits.cpu": "2"})

    def pod(name: str, resources: dict[str, Any]) -> dict[str, Any]:
        container = {"name": "worker", "image": "x:1", "resources": resources}
        return {"metadata": {"name": name}, "spec": {"containers": [container]}}

    def refusal(body: dict[str, Any]) -> str:
        with pytest.raises(kubernetes.client.ApiException) as err:
            core.create_namespaced_pod("default", body)
        assert err.value.status == 403
        return str(err.value.body)

    assert 'pods \\"bare\\" is forbidden: failed quota: compute: must specify limits.cpu for: ' in (
        refusal(pod("bare", {}))
    )
    fits = {"requests": {"memory": "512Mi"}, "limits": {"cpu": "1500m"}}
    core.create_namespaced_pod("default", pod("fits", fits))
    big = {"requests": {"memory": "768Mi"}, "limits": {"cpu": "500m"}}
    assert (
        "exceeded quota: compute, requested: requests.memory=768Mi, used: requests.memory=512Mi, "
        "limited: requests.memory=1Gi"
    ) in refusal(pod("big", big))


def test_a_job_refused_until_its_deadline_fails_with_deadline_exceeded(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    quota(core, "no-pods", {"pods": "0"})
    batch.create_namespaced_job("default", job("late", "print('ran')", activeDeadlineSeconds=1))
    assert wait_for(lambda: finished(batch, "late")) == [
        ("FailureTarget", "DeadlineExceeded"),
        ("Failed", "DeadlineExceeded"),
    ]
    assert pods_of(core, "late") == []


def test_an_unschedulable_pod_waits_for_a_node_that_fits(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    batch.create_namespaced_job(
        "default", with_pod_spec(job("picky", "print('ran')"), nodeSelector={"disk": "ssd"})
    )

    def scheduled_condition() -> Any:
        pods = pods_of(core, "picky")
        conditions = (pods[0].status.conditions or []) if pods else []
        return next((c for c in conditions if c.type == "PodScheduled"), None)

    condition = wait_for(scheduled_condition)
    assert (condition.status, condition.reason) == ("False", "Unschedulable")
    assert condition.message == (
        "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. "
        + PREEMPTION
    )
    [pod] = pods_of(core, "picky")
    assert pod.spec.node_name is None
    assert pod.status.phase == "Pending"
    [event] = wait_for(lambda: warnings_about(core, pod.metadata.uid))
    assert (event.reason, event.source.component) == ("FailedScheduling", "default-scheduler")
    assert event.message == condition.message
    assert job_runner.starts("picky") == 0

    job_runner.node.labels["disk"] = "ssd"
    assert wait_for(lambda: finished(batch, "picky"))[-1][0] == "Complete"
    [pod] = pods_of(core, "picky")
    assert pod.spec.node_name == "local"


def test_a_tainted_node_takes_only_pods_that_tolerate_it(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    job_runner.node.taints.append({"key": "dedicated", "value": "db", "effect": "NoSchedule"})
    toleration = {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}
    batch.create_namespaced_job(
        "default", with_pod_spec(job("tolerant", "print('ran')"), tolerations=[toleration])
    )
    batch.create_namespaced_job("default", job("intolerant", "print('ran')"))
    assert wait_for(lambda: finished(batch, "tolerant"))[-1][0] == "Complete"

    def unschedulable_message() -> str | None:
        pods = pods_of(core, "intolerant")
        conditions = (pods[0].status.conditions or []) if pods else []
        return next((c.message for c in conditions if c.reason == "Unschedulable"), None)

    assert wait_for(unschedulable_message) == (
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: db}. " + PREEMPTION
    )


@pytest.mark.parametrize(
    ("reason", "component", "message"),
    [
        (
            "FailedAttachVolume",
            "attachdetach-controller",
            'Multi-Attach error for volume "pvc-data" Volume is already exclusively attached to '
            "one node and can't be attached to another",
        ),
        (
            "FailedMount",
            "kubelet",
            'MountVolume.MountDevice failed for volume "pvc-data" : rpc error: code = Internal '
            "desc = mount failed: exit status 32",
        ),
    ],
)
def test_a_volume_that_cannot_attach_or_mount_keeps_the_pod_in_container_creating(
    batch: BatchApi,
    core: CoreApi,
    job_runner: JobRunner,
    reason: str,
    component: str,
    message: str,
) -> None:
    job_runner.fail_volume("data", reason)
    body = job("mounting", "print('ran')")
    body = with_pod_spec(
        body, volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
    )
    body["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "d", "mountPath": "/data"}
    ]
    batch.create_namespaced_job("default", body)

    [pod] = wait_for(lambda: pods_of(core, "mounting"))
    [event] = wait_for(lambda: warnings_about(core, pod.metadata.uid))
    assert (event.reason, event.source.component, event.message) == (reason, component, message)
    [pod] = pods_of(core, "mounting")
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].state.waiting.reason == "ContainerCreating"
    assert job_runner.starts("mounting") == 0

    job_runner.fix_volume("data")
    assert wait_for(lambda: finished(batch, "mounting"))[-1][0] == "Complete"


def test_a_missing_secret_volume_is_a_failed_mount(
    batch: BatchApi, core: CoreApi, job_runner: JobRunner
) -> None:
    body = with_pod_spec(
        job("secretvol", "print('ran')"), volumes=[{"name": "s", "secret": {"secretName": "nope"}}]
    )
    body["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "s", "mountPath": "/secret"}
    ]
    batch.create_namespaced_job("default", body)
    [pod] = wait_for(lambda: pods_of(core, "secretvol"))
    [event] = wait_for(lambda: warnings_about(core, pod.metadata.uid))
    assert event.reason == "FailedMount"
    assert event.message == 'MountVolume.SetUp failed for volume "s" : secret "nope" not found'


def test_a_pod_is_bound_to_a_node_once(core: CoreApi) -> None:
    container = {"name": "c", "image": "x:1"}
    core.create_namespaced_pod(
        "default", {"metadata": {"name": "p"}, "spec": {"containers": [container]}}
    )
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-a"},
    }
    core.create_namespaced_pod_binding("p", "default", binding, _preload_content=False)
    pod = core.read_namespaced_pod("p", "default")
    assert pod.spec.node_name == "node-a"
    assert [(c.type, c.status) for c in pod.status.conditions] == [("PodScheduled", "True")]
    with pytest.raises(kubernetes.client.ApiException) as err:
        core.create_namespaced_pod_binding("p", "default", binding, _preload_content=False)
    assert err.value.status == 409
    assert 'pod p is already assigned to node \\"node-a\\"' in str(err.value.body)
