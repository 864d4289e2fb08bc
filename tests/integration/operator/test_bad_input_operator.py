"""Bad input the API server accepts, against the real operator: refused with the field named.

What the CRD schema can refuse is refused by the API server (tests/unit/test_bad_input.py holds
that table; a few cases here check the test server answers the same). What it cannot, the
operator refuses: each case below ends in Failed with its reason and a message naming the field,
and (unless a Job is the only way to find out) without a Job. Then all the cases at once, and a
good Backup after them: bad objects never crash or wedge the operator.

And tenancy: the images and ServiceAccounts a Job may use are the operator's to allow, a
reference never leaves its namespace, and the worker writes no status but its own object's.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from lifeboat.builders.naming import MAX_NAME
from lifeboat.controller.tenancy import JobPolicy
from tests.integration.operator.conftest import (
    GROUP,
    TEST_IMAGE,
    VERSION,
    Cluster,
    OperatorControl,
    SqliteShop,
)
from tests.support.s3 import S3Bucket

OTHER_NAMESPACE = "billing"
S3_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass
class Stage:
    cluster: Cluster
    shop: SqliteShop
    s3: S3Bucket


@dataclass(frozen=True)
class Expect:
    plural: str
    name: str
    phase: str
    reason: str | None = None
    says: tuple[str, ...] = ()
    """What the message must hold: the field, the value."""
    job: bool = False
    """Whether a Job may exist for it (a missing Secret or bucket needs one to be found out)."""


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Stage], None]
    expect: tuple[Expect, ...] = field(default_factory=tuple)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def s3_spec(stage: Stage, **s3: Any) -> dict[str, Any]:
    """The SQLite shop backed up into the moto bucket, with the given s3 fields over the good
    ones; one attempt only (a storage error is retried otherwise)."""
    good = {
        "bucket": stage.s3.bucket,
        "endpoint": stage.s3.endpoint,
        "region": "us-east-1",
        "forcePathStyle": True,
        "credentialsSecretRef": {"name": "s3"},
    }
    spec = stage.shop.spec(job={"backoffLimit": 0})
    spec["storage"] = {"s3": {**good, **s3}}
    return spec


def s3_secret(stage: Stage, name: str, keys: tuple[str, ...] = S3_KEYS) -> None:
    stage.cluster.secret(name, {key: stage.s3.env[key] for key in keys})


def create_in(cluster: Cluster, namespace: str, plural: str, name: str, spec: Any) -> None:
    kind = {"backups": "Backup", "restores": "Restore"}[plural]
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


def ensure_namespace(cluster: Cluster, name: str) -> None:
    if name not in {ns.metadata.name for ns in cluster.core.list_namespace().items}:
        cluster.core.create_namespace({"metadata": {"name": name}})


def refused_by_the_api(call: Callable[[], Any], status: int = 422) -> str:
    """What the API server answered: 422 Invalid for a schema or CEL refusal, 400 BadRequest
    for a strict field validation's unknown field."""
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == status, info.value
    return str(info.value.body)


LONG_NAME = ".".join(["a" * 60, "b" * 60, "c" * 60, "d" * 60]) + "." + "e" * 8


# -- the cases ------------------------------------------------------------------------------------


def _job(field: str, value: Any) -> Callable[[Stage], None]:
    def setup(stage: Stage) -> None:
        name = f"job-{field.lower()}"
        stage.cluster.create("backups", name, stage.shop.spec(job={field: value}))

    return setup


def _missing_secret(stage: Stage) -> None:
    stage.cluster.create(
        "backups", "no-secret", s3_spec(stage, credentialsSecretRef={"name": "nowhere"})
    )


def _missing_key(stage: Stage) -> None:
    s3_secret(stage, "half", keys=("AWS_ACCESS_KEY_ID",))
    stage.cluster.create("backups", "no-key", s3_spec(stage, credentialsSecretRef={"name": "half"}))


def _missing_bucket(stage: Stage) -> None:
    s3_secret(stage, "s3-for-bucket")
    spec = s3_spec(
        stage, bucket="lifeboat-no-such-bucket", credentialsSecretRef={"name": "s3-for-bucket"}
    )
    stage.cluster.create("backups", "no-bucket", spec)


