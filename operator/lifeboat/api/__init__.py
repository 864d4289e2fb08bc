"""The `lifeboat.dev/v1alpha1` API: pydantic models of Backup and Restore, and their CRDs.

The bottom layer: imports nothing else from lifeboat, nor kopf, kubernetes or boto3.

Parse what the API server sends with `Backup.model_validate(body)` or
`BackupSpec.model_validate(body["spec"])`; write status with `status.to_api_dict()` (camelCase,
no None). `describe_validation_error` turns a ValidationError into one line per field.
"""

from lifeboat.api.backup import (
    Backup,
    BackupArtifact,
    BackupSpec,
    BackupStatus,
    BackupTemplate,
    DeletionPolicy,
)
from lifeboat.api.common import (
    API_VERSION,
    BACKUP_KIND,
    BACKUP_PLURAL,
    GROUP,
    RESTORE_KIND,
    RESTORE_PLURAL,
    VERSION,
    CelRule,
    ObjectMeta,
    SecretKeyRef,
    describe_validation_error,
)
from lifeboat.api.database import (
    DEFAULT_PORTS,
    DatabaseSpec,
    Engine,
)
from lifeboat.api.job import (
    JobOptions,
    ResourceQuantities,
    ResourceRequirements,
    Toleration,
    TolerationEffect,
    TolerationOperator,
)
from lifeboat.api.restore import (
    BackupRef,
    Restore,
    RestorePlanCheck,
    RestorePlanStatus,
    RestoreSource,
    RestoreSpec,
    RestoreStatus,
    RestoreVerification,
    ScheduleRef,
)
from lifeboat.api.schedule import (
    SCHEDULE_KIND,
    SCHEDULE_PLURAL,
    BackupSchedule,
    BackupScheduleSpec,
    BackupScheduleStatus,
    ConcurrencyPolicy,
    KeptBackup,
    Retention,
)
from lifeboat.api.status import (
    Condition,
    ConditionStatus,
    ConditionType,
    OperationStatus,
    Phase,
    ProgressStatus,
    format_percent,
)
from lifeboat.api.storage import (
    Compression,
    S3CredentialsSecretRef,
    S3Storage,
    StorageBackend,
    StorageSpec,
    StoreRef,
    VolumeStorage,
)
from lifeboat.api.store import (
    STORE_KIND,
    STORE_PLURAL,
    BackupStore,
    BackupStoreSpec,
    BackupStoreStatus,
)
from lifeboat.contract import format_bytes

BackupPhase = Phase
RestorePhase = Phase

__all__ = [
    "API_VERSION",
    "BACKUP_KIND",
    "BACKUP_PLURAL",
    "DEFAULT_PORTS",
    "GROUP",
    "RESTORE_KIND",
    "RESTORE_PLURAL",
    "SCHEDULE_KIND",
    "SCHEDULE_PLURAL",
    "STORE_KIND",
    "STORE_PLURAL",
    "VERSION",
    "Backup",
    "BackupArtifact",
    "BackupPhase",
    "BackupRef",
    "BackupSchedule",
    "BackupScheduleSpec",
    "BackupScheduleStatus",
    "BackupSpec",
    "BackupStatus",
    "BackupStore",
    "BackupStoreSpec",
    "BackupStoreStatus",
    "BackupTemplate",
    "CelRule",
    "Compression",
    "ConcurrencyPolicy",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "DatabaseSpec",
    "DeletionPolicy",
    "Engine",
    "JobOptions",
    "KeptBackup",
    "ObjectMeta",
    "OperationStatus",
    "Phase",
    "ProgressStatus",
    "ResourceQuantities",
    "ResourceRequirements",
    "Restore",
    "RestorePhase",
    "RestorePlanCheck",
    "RestorePlanStatus",
    "RestoreSource",
    "RestoreSpec",
    "RestoreStatus",
    "RestoreVerification",
    "Retention",
    "S3CredentialsSecretRef",
    "S3Storage",
    "ScheduleRef",
    "SecretKeyRef",
    "StorageBackend",
    "StorageSpec",
    "StoreRef",
    "Toleration",
    "TolerationEffect",
    "TolerationOperator",
    "VolumeStorage",
    "describe_validation_error",
    "format_bytes",
    "format_percent",
]
