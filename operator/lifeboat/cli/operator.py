"""`lifeboat operator`: run the kopf operator against a cluster."""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from lifeboat.cli.logformat import add_log_format_option

if TYPE_CHECKING:
    from lifeboat.api.job import JobTemplateOptions
    from lifeboat.controller.config import OperatorConfig
    from lifeboat.controller.election import ElectionConfig
    from lifeboat.controller.tenancy import JobPolicy


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "operator",
        help="run the operator (Backups, Restores, BackupSchedules, BackupStores)",
        description="Watches Backups and Restores and runs one Job for each, creates one Backup "
        "per BackupSchedule slot and prunes by its retention, and checks BackupStores. Logs in "
        "with the service account inside a cluster, else with --kubeconfig / $KUBECONFIG.",
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, $KUBECONFIG)")
    parser.add_argument(
        "--worker-image",
        default=os.environ.get("LIFEBOAT_WORKER_IMAGE", "ghcr.io/lifeboat-dev/lifeboat:0.1.0"),
        help="image of the dump/restore Jobs ($LIFEBOAT_WORKER_IMAGE)",
    )
    parser.add_argument(
        "--worker-service-account",
        default=os.environ.get("LIFEBOAT_WORKER_SERVICE_ACCOUNT", "lifeboat-worker"),
        help="service account of the Jobs; it needs to patch backups/status and restores/status",
    )
    parser.add_argument(
        "--worker-image-pull-policy",
        choices=["Always", "IfNotPresent", "Never"],
        default=os.environ.get("LIFEBOAT_WORKER_IMAGE_PULL_POLICY", "IfNotPresent"),
        help="imagePullPolicy of the Jobs ($LIFEBOAT_WORKER_IMAGE_PULL_POLICY; default: "
        "IfNotPresent)",
    )
    parser.add_argument(
        "--job-defaults",
        metavar="JSON",
        default=os.environ.get("LIFEBOAT_JOB_DEFAULTS") or None,
        help="what every Job gets where its spec.job says nothing, as JSON with spec.job's "
        "fields podAnnotations, podLabels, resources, nodeSelector, affinity, tolerations, "
        "priorityClassName, ttlSecondsAfterFinished ($LIFEBOAT_JOB_DEFAULTS; the chart's "
        "worker.job). Replaces the built-in defaults: no Istio sidecar, 100m CPU and 256Mi "
        "requested, a 1Gi memory limit",
    )
    parser.add_argument(
        "--allowed-images",
        metavar="PATTERN[,PATTERN...]",
        action="append",
        default=[],
        help="images a Backup's or Restore's spec.job.image may name, besides --worker-image: "
        "glob patterns (* matches any characters, / and : included), e.g. "
        "'registry.example/lifeboat:*' (repeatable; $LIFEBOAT_ALLOWED_IMAGES, comma-separated; "
        "the chart's worker.allowedImages). Default: none, so spec.job.image can only name the "
        "worker image; any other fails the object with ImageNotAllowed and no Job",
    )
    parser.add_argument(
        "--allowed-service-accounts",
        metavar="PATTERN[,PATTERN...]",
        action="append",
        default=[],
        help="ServiceAccounts spec.job.serviceAccountName may name, besides "
        "--worker-service-account: NAME (in any namespace) or NAMESPACE/NAME, globs allowed, "
        "e.g. 'shop/backup-irsa' (repeatable; $LIFEBOAT_ALLOWED_SERVICE_ACCOUNTS, "
        "comma-separated; the chart's worker.allowedServiceAccounts). Default: none, so any "
        "other fails the object with ServiceAccountNotAllowed and no Job",
    )
    parser.add_argument(
        "--job-active-deadline-seconds",
        type=int,
        default=6 * 3600,
        help="activeDeadlineSeconds of the Jobs whose spec.job sets none; 0: no deadline "
        "(default: 6 hours)",
    )
    parser.add_argument("--resync-seconds", type=float, default=10.0)
    parser.add_argument(
        "--stuck-pod-seconds",
        type=float,
        default=120.0,
        help="fail a request whose Pod the API server keeps refusing (FailedCreate: a quota, a "
        "missing service account, a policy) or that waits on an image pull or a missing Secret "
        "for this long (default: 120)",
    )
    parser.add_argument(
        "--unschedulable-seconds",
        type=float,
        default=600.0,
        help="fail a request whose Pod no node can take for this long (default: 600)",
    )
    parser.add_argument(
        "--volume-mount-seconds",
        type=float,
        default=600.0,
        help="fail a request whose Pod cannot attach or mount its volumes for this long "
        "(default: 600)",
    )
    parser.add_argument("--backup-wait-seconds", type=float, default=60.0)
    parser.add_argument(
        "--store-wait-seconds",
        type=float,
        default=60.0,
        help="how long a Backup or Restore waits for the BackupStore its storeRef names before "
        "it fails with StoreNotFound (GitOps may apply the store later; default: 60)",
    )
    parser.add_argument(
        "--store-check-seconds",
        type=float,
        default=300.0,
        help="check each BackupStore this often (and at once when its spec changes) with a "
        "short Job that uses the store's credentials (default: 300)",
    )
    parser.add_argument(
        "--schedule-check-seconds",
        type=float,
        default=10.0,
        help="check each BackupSchedule this often for a slot that has come, a trigger "
        "annotation and retention: slots fire at most this late (default: 10)",
    )
    parser.add_argument(
        "--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument(
        "--readiness",
        metavar="URL",
        help="serve a readiness probe, e.g. http://0.0.0.0:8081/readyz: 200 once the operator "
        "is logged in and watches every kind it handles in every watched namespace, else 503",
    )
    parser.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        default=os.environ.get("LIFEBOAT_METRICS_ADDRESS") or None,
        help="serve Prometheus metrics at http://HOST:PORT/metrics, e.g. :8000 "
        "($LIFEBOAT_METRICS_ADDRESS; default: not served)",
    )
    election = parser.add_argument_group(
        "leader election",
        "Run several operator processes (the chart's replicaCount > 1): one holds a "
        "coordination.k8s.io/v1 Lease and acts, the others stand by and take over within "
        "lease duration + retry period of its last renewal (at once when it stops cleanly).",
    )
    election.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=_flag_from_env("LIFEBOAT_LEADER_ELECT"),
        help="act only while holding the leader Lease ($LIFEBOAT_LEADER_ELECT; default: off, "
        "the chart turns it on)",
    )
    election.add_argument(
        "--leader-election-namespace",
        default=None,
        help="namespace of the Lease (default: $POD_NAMESPACE, else the service account's "
        "namespace, else default)",
    )
    election.add_argument(
        "--leader-election-lease-name",
        default="lifeboat-operator",
        help="name of the Lease (default: lifeboat-operator); operators sharing it elect one",
    )
    election.add_argument(
        "--leader-election-lease-seconds",
        type=int,
        default=15,
        help="how long a Lease nobody renews stays its holder's (default: 15)",
    )
    election.add_argument(
        "--leader-election-renew-deadline-seconds",
        type=float,
        default=10.0,
        help="how long the leader acts without renewing before it exits with code 1 "
        "(default: 10; less than the lease duration)",
    )
    election.add_argument(
        "--leader-election-retry-seconds",
        type=float,
        default=2.0,
        help="how often the leader renews and a standby looks at the Lease (default: 2)",
    )
    add_log_format_option(parser)
    parser.set_defaults(handler=_operator)