def _unreachable_endpoint(stage: Stage) -> None:
    s3_secret(stage, "s3-for-endpoint")
    spec = s3_spec(
        stage,
        endpoint=f"http://127.0.0.1:{closed_port()}",
        credentialsSecretRef={"name": "s3-for-endpoint"},
    )
    stage.cluster.create("backups", "no-endpoint", spec)


def _missing_backup(stage: Stage) -> None:
    stage.cluster.create("restores", "orphan", {"backupRef": {"name": "nothing-here"}})


def _failed_backup(stage: Stage) -> None:
    spec = stage.shop.spec()
    spec["database"]["path"] = "missing.db"
    stage.cluster.create("backups", "broken", spec)
    stage.cluster.create("restores", "from-broken", {"backupRef": {"name": "broken"}})


def _backup_in_another_namespace(stage: Stage) -> None:
    cluster = stage.cluster
    ensure_namespace(cluster, OTHER_NAMESPACE)
    create_in(cluster, OTHER_NAMESPACE, "backups", "billing-db", stage.shop.spec())
    ref = {"name": "billing-db", "namespace": OTHER_NAMESPACE}
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Restore",
        "metadata": {"name": "cross-namespace", "namespace": cluster.namespace},
        "spec": {"backupRef": ref},
    }
    strict = refused_by_the_api(
        lambda: cluster.custom.create_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, "restores", body, field_validation="Strict"
        ),
        status=400,
    )
    assert "spec.backupRef.namespace" in strict
    # A lenient client: the API server drops the unknown field, the name stays in this namespace.
    cluster.custom.create_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, "restores", body
    )
    stored = cluster.get("restores", "cross-namespace")
    assert stored is not None
    assert stored["spec"]["backupRef"] == {"name": "billing-db"}


def _another_engine(stage: Stage) -> None:
    stage.cluster.create("backups", "lite", stage.shop.spec())
    target = {"engine": "mariadb", "host": "db.shop", "name": "shop", "user": "app"}
    stage.cluster.create(
        "restores", "into-mariadb", {"backupRef": {"name": "lite"}, "target": target}
    )


def _refused_by_the_api_server(stage: Stage) -> None:
    cluster, spec = stage.cluster, stage.shop.spec()
    for name in ("bäckup", "back$(id)", "backup;rm", "Backup"):
        assert "metadata.name" in refused_by_the_api(
            lambda n=name: cluster.create("backups", n, spec)
        )  # type: ignore[misc]
    assert "metadata.name" in refused_by_the_api(lambda: cluster.create("backups", "x" * 254, spec))
    bad = stage.shop.spec()
    bad["database"]["path"] = "../../etc/passwd"
    assert "spec.database.path" in refused_by_the_api(lambda: cluster.create("backups", "up", bad))


def _edited_after_acceptance(stage: Stage) -> None:
    cluster = stage.cluster
    cluster.create("backups", "fixed", stage.shop.spec())
    for change in (
        {"database": {"path": "other.db"}},
        {"storage": {"volume": {"persistentVolumeClaim": "backups", "path": "elsewhere"}}},
        {"job": {"backoffLimit": 9}},
    ):
        body = refused_by_the_api(
            lambda c=change: cluster.custom.patch_namespaced_custom_object(  # type: ignore[misc]
                GROUP, VERSION, cluster.namespace, "backups", "fixed", {"spec": c}
            )
        )
        assert "cannot change once created" in body
    cluster.create("restores", "fixed-restore", {"backupRef": {"name": "fixed"}})
    body = refused_by_the_api(
        lambda: cluster.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            cluster.namespace,
            "restores",
            "fixed-restore",
            {"spec": {"backupRef": {"name": "another"}}},
        )
    )
    assert "cannot change once created" in body


def _long_name(stage: Stage) -> None:
    stage.cluster.create("backups", LONG_NAME, stage.shop.spec())


