"""The operator's own settings: flags and environment, not per-resource spec."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lifeboat.builders.jobs import JobDefaults
from lifeboat.controller.tenancy import JobPolicy
from lifeboat.controller.transitions import StartLimits


def utc_now() -> datetime:
    """The real clock, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty with `all_namespaces` means the whole cluster."""
    all_namespaces: bool = False
    kubeconfig: str | None = None
    """None: the service account in a Pod, else $KUBECONFIG or ~/.kube/config."""
    job_defaults: JobDefaults = field(default_factory=JobDefaults)
    job_policy: JobPolicy = field(default_factory=JobPolicy)
    """What spec.job may override: the allowed images and ServiceAccounts (see tenancy.py)."""
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
    store_wait_seconds: float = 60.0
    """How long a Backup or Restore waits for the BackupStore its storeRef names, when it does
    not exist (GitOps may apply it later), before it fails with StoreNotFound."""
    store_check_seconds: float = 300.0
    """How often each BackupStore is checked for reachability (also at once after a spec
    change), by a short Job with the store's credentials."""
    schedule_check_seconds: float = 10.0
    """How often each BackupSchedule is checked for a slot that has come (slots fire at most
    this late), a trigger annotation and retention. Its Backups' phase changes and its edits
    are handled at once."""
    clock: Callable[[], datetime] = utc_now
    """The operator's clock, the only one schedules read: when a slot has come, retention's
    "now", the times schedules write. Tests pass a clock they advance."""
    metrics_address: str | None = None
    """Where to serve Prometheus metrics (`HOST:PORT`, `:PORT`), at /metrics; None: nowhere."""
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
