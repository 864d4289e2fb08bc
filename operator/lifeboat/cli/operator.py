"""`lifeboat operator`: run the kopf operator against a cluster."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lifeboat.controller.config import OperatorConfig


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
    parser.set_defaults(handler=_operator)


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
        ),
        resync_seconds=args.resync_seconds,
        stuck_pod_seconds=args.stuck_pod_seconds,
        unschedulable_seconds=args.unschedulable_seconds,
        volume_mount_seconds=args.volume_mount_seconds,
        backup_wait_seconds=args.backup_wait_seconds,
        store_wait_seconds=args.store_wait_seconds,
        store_check_seconds=args.store_check_seconds,
        schedule_check_seconds=args.schedule_check_seconds,
    )


def _operator(args: argparse.Namespace) -> int:
    from lifeboat.controller.operator import run

    run(operator_config(args), liveness_endpoint=args.liveness)
    return 0