FAILED, INVALID = "Failed", "InvalidSpec"
CASES = [
    Case(
        "pod-label-key",
        _job("podLabels", {"team name": "db"}),
        (Expect("backups", "job-podlabels", FAILED, INVALID, ("spec.job.podLabels", "team name")),),
    ),
    Case(
        "node-selector-key",
        _job("nodeSelector", {"disk type": "ssd"}),
        (Expect("backups", "job-nodeselector", FAILED, INVALID, ("spec.job.nodeSelector",)),),
    ),
    Case(
        "requests-over-limits",
        _job("resources", {"requests": {"memory": "8Gi"}, "limits": {"memory": "1Gi"}}),
        (
            Expect(
                "backups",
                "job-resources",
                FAILED,
                INVALID,
                ("spec.job.resources", "requests.memory 8Gi is more than limits.memory 1Gi"),
            ),
        ),
    ),
    Case(
        "image-not-allowed",
        _job("image", "evil.example/lifeboat:1"),
        (
            Expect(
                "backups",
                "job-image",
                FAILED,
                "ImageNotAllowed",
                ("spec.job.image: evil.example/lifeboat:1", "--allowed-images"),
            ),
        ),
    ),
    Case(
        "service-account-not-allowed",
        _job("serviceAccountName", "cluster-admin"),
        (
            Expect(
                "backups",
                "job-serviceaccountname",
                FAILED,
                "ServiceAccountNotAllowed",
                ("spec.job.serviceAccountName: cluster-admin", "--allowed-service-accounts"),
            ),
        ),
    ),
    Case(
        "secret-that-does-not-exist",
        _missing_secret,
        (
            Expect(
                "backups",
                "no-secret",
                FAILED,
                "CreateContainerConfigError",
                ("check spec.storage.s3.credentialsSecretRef (no Secret nowhere in this",),
                job=True,
            ),
        ),
    ),
    Case(
        "secret-key-that-does-not-exist",
        _missing_key,
        (
            Expect(
                "backups",
                "no-key",
                FAILED,
                "CreateContainerConfigError",
                ("Secret half has no key AWS_SECRET_ACCESS_KEY",),
                job=True,
            ),
        ),
    ),
    Case(
        "bucket-that-does-not-exist",
        _missing_bucket,
        (
            Expect(
                "backups",
                "no-bucket",
                FAILED,
                "BucketNotFound",
                ("lifeboat-no-such-bucket", "check spec.storage.s3.bucket"),
                job=True,
            ),
        ),
    ),
    Case(
        "endpoint-that-does-not-answer",
        _unreachable_endpoint,
        (
            Expect(
                "backups",
                "no-endpoint",
                FAILED,
                "StorageUnreachable",
                ("check spec.storage.s3.endpoint",),
                job=True,
            ),
        ),
    ),
    Case(
        "restore-of-a-missing-backup",
        _missing_backup,
        (
            Expect(
                "restores",
                "orphan",
                FAILED,
                "BackupNotFound",
                ("nothing-here", "spec.backupRef.name"),
            ),
        ),
    ),
    Case(
        "restore-of-a-failed-backup",
        _failed_backup,
        (
            Expect(
                "backups",
                "broken",
                FAILED,
                "DatabaseNotFound",
                ("check spec.database.path",),
                job=True,
            ),
            Expect("restores", "from-broken", FAILED, "BackupFailed", ("Backup broken failed",)),
        ),
    ),
    Case(
        "restore-of-a-backup-in-another-namespace",
        _backup_in_another_namespace,
        (
            Expect(
                "restores",
                "cross-namespace",
                FAILED,
                "BackupNotFound",
                ("Backup billing-db does not exist in namespace {namespace}",),
            ),
        ),
    ),
    Case(
        "restore-into-another-engine",
        _another_engine,
        (
            Expect("backups", "lite", "Completed", job=True),
            Expect(
                "restores",
                "into-mariadb",
                FAILED,
                INVALID,
                ("spec.target.engine: mariadb cannot receive a sqlite backup",),
            ),
        ),
    ),
    Case("refused-by-the-api-server", _refused_by_the_api_server),
    Case(
        "spec-edits-after-acceptance",
        _edited_after_acceptance,
        (
            Expect("backups", "fixed", "Completed", job=True),
            Expect("restores", "fixed-restore", "Completed", job=True),
        ),
    ),
    Case(
        "name-too-long-for-a-job-or-a-label",
        _long_name,
        (Expect("backups", LONG_NAME, "Completed", job=True),),
    ),
]


