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
    StorageSpec,
    VolumeStorage,
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
    "VERSION",
    "Backup",
    "BackupArtifact",
    "BackupPhase",
    "BackupRef",
    "BackupSpec",
    "BackupStatus",
    "CelRule",
    "Compression",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "DatabaseSpec",
    "DeletionPolicy",
    "Engine",
    "JobOptions",
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
    "S3CredentialsSecretRef",
    "S3Storage",
    "SecretKeyRef",
    "StorageSpec",
    "Toleration",
    "TolerationEffect",
    "TolerationOperator",
    "VolumeStorage",
    "describe_validation_error",
    "format_bytes",
    "format_percent",
]
