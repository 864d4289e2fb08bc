"""Shapes shared by Backup and Restore: database, storage, Job tuning, conditions, progress.

These models are the one source of truth for the `lifeboat.dev/v1alpha1` schema: `crd.py`
turns them into `crds/*.yaml`. Field docstrings become the descriptions `kubectl explain`
shows, so they are written for whoever is on call. JSON is camelCase, Python is snake_case.

Rules that span several fields live twice, on purpose: as CEL (`x-kubernetes-validations`, so
`kubectl apply` rejects the object at once) and as a pydantic validator (so the controller and
the CLI reject the same input with the same words). The CEL rules sit next to the model they
guard; tests evaluate both against the same cases.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationError,
    WithJsonSchema,
    computed_field,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from lifeboat import contract

# -- names ------------------------------------------------------------------------------------

GROUP: Final = "lifeboat.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
BACKUP_KIND: Final = "Backup"
RESTORE_KIND: Final = "Restore"
BACKUP_PLURAL: Final = "backups"
RESTORE_PLURAL: Final = "restores"

# -- patterns (RE2-compatible: the API server evaluates them in Go) ---------------------------

DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A Kubernetes object name (Secret, PersistentVolumeClaim, Backup, ServiceAccount)."""

SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"  # noqa: S105 - a pattern, not a secret
"""A key inside a Secret's data."""

_SEGMENT = r"(?:[^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+|\.)?"
SAFE_PATH_PATTERN: Final = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
"""A path inside a volume with no `..` segment, so it cannot climb out of the mount."""

QUANTITY_PATTERN: Final = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
"""A non-negative Kubernetes resource quantity: 500m, 2, 1.5, 512Mi, 4Gi."""

CONDITION_TYPE_PATTERN: Final = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CONDITION_REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


# -- CEL --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CelRule:
    """One `x-kubernetes-validations` entry: `rule` must hold, else the server says `message`."""

    rule: str
    message: str

    def as_schema(self) -> dict[str, str]:
        return {"rule": self.rule, "message": self.message}


def cel(*rules: CelRule) -> dict[str, Any]:
    """`json_schema_extra` attaching CEL rules to a model's schema."""
    return {"x-kubernetes-validations": [r.as_schema() for r in rules]}


# -- base models ------------------------------------------------------------------------------


class ApiModel(BaseModel):
    """Base of every API model: camelCase in JSON, snake_case in Python, docstrings as docs."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="ignore",
    )

    def to_api_dict(self) -> dict[str, Any]:
        """The JSON the API server stores: camelCase, no None, enums and times as strings."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SpecModel(ApiModel):
    """Spec shapes reject unknown fields: a typo must fail loudly, not be dropped."""

    model_config = ConfigDict(extra="forbid")


class StatusModel(ApiModel):
    """Status shapes ignore unknown fields: an older operator must still read a newer status."""

    model_config = ConfigDict(extra="ignore")


def invalid(kind: str, message: str) -> PydanticCustomError:
    """A validation error whose message is shown to the user as written (no 'Value error, ')."""
    return PydanticCustomError(kind, message)


@dataclass(frozen=True)
class Matches:
    """`Annotated` metadata: a regex `pattern` in the schema, and in Python the same check with
    an error that says what is expected instead of quoting the regex."""

    pattern: str
    expected: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = self.pattern
        return json_schema

    def _check(self, value: str) -> str:
        if not re.search(self.pattern, value):
            raise invalid("pattern", f"{value!r} is not {self.expected}")
        return value


# -- enums ------------------------------------------------------------------------------------


class Engine(StrEnum):
    """The database engine: decides the dump/restore tools and which fields are needed."""

    POSTGRESQL = "postgresql"
    MYSQL = "mysql"
    MARIADB = "mariadb"
    SQLITE = "sqlite"


