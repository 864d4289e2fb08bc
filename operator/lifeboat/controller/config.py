"""The operator's own settings: flags and environment, not per-resource spec."""

from __future__ import annotations

from dataclasses import dataclass, field

from lifeboat.builders.jobs import JobDefaults
from lifeboat.controller.transitions import StartLimits


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty with `all_namespaces` means the whole cluster."""
    all_namespaces: bool = False
    kubeconfig: str | None = None
    """None: the service account in a Pod, else $KUBECONFIG or ~/.kube/config."""
    job_defaults: JobDefaults = field(default_factory=JobDefaults)
    resync_seconds: float = 10.0
    """How often unfinished Backups and Restores are checked without any event (vanished Jobs,
    Pods that do not start, a Restore's Backup finishing)."""
    stuck_pod_seconds: float = 120.0
    """How long a Job's Pod may stay refused by the API server (FailedCreate: a quota, a missing
    service account, a policy), or wait on an image pull or a missing Secret, before it fails."""
    unschedulable_seconds: float = 600.0
    """How long a Job's Pod may stay unschedulable (no node fits; an autoscaler may add one)."""
    volume_mount_seconds: float = 600.0
    """How long a scheduled Pod may fail to attach or mount its volumes before it fails."""
    backup_wait_seconds: float = 60.0
    """How long a Restore waits for a Backup that does not exist (GitOps may apply it later)."""
    cleanup_retry_seconds: float = 30.0
    error_backoffs: tuple[float, ...] = (1, 2, 5, 10, 30, 60)
    handler_backoff_seconds: float = 5.0

    @property
    def start_limits(self) -> StartLimits:
        return StartLimits(
            stuck_seconds=self.stuck_pod_seconds,
            unschedulable_seconds=self.unschedulable_seconds,
            volume_seconds=self.volume_mount_seconds,
        )
