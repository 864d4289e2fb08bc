"""What Backup and Restore status share: phase, conditions (metav1.Condition), measured progress."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated

from pydantic import Field, computed_field

from lifeboat.api.common import (
    CONDITION_REASON_PATTERN,
    CONDITION_TYPE_PATTERN,
    StatusModel,
    Timestamp,
)


class Phase(StrEnum):
    """Where a Backup or Restore is in its life: Pending -> Running -> Completed | Failed."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


class ConditionStatus(StrEnum):
    """metav1.Condition status."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    """Condition types Lifeboat writes. kstatus reads Ready/Reconciling/Stalled."""

    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"
    STORAGE_CLEANUP = "StorageCleanup"
    VERIFIED = "Verified"
    """A BackupSchedule's newest restore drill passed (docs/drills.md)."""


# -- status pieces ----------------------------------------------------------------------------


class Condition(StatusModel):
    """One metav1.Condition: the machine-readable state (kubectl wait, kstatus, Argo CD, Flux)."""

    type: Annotated[str, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    """Condition type: Ready (the operation finished successfully), Reconciling (work in
    progress), Stalled (failed and will not retry without a change), StorageCleanup (deleting
    the stored backup when the object is deleted with deletionPolicy Delete)."""

    status: ConditionStatus
    """True, False or Unknown."""

    reason: Annotated[str, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    """One CamelCase word saying why, for example JobRunning, ChecksumMismatch."""

    message: Annotated[str, Field(max_length=32768)] = ""
    """What happened, for a human: the first place to look when something went wrong."""

    last_transition_time: Timestamp
    """When status last changed."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """metadata.generation this condition was computed from."""


def format_percent(percent: float) -> str:
    """'42%': rounded down, so only a finished operation shows 100%."""
    return f"{math.floor(max(0.0, min(percent, 100.0)))}%"


class ProgressStatus(StatusModel):
    """Measured progress of the running Job, written by the worker (never estimated from time)."""

    percent: Annotated[float, Field(ge=0, le=100)] | None = None
    """Percent done, 0 to 100. Never goes backwards; 100 only once the operation finished."""

    bytes_done: Annotated[int, Field(ge=0)] | None = None
    """Bytes processed so far in the current stage (dump bytes for a backup, artifact bytes for
    a restore)."""

    bytes_total: Annotated[int, Field(ge=0)] | None = None
    """Bytes expected in the current stage: an estimate from the database's catalog for a
    backup, exact for a restore."""

    items_done: Annotated[int, Field(ge=0)] | None = None
    """Items (tables) finished so far."""

    items_total: Annotated[int, Field(ge=0)] | None = None
    """Items (tables) in total."""

    rate_bytes_per_second: Annotated[float, Field(ge=0)] | None = None
    """Throughput over the last few seconds. A rate falling to 0 means the Job is stalled."""

    eta_seconds: Annotated[float, Field(ge=0)] | None = None
    """Estimated seconds left at the current rate."""

    elapsed_seconds: Annotated[float, Field(ge=0)] | None = None
    """Seconds since the worker started."""

    stage: Annotated[str, Field(max_length=63)] | None = None
    """What the worker is doing: for example starting, dumping, uploading, verifying,
    restoring, done."""

    current_item: Annotated[str, Field(max_length=1024)] | None = None
    """The item (table) being processed."""

    updated_at: Timestamp | None = None
    """When the worker wrote this. Much older than a few seconds while Running: the worker is
    stuck or gone; look at the Job's pod."""

    @computed_field(  # type: ignore[prop-decorator]
        description="percent as text for kubectl's Progress column, for example 42%. Derived "
        "from percent whenever progress is written; do not set it by hand."
    )
    @property
    def percent_text(self) -> str | None:
        return None if self.percent is None else format_percent(self.percent)


class OperationStatus(StatusModel):
    """What Backup and Restore status share. The controller owns phase, conditions, times and
    jobName; the worker owns progress and the result (artifact or verification)."""

    phase: Phase | None = None
    """Pending (waiting for the Job to start), Running, Completed or Failed. Completed and
    Failed are final: a new attempt needs a new object."""

    progress: ProgressStatus | None = None
    """Measured progress of the running Job, updated every few seconds by the worker."""

    start_time: Timestamp | None = None
    """When the Job started working on this object."""

    completion_time: Timestamp | None = None
    """When the operation reached Completed or Failed."""

    job_name: Annotated[str, Field(max_length=63)] | None = None
    """Name of the Job doing the work, in the same namespace. Its pod's logs tell the details:
    kubectl logs job/<jobName>."""

    attempts: Annotated[int, Field(ge=0)] | None = None
    """Pods the Job has started so far (1 + retries). Retries stop at job.backoffLimit."""

    message: Annotated[str, Field(max_length=32768)] | None = None
    """The latest human-readable word on this operation: what is happening, or why it failed
    and what to do."""

    reason: Annotated[str, Field(max_length=1024)] | None = None
    """CamelCase reason for the current phase, for example BucketNotFound, AccessDenied,
    ChecksumMismatch, DeadlineExceeded. Stable: safe to alert on."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """metadata.generation the controller last acted on."""

    conditions: (
        Annotated[
            list[Condition],
            Field(
                json_schema_extra={
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["type"],
                }
            ),
        ]
        | None
    ) = None
    """Standard conditions, one per type: Ready, Reconciling, Stalled, StorageCleanup. Wait for
    a result with: kubectl wait --for=condition=Ready."""

    def condition(self, type_: str) -> Condition | None:
        """The condition of this type, if any."""
        return next((c for c in self.conditions or () if c.type == type_), None)
