"""`lifeboat operator`: run the kopf operator against a cluster."""

from __future__ import annotations

import argparse
import os
from typing import Any


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "operator",
        help="run the operator (reconciles Backup and Restore resources)",
        description="Watches Backups and Restores and runs one Job for each. Logs in with the "
        "service account inside a cluster, else with --kubeconfig / $KUBECONFIG.",
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
    parser.add_argument("--resync-seconds", type=float, default=10.0)
    parser.add_argument("--stuck-pod-seconds", type=float, default=120.0)
    parser.add_argument("--backup-wait-seconds", type=float, default=60.0)
    parser.add_argument(
        "--liveness", metavar="URL", help="serve a liveness probe, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.set_defaults(handler=_operator)


def _operator(args: argparse.Namespace) -> int:
    from lifeboat.builders.jobs import JobDefaults
    from lifeboat.controller.config import OperatorConfig
    from lifeboat.controller.operator import run
    from lifeboat.worker.errors import UsageError

    if not args.namespace and not args.all_namespaces:
        raise UsageError("lifeboat operator: pass --namespace NS (repeatable) or --all-namespaces")
    config = OperatorConfig(
        namespaces=tuple(args.namespace),
        all_namespaces=args.all_namespaces,
        kubeconfig=args.kubeconfig,
        job_defaults=JobDefaults(
            image=args.worker_image, service_account_name=args.worker_service_account
        ),
        resync_seconds=args.resync_seconds,
        stuck_pod_seconds=args.stuck_pod_seconds,
        backup_wait_seconds=args.backup_wait_seconds,
    )
    run(config, liveness_endpoint=args.liveness)
    return 0