def jobs_for(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return [
        job
        for job in cluster.jobs()
        if any(owner["name"] == name for owner in job["metadata"].get("ownerReferences", []))
    ]


def check(cluster: Cluster, expect: Expect) -> None:
    status = cluster.wait_phase(expect.plural, expect.name, "Completed", "Failed", timeout=90)
    assert status["phase"] == expect.phase, (expect, status)
    if expect.reason is not None:
        assert status["reason"] == expect.reason, (expect, status)
        stalled = {c["type"]: c for c in status["conditions"]}["Stalled"]
        assert (stalled["status"], stalled["reason"]) == ("True", expect.reason)
    for said in expect.says:
        words = said.format(namespace=cluster.namespace)
        assert words in status["message"], (words, status["message"])
    if not expect.job:
        assert jobs_for(cluster, expect.name) == [], f"{expect.name} got a Job"
    for job in jobs_for(cluster, expect.name):
        assert len(job["metadata"]["name"]) <= MAX_NAME


@pytest.fixture
def stage(cluster: Cluster, sqlite_shop: SqliteShop, s3_bucket: S3Bucket) -> Stage:
    return Stage(cluster, sqlite_shop, s3_bucket)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_input_is_refused_with_the_field_named(
    stage: Stage, lifeboat_operator: OperatorControl, case: Case
) -> None:
    case.setup(stage)
    for expect in case.expect:
        check(stage.cluster, expect)


def test_all_the_bad_input_at_once_then_a_good_backup_still_completes(
    stage: Stage, lifeboat_operator: OperatorControl
) -> None:
    """One operator, every bad object of the table: each ends as it does alone, and the
    operator is not crashed, wedged or slowed into missing the good Backup that comes last."""
    for case in CASES:
        case.setup(stage)
    for case in CASES:
        for expect in case.expect:
            check(stage.cluster, expect)
    stage.cluster.create("backups", "good-after-all", stage.shop.spec())
    check(stage.cluster, Expect("backups", "good-after-all", "Completed", job=True))
    assert lifeboat_operator.running


# -- a Secret that appears later, a Backup still running, a Job Kubernetes refuses ---------------


def test_a_secret_created_while_the_pod_waits_is_picked_up_without_reapplying(
    stage: Stage, lifeboat_operator: OperatorControl
) -> None:
    lifeboat_operator.stop()
    lifeboat_operator.start(stuck_pod_seconds=60.0)
    cluster = stage.cluster
    cluster.create("backups", "late-secret", s3_spec(stage, credentialsSecretRef={"name": "late"}))

    def waiting_on_the_secret() -> bool:
        pods = cluster.core.list_namespaced_pod(cluster.namespace).items
        return any(
            (s.state.waiting and s.state.waiting.reason) == "CreateContainerConfigError"
            for pod in pods
            for s in (pod.status.container_statuses or [])
        )

    cluster.wait_for(waiting_on_the_secret, message="a Pod waiting on the missing Secret")
    # Kubernetes counts a Pod that waits for its Secret as active: the Backup may say Running.
    assert cluster.status("backups", "late-secret")["phase"] in ("Pending", "Running")
    s3_secret(stage, "late")

    status = cluster.wait_phase("backups", "late-secret", "Completed", "Failed")
    assert (status["phase"], status["reason"]) == ("Completed", "Completed"), status
    stored = stage.s3.keys()
    assert any(key.endswith("/manifest.json") for key in stored), stored


def test_a_restore_of_a_running_backup_waits_for_it_then_restores(
    stage: Stage, lifeboat_operator: OperatorControl
) -> None:
    cluster = stage.cluster
    cluster.runner.hold_when(lambda namespace, name: name.startswith("slow-"))
    cluster.create("backups", "slow", stage.shop.spec())
    cluster.wait_for(lambda: cluster.status("backups", "slow").get("jobName"))
    cluster.create("restores", "eager", {"backupRef": {"name": "slow"}})
    waiting = cluster.wait_phase("restores", "eager", "Pending")
    cluster.wait_for(
        lambda: cluster.status("restores", "eager").get("reason") == "WaitingForBackup"
    )
    assert "waiting for Backup slow to complete" in cluster.status("restores", "eager")["message"]
    assert waiting["phase"] == "Pending"
    assert jobs_for(cluster, "eager") == []

    cluster.runner.hold_when(None)
    cluster.runner.release(cluster.status("backups", "slow")["jobName"], cluster.namespace)
    assert cluster.wait_phase("backups", "slow", "Completed", "Failed")["phase"] == "Completed"
    status = cluster.wait_phase("restores", "eager", "Completed", "Failed")
    assert status["phase"] == "Completed", status


def test_a_job_the_api_server_refuses_fails_its_object_once_and_the_operator_goes_on(
    stage: Stage, lifeboat_operator: OperatorControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value Kubernetes validates and the schema does not (422 on the Job): Failed with
    JobRejected and Kubernetes' words, not a handler retried for ever."""
    from kubernetes.client.exceptions import ApiException as Refusal

    from lifeboat.controller import jobs
    from lifeboat.kube.objects import KubeError

    real = jobs.create_or_adopt_job

    def refusing(api: Any, job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        if job["metadata"]["name"].startswith("refused-"):
            refusal = Refusal(status=422, reason="Unprocessable Entity")
            refusal.body = '{"message": "Job.batch is invalid: spec.template.spec.x: Invalid"}'
            raise KubeError(f"creating Job {job['metadata']['name']}", refusal)
        return real(api, job)

    monkeypatch.setattr(jobs, "create_or_adopt_job", refusing)
    cluster = stage.cluster
    cluster.create("backups", "refused", stage.shop.spec())
    status = cluster.wait_phase("backups", "refused", "Completed", "Failed")
    assert (status["phase"], status["reason"]) == ("Failed", "JobRejected")
    assert "spec.template.spec.x: Invalid" in status["message"]
    assert "spec.job" in status["message"]
    cluster.create("backups", "accepted", stage.shop.spec())
    assert cluster.wait_phase("backups", "accepted", "Completed", "Failed")["phase"] == "Completed"


# -- tenancy ------------------------------------------------------------------------------------


def test_by_default_only_the_worker_image_and_service_account_run(
    stage: Stage, lifeboat_operator: OperatorControl
) -> None:
    lifeboat_operator.stop()
    lifeboat_operator.start(job_policy=JobPolicy())
    cluster = stage.cluster
    cluster.create("backups", "own-image", stage.shop.spec(job={"image": TEST_IMAGE}))
    cluster.create("backups", "mirror", stage.shop.spec(job={"image": "lifeboat:mirror"}))
    cluster.create("backups", "as-default", stage.shop.spec(job={"serviceAccountName": "default"}))

    assert cluster.wait_phase("backups", "own-image", "Completed", "Failed")["phase"] == "Completed"
    for name, reason, words in (
        ("mirror", "ImageNotAllowed", "nothing (the default)"),
        ("as-default", "ServiceAccountNotAllowed", "worker ServiceAccount lifeboat-worker"),
    ):
        status = cluster.wait_phase("backups", name, "Completed", "Failed")
        assert (status["phase"], status["reason"]) == ("Failed", reason)
        assert words in status["message"]
        assert jobs_for(cluster, name) == []
        cluster.wait_for(
            lambda n=name, r=reason, m=status["message"]: (
                (r, f"Failed: {m}")  # type: ignore[misc]
                in cluster.events_for(n)
            ),
            message=f"a Warning Event {reason}",
        )


def test_allowed_overrides_reach_the_job(stage: Stage, lifeboat_operator: OperatorControl) -> None:
    lifeboat_operator.stop()
    lifeboat_operator.start(
        job_policy=JobPolicy(
            allowed_images=("registry.example/lifeboat:*",),
            allowed_service_accounts=(f"{stage.cluster.namespace}/backup-irsa",),
        )
    )
    cluster = stage.cluster
    job = {"image": "registry.example/lifeboat:0.1.0", "serviceAccountName": "backup-irsa"}
    cluster.create("backups", "mirrored", stage.shop.spec(job=job))
    cluster.create(
        "backups", "elsewhere", stage.shop.spec(job={"image": "registry.example/other:1"})
    )
    status = cluster.wait_phase("backups", "mirrored", "Completed", "Failed")
    assert status["phase"] == "Completed", status
    (made,) = jobs_for(cluster, "mirrored")
    pod = made["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example/lifeboat:0.1.0"
    assert pod["serviceAccountName"] == "backup-irsa"
    refused = cluster.wait_phase("backups", "elsewhere", "Completed", "Failed")
    assert refused["reason"] == "ImageNotAllowed"
    assert "registry.example/lifeboat:*" in refused["message"]


def test_a_schedule_whose_template_is_refused_stalls_and_creates_no_backup(
    stage: Stage, lifeboat_operator: OperatorControl
) -> None:
    lifeboat_operator.stop()
    lifeboat_operator.start(job_policy=JobPolicy(), schedule_check_seconds=0.5)
    cluster = stage.cluster
    template = stage.shop.spec(job={"image": "evil.example/x:1"})
    cluster.create("backupschedules", "nightly", {"schedule": "* * * * *", "template": template})
    cluster.wait_for(
        lambda: any(
            c["type"] == "Stalled" and c["status"] == "True"
            for c in cluster.status("backupschedules", "nightly").get("conditions") or []
        ),
        message="the schedule stalled",
    )
    stalled = {c["type"]: c for c in cluster.status("backupschedules", "nightly")["conditions"]}[
        "Stalled"
    ]
    assert stalled["reason"] == "ImageNotAllowed"
    assert stalled["message"].startswith("spec.template.job.image: evil.example/x:1")

    def backups() -> list[dict[str, Any]]:
        listed = cluster.custom.list_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, "backups"
        )
        return list(listed["items"])

    assert backups() == []
    # Allowed, the same schedule runs: it was the allow-list, nothing else, that held it.
    lifeboat_operator.stop()
    lifeboat_operator.start(
        job_policy=JobPolicy(allowed_images=("evil.example/*",)), schedule_check_seconds=0.5
    )
    cluster.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        cluster.namespace,
        "backupschedules",
        "nightly",
        {"metadata": {"annotations": {"lifeboat.dev/trigger": "now"}}},
    )
    cluster.wait_for(backups, message="the schedule's Backup")


def test_the_worker_refuses_to_write_another_objects_status(
    stage: Stage, lifeboat_operator: OperatorControl
) -> None:
    """A Job made by hand (or edited) whose --report-status names another Backup than the one
    its LIFEBOAT_STATUS_TARGET says: the worker stops before doing anything, with
    StatusTargetRefused, and the other Backup's status is untouched."""
    cluster = stage.cluster
    cluster.create("backups", "victim", stage.shop.spec())
    victim = cluster.wait_phase("backups", "victim", "Completed", "Failed")
    (own,) = jobs_for(cluster, "victim")
    container = own["spec"]["template"]["spec"]["containers"][0]
    args = list(container["args"])
    args[args.index("--report-status") + 1] = f"backups/{cluster.namespace}/victim"
    env = [
        e if e["name"] != "LIFEBOAT_STATUS_TARGET" else {**e, "value": "backups/x/attacker"}
        for e in container["env"]
    ]
    body = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "forged", "namespace": cluster.namespace},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    **own["spec"]["template"]["spec"],
                    "containers": [{**container, "args": args, "env": env}],
                }
            },
        },
    }
    for key in ("nodeName",):
        body["spec"]["template"]["spec"].pop(key, None)
    cluster.batch.create_namespaced_job(cluster.namespace, body)

    def finished() -> dict[str, Any] | None:
        job = cluster.batch.read_namespaced_job("forged", cluster.namespace)
        conditions = {c.type: c for c in (job.status.conditions or [])}
        return conditions.get("Failed") or conditions.get("Complete")  # type: ignore[no-any-return]

    cluster.wait_for(finished, message="the forged Job finished")
    assert cluster.batch.read_namespaced_job("forged", cluster.namespace).status.failed == 1
    pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector="job-name=forged")
    terminated = pods.items[0].status.container_statuses[0].state.terminated
    assert terminated.exit_code == 2
    assert "StatusTargetRefused" in (terminated.message or "")
    assert cluster.status("backups", "victim") == victim