NETWORK_ENGINES: Final = frozenset({Engine.POSTGRESQL, Engine.MYSQL, Engine.MARIADB})
DEFAULT_PORTS: Final[dict[Engine, int]] = {
    engine: contract.DEFAULT_PORTS[engine.value] for engine in NETWORK_ENGINES
}


class Compression(StrEnum):
    """How the dump is compressed before it is stored."""

    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"


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


class TolerationOperator(StrEnum):
    """How a toleration matches a taint's value."""

    EXISTS = "Exists"
    EQUAL = "Equal"


class TolerationEffect(StrEnum):
    """The taint effect a toleration matches."""

    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


# -- references -------------------------------------------------------------------------------

ObjectName = Annotated[
    str,
    Field(min_length=1, max_length=253),
    Matches(
        DNS_SUBDOMAIN_PATTERN,
        "a Kubernetes object name: lowercase letters, digits, '-' and '.', starting and ending "
        "with a letter or digit",
    ),
]
SecretKey = Annotated[
    str,
    Field(min_length=1, max_length=253),
    Matches(SECRET_KEY_PATTERN, "a Secret key: letters, digits, '-', '_' and '.' only"),
]
_NO_DOTDOT = Matches(SAFE_PATH_PATTERN, "a safe path: it must not contain a '..' segment")
SafePath = Annotated[str, Field(max_length=4096), _NO_DOTDOT]
Timestamp = AwareDatetime


class SecretKeyRef(SpecModel):
    """A key in a Secret in the same namespace as the Backup or Restore."""

    name: ObjectName
    """Name of the Secret, in the same namespace as this object."""

    key: SecretKey = "password"
    """Key inside the Secret whose value is the password. Default: password."""


class S3CredentialsSecretRef(SpecModel):
    """A Secret holding an S3 access key pair, in the same namespace as this object."""

    name: ObjectName
    """Name of the Secret, in the same namespace as this object."""

    access_key_id_key: SecretKey = "AWS_ACCESS_KEY_ID"
    """Key inside the Secret holding the access key id. Default: AWS_ACCESS_KEY_ID."""

    secret_access_key_key: SecretKey = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a key name
    """Key inside the Secret holding the secret access key. Default: AWS_SECRET_ACCESS_KEY."""


# -- database ---------------------------------------------------------------------------------

DATABASE_RULES: Final = (
    CelRule(
        rule=("self.engine != 'sqlite' || (has(self.persistentVolumeClaim) && has(self.path))"),
        message=(
            "engine sqlite needs persistentVolumeClaim (the claim holding the database file) "
            "and path (the file inside that claim)"
        ),
    ),
    CelRule(
        rule="self.engine == 'sqlite' || (has(self.host) && has(self.name) && has(self.user))",
        message="engines postgresql, mysql and mariadb need host, name (the database) and user",
    ),
    CelRule(
        rule=(
            "self.engine == 'sqlite' ? !(has(self.host) || has(self.port) || has(self.name)"
            " || has(self.user) || has(self.passwordSecretRef))"
            " : !(has(self.persistentVolumeClaim) || has(self.path))"
        ),
        message=(
            "host, port, name, user and passwordSecretRef are for postgresql, mysql and mariadb; "
            "persistentVolumeClaim and path are for sqlite: remove the fields this engine does "
            "not use"
        ),
    ),
)


