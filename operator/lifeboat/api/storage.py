"""Where backups live (an S3 bucket or a PersistentVolumeClaim), and their compression."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import ConfigDict, Field, model_validator

from lifeboat.api.common import (
    CelRule,
    Matches,
    ObjectName,
    SafePath,
    SecretKey,
    SpecModel,
    cel,
    invalid,
)


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
        return StorageBackend(s3=self.s3, volume=self.volume)
