"""`BackupStore`: storage defined once (a bucket or a volume, and the credentials reference),
named by Backups, schedule templates and Restores with `spec.storage.storeRef`.

The operator checks every few minutes that the store is reachable, by a short Job that uses the
store's credentials (the operator itself never reads them), and says so in the status: Ready
True, or False with the reason (BucketNotFound, AccessDenied, StorageUnreachable). Nothing
secret is ever written there.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field

from lifeboat.api.common import ApiModel, ObjectMeta, StatusModel, Timestamp
from lifeboat.api.status import Condition
from lifeboat.api.storage import StorageBackend

STORE_KIND: Final = "BackupStore"
STORE_PLURAL: Final = "backupstores"


class BackupStoreSpec(StorageBackend):
    """The storage: exactly one of s3 (a bucket, with its endpoint, region and credentials
    Secret) or volume (a PersistentVolumeClaim)."""


class BackupStoreStatus(StatusModel):
    """Whether the store is reachable, checked by the operator every few minutes."""

    uri: Annotated[str, Field(max_length=4096)] | None = None
    """Where backups in this store go, for example s3://backups/shop/ (no credentials)."""

    last_check_time: Timestamp | None = None
    """When the store was last checked."""

    last_success_time: Timestamp | None = None
    """When a check last succeeded."""

    message: Annotated[str, Field(max_length=32768)] | None = None
    """The result of the last check, for people: what failed and what to do."""

    reason: Annotated[str, Field(max_length=1024)] | None = None
    """CamelCase reason of the last check: Reachable; the worker's reason when the storage
    refused (BucketNotFound, AccessDenied, StorageUnreachable, InvalidArgument); Kubernetes'
    reason when the check's Pod could not run (ImagePullBackOff, FailedCreate, Unschedulable,
    DeadlineExceeded); CheckFailed when it died without saying why; InvalidSpec; Checking
    while the first check of a spec runs. Stable: safe to alert on."""

    check_job_name: Annotated[str, Field(max_length=63)] | None = None
    """The Job doing the latest check; kubectl logs job/<checkJobName> while it exists (it is
    deleted ten minutes after it ends)."""

    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """metadata.generation the last check was made for."""

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
    """Ready: the last check reached the storage with the store's credentials (True), or why
    not (False). kubectl wait --for=condition=Ready backupstore/<name>."""


class BackupStore(ApiModel):
    """Storage defined once: an S3-compatible bucket (endpoint, region, credentials Secret) or
    a PersistentVolumeClaim, named by Backups, BackupSchedule templates and Restores with
    spec.storage.storeRef. Its status says whether it is reachable, checked every few minutes;
    it never holds a secret (credentials stay in the referenced Secret)."""

    api_version: Literal["lifeboat.dev/v1alpha1"] = "lifeboat.dev/v1alpha1"
    """lifeboat.dev/v1alpha1."""

    kind: Literal["BackupStore"] = "BackupStore"
    """BackupStore."""

    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    """Standard object metadata."""

    spec: BackupStoreSpec
    """The storage settings."""

    status: BackupStoreStatus = Field(default_factory=BackupStoreStatus)
    """Whether the store is reachable, written by the operator."""