class DatabaseSpec(SpecModel):
    """The database to back up from or restore into.

    postgresql, mysql and mariadb are reached over the network: set host, name and user (port
    and passwordSecretRef as needed). sqlite is a file on a PersistentVolumeClaim: set
    persistentVolumeClaim and path, nothing else.
    """

    model_config = ConfigDict(json_schema_extra=cel(*DATABASE_RULES))

    engine: Engine
    """Database engine: postgresql, mysql, mariadb or sqlite. Decides which dump and restore
    tools the Job runs and which other fields are needed."""

    host: (
        Annotated[
            str,
            Field(min_length=1, max_length=253),
            Matches(r"^[^\s/@]+$", "a host name: no scheme, no user@, no path, no spaces"),
        ]
        | None
    ) = None
    """DNS name or IP of the database server as seen from the Job's pod, for example
    postgres.shop.svc. No scheme, no port (use port). postgresql, mysql, mariadb only."""

    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """TCP port of the database server. Unset: the engine's default (5432 for postgresql,
    3306 for mysql and mariadb)."""

    name: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """Name of the database on the server (not the Kubernetes Service). postgresql, mysql,
    mariadb only."""

    user: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    """Database user the Job logs in as. A backup needs read access to every table (and, for
    postgresql, to sequences and large objects); a restore needs to create and drop them."""

    password_secret_ref: SecretKeyRef | None = None
    """Secret key holding the password for user. The password reaches the dump tool through
    its environment, never its command line. Unset: log in without a password."""

    persistent_volume_claim: ObjectName | None = None
    """sqlite only: name of the PersistentVolumeClaim holding the database file, in the same
    namespace. The Job mounts it, so a ReadWriteOnce claim must be free or on the same node."""

    path: Annotated[str, Field(min_length=1, max_length=4096), _NO_DOTDOT] | None = None
    """sqlite only: path of the database file inside the claim, for example data/app.db
    (relative to the claim's root; a leading / means the same). No '..' segments."""

    @model_validator(mode="after")
    def _fields_match_engine(self) -> Self:
        if self.engine is Engine.SQLITE:
            if self.persistent_volume_claim is None or self.path is None:
                raise invalid("sqlite_fields", DATABASE_RULES[0].message)
            network = {
                "host": self.host,
                "port": self.port,
                "name": self.name,
                "user": self.user,
                "passwordSecretRef": self.password_secret_ref,
            }
            extra = [field for field, value in network.items() if value is not None]
            if extra:
                raise invalid(
                    "engine_fields",
                    f"{', '.join(extra)} not used by engine sqlite: remove "
                    + ("it" if len(extra) == 1 else "them"),
                )
        else:
            missing = [
                field
                for field, value in (("host", self.host), ("name", self.name), ("user", self.user))
                if value is None
            ]
            if missing:
                raise invalid(
                    "network_fields",
                    f"{DATABASE_RULES[1].message}; missing: {', '.join(missing)}",
                )
            if self.persistent_volume_claim is not None or self.path is not None:
                raise invalid(
                    "engine_fields",
                    f"persistentVolumeClaim and path are for engine sqlite, not {self.engine}: "
                    "remove them",
                )
        return self

    @property
    def effective_port(self) -> int | None:
        """The port to connect to: `port`, else the engine's default; None for sqlite."""
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.engine)


# -- storage ----------------------------------------------------------------------------------


class S3Storage(SpecModel):
    """An S3-compatible bucket: AWS S3, MinIO, Ceph RGW, Cloudflare R2, GCS in S3 mode."""

    bucket: Annotated[
        str,
        Field(min_length=3, max_length=255),
        Matches(
            r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
            "a bare bucket name: no s3://, no slash (put folders in prefix)",
        ),
    ]
    """Bucket name only: no s3:// and no slash (put sub-directories in prefix). The bucket
    must exist; Lifeboat never creates buckets."""

    prefix: Annotated[
        str, Field(max_length=1024), Matches(r"^([^/].*)?$", "a key prefix: drop the leading /")
    ] = ""
    """Key prefix inside the bucket under which backups are written, for example shop/.
    Treated as a directory: shop and shop/ mean the same. Must not start with /.
    Default: the bucket's root."""

    endpoint: (
        Annotated[
            str,
            Field(max_length=2048),
            Matches(
                r"^https?://[^\s/]+(/\S*)?$", "a URL: http://host[:port] or https://host[:port]"
            ),
        ]
        | None
    ) = None
    """URL of an S3-compatible server, for example http://minio.storage.svc:9000. Unset:
    AWS S3 in region."""

    region: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    """Region of the bucket, for example us-east-1. Unset: the SDK's default (us-east-1 for
    most S3-compatible servers)."""

    credentials_secret_ref: S3CredentialsSecretRef | None = None
    """Secret holding the access key pair. Unset: the SDK's default credential chain (IAM
    role for service accounts or pod identity via job.serviceAccountName, instance
    profile)."""

    force_path_style: bool = False
    """true: always address the bucket as endpoint/bucket/key (path style). false: let the SDK
    choose, which is path style for a custom endpoint and virtual-hosted for AWS. Set true if
    your server answers 'bucket not found' or DNS errors for bucket.endpoint."""

    @property
    def key_prefix(self) -> str:
        """`prefix` as a directory: '' or ending in exactly one '/'."""
        stripped = self.prefix.rstrip("/")
        return f"{stripped}/" if stripped else ""


