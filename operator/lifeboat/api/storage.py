"""Where backups live (an S3 bucket or a PersistentVolumeClaim), their compression and their
encryption at rest: client-side (the Job encrypts before anything leaves the Pod) and S3
server-side (SSE-S3, SSE-KMS)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import ConfigDict, Field, model_validator

from lifeboat.api.common import (
    CaBundleRef,
    CelRule,
    Matches,
    ObjectName,
    SafePath,
    SecretKey,
    SpecModel,
    StatusModel,
    cel,
    invalid,
)
from lifeboat.contract import MAX_STORAGE_TIMEOUT, MIN_STORAGE_TIMEOUT, SSE_KMS, SSE_S3


class Compression(StrEnum):
    """How the dump is compressed before it is stored."""

    ZSTD = "zstd"
    GZIP = "gzip"
    NONE = "none"


class S3CredentialsSecretRef(SpecModel):
    """A Secret holding an S3 access key pair, in the same namespace as this object."""

    name: ObjectName
    """Name of the Secret, in the same namespace as this object."""

    access_key_id_key: SecretKey = "AWS_ACCESS_KEY_ID"
    """Key inside the Secret holding the access key id. Default: AWS_ACCESS_KEY_ID."""

    secret_access_key_key: SecretKey = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a key name
    """Key inside the Secret holding the secret access key. Default: AWS_SECRET_ACCESS_KEY."""


# -- encryption at rest -----------------------------------------------------------------------


class EncryptionKeySecretRef(SpecModel):
    """A key in a Secret, in the same namespace as this object, whose value is an encryption
    key: 32 random bytes in base64."""

    name: ObjectName
    """Name of the Secret, in the same namespace as this object. Create one with
    kubectl create secret generic backup-key --from-literal=key="$(head -c 32 /dev/urandom |
    base64)". Keep a copy outside the cluster: without the key, the backups cannot be read."""

    key: SecretKey = "key"
    """Key inside the Secret whose value is the encryption key (base64 of exactly 32 bytes).
    Default: key."""


class EncryptionSpec(SpecModel):
    """Client-side encryption at rest: the Job encrypts the compressed dump with AES-256-GCM,
    in authenticated chunks, before it leaves the Pod, so the storage (and anyone who can read
    it) only ever holds ciphertext. The manifest next to it records the algorithm and the key's
    id (a fingerprint), never the key. A restore needs the same key; a wrong key is refused
    before the target database is touched."""

    key_secret_ref: EncryptionKeySecretRef
    """The Secret and key holding the encryption key. The Job reads it through its environment
    (secretKeyRef): the operator never reads it, and it never appears in status, Events, logs or
    the Job's arguments."""


class ServerSideEncryptionType(StrEnum):
    """How S3 encrypts the objects it stores: S3's own header values."""

    AES256 = SSE_S3
    AWS_KMS = SSE_KMS


SSE_KMS_KEY_RULE: Final = CelRule(
    rule="!has(self.kmsKeyId) || self.type == 'aws:kms'",
    message="kmsKeyId is for type aws:kms: remove it, or set type to aws:kms",
)


class ServerSideEncryption(SpecModel):
    """S3 server-side encryption, asked for on every object Lifeboat writes (multipart uploads
    included). The status of each Backup records what S3 reported it applied."""

    model_config = ConfigDict(json_schema_extra=cel(SSE_KMS_KEY_RULE))

    type: ServerSideEncryptionType
    """AES256: SSE-S3, keys managed by S3. aws:kms: SSE-KMS, with kmsKeyId or the bucket's (or
    account's) default KMS key; the Job's credentials need kms:GenerateDataKey to back up and
    kms:Decrypt to restore."""

    kms_key_id: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    """type aws:kms only: the KMS key's id, ARN or alias (alias/backups). Unset: the default
    KMS key."""

    @model_validator(mode="after")
    def _kms_key_needs_kms(self) -> Self:
        if self.kms_key_id is not None and self.type is not ServerSideEncryptionType.AWS_KMS:
            raise invalid("kms_key_id", SSE_KMS_KEY_RULE.message)
        return self


class ArtifactEncryption(StatusModel):
    """How Lifeboat encrypted a stored backup (from its manifest). Never the key."""

    algorithm: Annotated[str, Field(max_length=64)]
    """AES-256-GCM."""

    key_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    """Fingerprint of the key it was encrypted with: a restore needs the key with this id
    (lifeboat key-id prints a key's id). Not the key, and the key cannot be derived from it."""


class StoredServerSideEncryption(StatusModel):
    """The server-side encryption S3 reported for the stored backup after the upload."""

    type: Annotated[str, Field(max_length=64)]
    """AES256 (SSE-S3) or aws:kms (SSE-KMS)."""

    kms_key_id: Annotated[str, Field(max_length=2048)] | None = None
    """The KMS key S3 used, for aws:kms."""


# -- storage ----------------------------------------------------------------------------------

_KEY_SEGMENT = r"(?:[^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+|\.)"
S3_PREFIX_PATTERN: Final = rf"^(?:{_KEY_SEGMENT}(?:/{_KEY_SEGMENT}?)*)?$"
"""An S3 key prefix: empty, or starting with a non-empty segment (no leading '/'), with no
'..' segment anywhere."""


S3_RULES: Final = (
    CelRule(
        rule="!(has(self.caSecretRef) && has(self.caConfigMapRef))",
        message="set at most one of caSecretRef and caConfigMapRef: the CA bundle comes from one",
    ),
    CelRule(
        rule=(
            "!(has(self.caSecretRef) || has(self.caConfigMapRef)) || !has(self.endpoint)"
            " || self.endpoint.startsWith('https://')"
        ),
        message=(
            "caSecretRef and caConfigMapRef verify an https endpoint: change endpoint to "
            "https://..., or remove the CA reference"
        ),
    ),
)