def _flag_from_env(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in {"1", "true", "yes", "on"}


def operator_config(args: argparse.Namespace) -> OperatorConfig:
    """The operator's settings from its command line."""
    from lifeboat.builders.jobs import JobDefaults
    from lifeboat.controller.config import OperatorConfig
    from lifeboat.worker.errors import UsageError

    if not args.namespace and not args.all_namespaces:
        raise UsageError("lifeboat operator: pass --namespace NS (repeatable) or --all-namespaces")
    return OperatorConfig(
        namespaces=tuple(args.namespace),
        all_namespaces=args.all_namespaces,
        kubeconfig=args.kubeconfig,
        job_defaults=JobDefaults(
            image=args.worker_image,
            service_account_name=args.worker_service_account,
            active_deadline_seconds=args.job_active_deadline_seconds or None,
            image_pull_policy=args.worker_image_pull_policy,
            template=job_template(args.job_defaults),
        ),
        job_policy=job_policy(args.allowed_images, args.allowed_service_accounts),
        resync_seconds=args.resync_seconds,
        stuck_pod_seconds=args.stuck_pod_seconds,
        unschedulable_seconds=args.unschedulable_seconds,
        volume_mount_seconds=args.volume_mount_seconds,
        backup_wait_seconds=args.backup_wait_seconds,
        store_wait_seconds=args.store_wait_seconds,
        store_check_seconds=args.store_check_seconds,
        schedule_check_seconds=args.schedule_check_seconds,
        metrics_address=_metrics_address(args.metrics_address),
    )


def job_policy(images: list[str], service_accounts: list[str]) -> JobPolicy:
    """--allowed-images and --allowed-service-accounts (else their environment variables),
    checked: a pattern that can never match is a usage error naming it."""
    from lifeboat.controller.tenancy import JobPolicy

    def patterns(given: list[str], variable: str) -> tuple[str, ...]:
        raw = given or [os.environ.get(variable, "")]
        return tuple(p.strip() for value in raw for p in value.split(",") if p.strip())

    allowed_images = patterns(images, "LIFEBOAT_ALLOWED_IMAGES")
    allowed_accounts = patterns(service_accounts, "LIFEBOAT_ALLOWED_SERVICE_ACCOUNTS")
    for pattern in allowed_images:
        _check_pattern("--allowed-images", pattern, r"[^\s]+", "an image or a glob, no spaces")
    for pattern in allowed_accounts:
        _check_pattern(
            "--allowed-service-accounts",
            pattern,
            r"([-a-z0-9.*?\[\]]+/)?[-a-z0-9.*?\[\]]+",
            "NAME or NAMESPACE/NAME: lowercase letters, digits, '-', '.' and glob characters",
        )
    return JobPolicy(allowed_images=allowed_images, allowed_service_accounts=allowed_accounts)


def _check_pattern(flag: str, pattern: str, form: str, expected: str) -> None:
    import re

    from lifeboat.worker.errors import UsageError

    if not re.fullmatch(form, pattern):
        raise UsageError(f"lifeboat operator: {flag}: {pattern!r} is not {expected}")


def job_template(text: str | None) -> JobTemplateOptions:
    """--job-defaults, checked as a Backup's spec.job is: a usage error names the field."""
    from pydantic import ValidationError

    from lifeboat.api.common import describe_validation_error
    from lifeboat.api.job import JobTemplateOptions
    from lifeboat.builders.jobs import default_job_template
    from lifeboat.worker.errors import UsageError

    if text is None:
        return default_job_template()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"lifeboat operator: --job-defaults is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise UsageError("lifeboat operator: --job-defaults must be a JSON object")
    # Helm values spell "unset" as null, {} or []: they set nothing here.
    given = {key: value for key, value in raw.items() if value not in (None, {}, [])}
    try:
        return JobTemplateOptions.model_validate(given)
    except ValidationError as exc:
        problems = describe_validation_error(exc, ("--job-defaults",)).replace("\n", "; ")
        raise UsageError(f"lifeboat operator: {problems}") from None


def _metrics_address(address: str | None) -> str | None:
    """The --metrics-address as given, once checked (a usage error names the expected form)."""
    from lifeboat.controller.metrics import parse_address
    from lifeboat.worker.errors import UsageError

    if not address:
        return None
    try:
        parse_address(address)
    except ValueError as exc:
        raise UsageError(f"lifeboat operator: --metrics-address: {exc}") from None
    return address


def _check_endpoint(flag: str, endpoint: str) -> None:
    from lifeboat.controller.readiness import parse_endpoint
    from lifeboat.worker.errors import UsageError

    try:
        parse_endpoint(endpoint)
    except ValueError as exc:
        raise UsageError(f"lifeboat operator: {flag}: {exc}") from None


def election_config(args: argparse.Namespace) -> ElectionConfig | None:
    """The leader election settings, checked; None without --leader-elect."""
    from lifeboat.controller.election import ElectionConfig, election_identity
    from lifeboat.controller.leadership import ElectionTiming
    from lifeboat.worker.errors import UsageError

    if not args.leader_elect:
        return None
    try:
        timing = ElectionTiming(
            lease_seconds=args.leader_election_lease_seconds,
            renew_deadline_seconds=args.leader_election_renew_deadline_seconds,
            retry_seconds=args.leader_election_retry_seconds,
        )
    except ValueError as exc:
        raise UsageError(f"lifeboat operator: {exc}") from None
    return ElectionConfig(
        namespace=args.leader_election_namespace or _own_namespace(),
        name=args.leader_election_lease_name,
        identity=election_identity(),
        timing=timing,
    )


def _own_namespace() -> str:
    from pathlib import Path

    from lifeboat.kube.client import in_cluster

    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    service_account = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if in_cluster() and service_account.exists():
        return service_account.read_text().strip()
    return "default"


def _operator(args: argparse.Namespace) -> int:
    from lifeboat.controller.operator import run

    config = operator_config(args)
    election = election_config(args)
    if args.readiness is not None:
        _check_endpoint("--readiness", args.readiness)
    run(
        config,
        liveness_endpoint=args.liveness,
        readiness_endpoint=args.readiness,
        election=election,
    )
    return 0