class VolumeStorage(SpecModel):
    """A PersistentVolumeClaim, mounted by the Job, that holds backups as files."""

    persistent_volume_claim: ObjectName
    """Name of the PersistentVolumeClaim, in the same namespace. The Job mounts it read-write
    for a backup and read-only for a restore."""

    path: SafePath = ""
    """Directory inside the claim under which backups are written, for example backups/shop
    (relative to the claim's root; a leading / means the same). No '..' segments.
    Default: the claim's root."""


STORAGE_RULES: Final = (
    CelRule(
        rule="has(self.s3) != has(self.volume)",
        message=(
            "set exactly one storage backend: s3 (a bucket) or volume (a PersistentVolumeClaim)"
        ),
    ),
)


class StorageSpec(SpecModel):
    """Where the backup is written to or read from. Exactly one of s3 or volume."""

    model_config = ConfigDict(json_schema_extra=cel(*STORAGE_RULES))

    s3: S3Storage | None = None
    """An S3-compatible bucket."""

    volume: VolumeStorage | None = None
    """A PersistentVolumeClaim mounted by the Job."""

    @model_validator(mode="after")
    def _exactly_one_backend(self) -> Self:
        if (self.s3 is None) == (self.volume is None):
            raise invalid("storage_backend", STORAGE_RULES[0].message)
        return self


# -- Job tuning -------------------------------------------------------------------------------


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, int):
        if value < 0:
            raise invalid("quantity", "must not be negative")
    elif not re.fullmatch(QUANTITY_PATTERN, value):
        raise invalid(
            "quantity",
            f"{value!r} is not a Kubernetes quantity: use for example 500m or 2 (cpu), "
            "512Mi or 4Gi (memory)",
        )
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "minimum": 0,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


class ResourceQuantities(SpecModel):
    """cpu and memory amounts, as in a Pod's resources."""

    cpu: Quantity | None = None
    """CPU, for example 500m (half a core) or 2. Compression runs on it: zstd at full speed
    uses about one core."""

    memory: Quantity | None = None
    """Memory, for example 512Mi or 2Gi. Dumps are streamed, so memory does not grow with the
    size of the database."""


class ResourceRequirements(SpecModel):
    """Requests and limits for the Job's container."""

    requests: ResourceQuantities | None = None
    """What the scheduler reserves for the container."""

    limits: ResourceQuantities | None = None
    """The most the container may use: memory above the limit gets it OOM-killed (the Job
    then retries, up to backoffLimit)."""


TOLERATION_RULES: Final = (
    CelRule(
        rule="!has(self.operator) || self.operator != 'Exists' || !has(self.value)"
        " || self.value == ''",
        message="operator Exists matches any value: remove value",
    ),
    CelRule(
        rule="!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
        message="tolerationSeconds works only with effect NoExecute",
    ),
)