class S3Storage(SpecModel):
    """An S3-compatible bucket: AWS S3, MinIO, Ceph RGW, Cloudflare R2, GCS in S3 mode."""

    model_config = ConfigDict(json_schema_extra=cel(*S3_RULES))

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
        str,
        Field(max_length=1024),
        Matches(S3_PREFIX_PATTERN, "a key prefix: drop the leading / and any '..' segment"),
    ] = ""
    """Key prefix inside the bucket under which backups are written, for example shop/.
    Treated as a directory: shop and shop/ mean the same. Must not start with / nor contain a
    '..' segment (some S3-compatible servers resolve it like a path). Default: the bucket's
    root."""

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

    server_side_encryption: ServerSideEncryption | None = None
    """S3 server-side encryption asked for on every object written: AES256 (SSE-S3) or aws:kms
    (SSE-KMS, optionally with kmsKeyId). Unset: none is asked for, and the bucket's default
    encryption applies. It protects the disks S3 writes to, not against someone who can read
    the bucket: for that, use encryption (client-side)."""

    ca_secret_ref: CaBundleRef | None = None
    """Secret key holding the PEM CA bundle that signed an https endpoint's certificate (a
    private CA, as MinIO or Ceph often use). Mounted read-only into the Job, which then trusts
    only these CAs for the endpoint. Unset: the image's public CAs."""

    ca_config_map_ref: CaBundleRef | None = None
    """ConfigMap key holding the PEM CA bundle for an https endpoint (CA certificates are
    public). Same use as caSecretRef; set at most one."""

    timeout_seconds: (
        Annotated[int, Field(ge=MIN_STORAGE_TIMEOUT, le=MAX_STORAGE_TIMEOUT)] | None
    ) = None
    """How long, in seconds, the Job keeps retrying the bucket through an outage (once it has
    answered), with backoff, before it fails with StorageUnreachable. Unset: 120. Raise it
    where the storage has long hiccups; the Job's activeDeadlineSeconds still bounds the
    whole run."""

    @model_validator(mode="after")
    def _ca_for_https(self) -> Self:
        has_ca = self.ca_secret_ref is not None or self.ca_config_map_ref is not None
        if self.ca_secret_ref is not None and self.ca_config_map_ref is not None:
            raise invalid("s3_ca", S3_RULES[0].message)
        if has_ca and self.endpoint is not None and not self.endpoint.startswith("https://"):
            raise invalid("s3_ca", S3_RULES[1].message)
        return self

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


STORE_RULES: Final = (
    CelRule(
        rule="has(self.s3) != has(self.volume)",
        message=(
            "set exactly one storage backend: s3 (a bucket) or volume (a PersistentVolumeClaim)"
        ),
    ),
)
STORAGE_RULES: Final = (
    CelRule(
        rule=(
            "(has(self.s3) ? 1 : 0) + (has(self.volume) ? 1 : 0) + (has(self.storeRef) ? 1 : 0)"
            " == 1"
        ),
        message=(
            "set exactly one storage backend: s3 (a bucket), volume (a PersistentVolumeClaim) "
            "or storeRef (a BackupStore in this namespace)"
        ),
    ),
)


class StoreRef(SpecModel):
    """A BackupStore in the same namespace."""

    name: ObjectName
    """Name of the BackupStore."""


class StorageBackend(SpecModel):
    """One storage backend: an S3-compatible bucket or a PersistentVolumeClaim. A BackupStore's
    spec, and what a storeRef resolves to."""

    model_config = ConfigDict(json_schema_extra=cel(*STORE_RULES))

    s3: S3Storage | None = None
    """An S3-compatible bucket."""

    volume: VolumeStorage | None = None
    """A PersistentVolumeClaim mounted by the Job."""

    encryption: EncryptionSpec | None = None
    """Client-side encryption of every backup written here (AES-256-GCM, with the key in a
    Secret). Unset: backups are stored compressed, not encrypted. Restores of a backup read
    the key from here unless the Restore names its own."""

    @model_validator(mode="after")
    def _exactly_one_backend(self) -> Self:
        if (self.s3 is None) == (self.volume is None):
            raise invalid("storage_backend", STORE_RULES[0].message)
        return self


class StorageSpec(SpecModel):
    """Where the backup is written to or read from: exactly one of s3, volume, or storeRef (a
    BackupStore that holds the settings, defined once for many Backups)."""

    model_config = ConfigDict(json_schema_extra=cel(*STORAGE_RULES))

    s3: S3Storage | None = None
    """An S3-compatible bucket."""

    volume: VolumeStorage | None = None
    """A PersistentVolumeClaim mounted by the Job."""

    store_ref: StoreRef | None = None
    """A BackupStore in this namespace holding the bucket or volume settings and the
    credentials reference: define storage once, name it from every Backup, schedule and
    Restore."""

    encryption: EncryptionSpec | None = None
    """Client-side encryption (AES-256-GCM, with the key in a Secret): the dump is encrypted in
    the Job before it is stored. With storeRef, this wins over the store's encryption. Unset:
    the store's (storeRef), else not encrypted. Recorded in the Backup's status.storage, from
    where its Restores take the key."""

    @model_validator(mode="after")
    def _exactly_one_backend(self) -> Self:
        backends = [self.s3, self.volume, self.store_ref]
        if sum(backend is not None for backend in backends) != 1:
            raise invalid("storage_backend", STORAGE_RULES[0].message)
        return self

    def backend(self) -> StorageBackend | None:
        """The inline backend; None when the storage is a storeRef (resolve the store)."""
        if self.store_ref is not None:
            return None
        return StorageBackend(s3=self.s3, volume=self.volume, encryption=self.encryption)