def test_secrets_are_looked_up_in_the_objects_own_namespace_only(
    stage: Stage, lifeboat_operator: OperatorControl
) -> None:
    """A Secret with the right name in another namespace is not used: the Job's secretKeyRef
    has no namespace, so the kubelet looks in the Backup's."""
    cluster = stage.cluster
    ensure_namespace(cluster, OTHER_NAMESPACE)
    data = {k: base64.b64encode(v.encode()).decode() for k, v in stage.s3.env.items()}
    cluster.core.create_namespaced_secret(
        OTHER_NAMESPACE, {"metadata": {"name": "shared"}, "data": data}
    )
    cluster.create("backups", "borrower", s3_spec(stage, credentialsSecretRef={"name": "shared"}))
    # The Job is deleted once its Pod is given up on: read it while it waits.
    made = cluster.wait_for(lambda: jobs_for(cluster, "borrower"), message="the borrower's Job")
    status = cluster.wait_phase("backups", "borrower", "Completed", "Failed")
    assert (status["phase"], status["reason"]) == ("Failed", "CreateContainerConfigError")
    assert "no Secret shared in this namespace" in status["message"]
    (job,) = made
    for env in job["spec"]["template"]["spec"]["containers"][0]["env"]:
        ref = (env.get("valueFrom") or {}).get("secretKeyRef")
        if ref is not None:
            assert set(ref) == {"name", "key"}  # no namespace: the Pod's own