class Toleration(SpecModel):
    """Lets the Job's pod run on nodes with a matching taint (as in a Pod's tolerations)."""

    model_config = ConfigDict(json_schema_extra=cel(*TOLERATION_RULES))

    key: Annotated[str, Field(max_length=317)] | None = None
    """Taint key to match. Unset with operator Exists: tolerate every taint."""

    operator: TolerationOperator | None = None
    """Equal (the default): key and value must match. Exists: any value of key matches."""

    value: Annotated[str, Field(max_length=63)] | None = None
    """Taint value to match with operator Equal."""

    effect: TolerationEffect | None = None
    """Taint effect to match: NoSchedule, PreferNoSchedule or NoExecute. Unset: all effects."""

    toleration_seconds: int | None = None
    """With effect NoExecute: how long the pod stays on a node after the taint appears.
    Unset: forever."""

    @model_validator(mode="after")
    def _kubernetes_rules(self) -> Self:
        if self.operator is TolerationOperator.EXISTS and self.value:
            raise invalid("toleration", TOLERATION_RULES[0].message)
        if self.toleration_seconds is not None and self.effect is not TolerationEffect.NO_EXECUTE:
            raise invalid("toleration", TOLERATION_RULES[1].message)
        return self


class JobOptions(SpecModel):
    """Tuning for the Kubernetes Job that runs the backup or restore. Unset fields: the
    operator's defaults."""

    image: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """Container image for the Job, for example a mirror in a private registry. It must be
    a Lifeboat image of the operator's version. Unset: the operator's own image."""

    resources: ResourceRequirements | None = None
    """cpu and memory requests and limits for the Job's container."""

    node_selector: (
        Annotated[dict[str, Annotated[str, Field(max_length=63)]], Field(max_length=64)] | None
    ) = None
    """Node labels the Job's pod must run on, for example to stay near the database."""

    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = None
    """Tolerations for the Job's pod, to run on tainted nodes."""

    service_account_name: ObjectName | None = None
    """ServiceAccount for the Job's pod, in the same namespace: use one bound to a cloud IAM
    role to reach S3 without an access key. Unset: the operator's worker ServiceAccount."""

    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    """Fail the Job (and this object) if it runs longer than this, retries included. Unset:
    no deadline."""

    backoff_limit: Annotated[int, Field(ge=0, le=100)] | None = None
    """How many times a failed pod is retried before the Job, and this object, fail. Each
    retry starts the backup or restore from the beginning."""

    ttl_seconds_after_finished: Annotated[int, Field(ge=0)] | None = None
    """Delete the finished Job (and its pod and logs) this many seconds after it ends. Unset:
    keep it until this object is deleted, so its logs stay readable."""


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


class ObjectMeta(StatusModel):
    """The parts of metadata Lifeboat reads; everything else is ignored."""

    name: str | None = None
    """Object name."""

    namespace: str | None = None
    """Object namespace."""

    uid: str | None = None
    """Object uid."""

    generation: int | None = None
    """Incremented by the API server on every spec change."""

    resource_version: str | None = None
    """Opaque version for optimistic concurrency."""

    creation_timestamp: datetime | None = None
    """When the object was created."""

    deletion_timestamp: datetime | None = None
    """When deletion was requested; set while finalizers still run."""

    labels: dict[str, str] | None = None
    """Object labels."""

    annotations: dict[str, str] | None = None
    """Object annotations."""

    finalizers: list[str] | None = None
    """Finalizers that must finish before the object goes away."""


# -- errors -----------------------------------------------------------------------------------


def describe_validation_error(error: ValidationError, prefix: Iterable[str] = ()) -> str:
    """One line per problem, each starting with the field path: 'spec.storage: set exactly...'.

    `prefix` is prepended to every path, e.g. ("spec",) when a BackupSpec was validated alone.
    This is the text for a PermanentError, an Event or a condition message.
    """
    lines = []
    for problem in error.errors(include_url=False):
        path = ".".join(prefix)
        for part in problem["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
        message = problem["msg"]
        if problem["type"] == "extra_forbidden":
            message = "unknown field: check its spelling (kubectl explain shows the fields)"
        lines.append(f"{path}: {message}" if path else message)
    return "\n".join(lines)