def test_a_backup_of_an_odd_named_postgresql_database_round_trips_through_the_operator(
    stage: Stage, lifeboat_operator: OperatorControl, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Quotes, spaces, `;`, `$(...)`, backticks and non-ASCII in the database's and a table's
    names: through the Backup's spec, the Job's DATABASE_URL, pg_dump and pg_restore, as data."""
    from psycopg import sql

    from tests.integration.test_bad_input_cli import ODD_NAME, ODD_TABLE, odd_postgres_database

    db = odd_postgres_database(request)
    db.execute(sql.SQL("CREATE TABLE {} (id int, note text)").format(sql.Identifier(ODD_TABLE)))
    db.execute(
        sql.SQL("INSERT INTO {} SELECT g, 'row ' || g FROM generate_series(1, 50) g").format(
            sql.Identifier(ODD_TABLE)
        )
    )
    original = db.fingerprint()
    cluster = stage.cluster
    cluster.secret("odd-db", {"password": db.password})
    s3_secret(stage, "odd-s3")
    spec = s3_spec(stage, credentialsSecretRef={"name": "odd-s3"})
    spec["database"] = {
        "engine": "postgresql",
        "host": db.server.host,
        "port": db.server.port,
        "name": ODD_NAME,
        "user": db.user,
        "passwordSecretRef": {"name": "odd-db", "key": "password"},
    }
    cluster.create("backups", "odd", spec)
    status = cluster.wait_phase("backups", "odd", "Completed", "Failed")
    assert status["phase"] == "Completed", status
    assert status["database"] == ODD_NAME
    assert status["artifact"]["rows"] == 50

    db.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(ODD_TABLE)))
    cluster.create("restores", "odd-back", {"backupRef": {"name": "odd"}})
    restored = cluster.wait_phase("restores", "odd-back", "Completed", "Failed")
    assert restored["phase"] == "Completed", restored
    assert db.fingerprint() == original
