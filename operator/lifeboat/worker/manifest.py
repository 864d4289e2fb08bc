"""The manifest: what a backup is, written next to the artifact, last.

A backup exists only when its manifest exists and parses: the artifact alone is never treated as
a backup. The manifest carries everything a restore needs to prove itself: the artifact's size and
SHA-256, and a row count per table taken in the same snapshot as the dump. For an encrypted
artifact it names the algorithm and the key id (a fingerprint), never the key: the manifest itself
is plaintext, so anyone who can read the bucket can read it (docs/encryption.md).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class TableManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Qualified table name as the engine names it (schema.table).")
    rows: int = Field(ge=0, description="Rows in the table in the dump's snapshot.")


class EncryptionManifest(BaseModel):
    """How the artifact was encrypted by Lifeboat before it was stored. Never the key."""

    model_config = ConfigDict(frozen=True)

    algorithm: str = Field(description="AES-256-GCM, in authenticated chunks.")
    key_id: str = Field(
        pattern=r"^[0-9a-f]{32}$",
        description="Fingerprint of the key (SHA-256 derived): which key decrypts it, not the key.",
    )
    chunk_size: int = Field(ge=1, description="Plaintext bytes per authenticated chunk.")


class StoredEncryptionManifest(BaseModel):
    """How the storage says it encrypts the stored artifact (S3 server-side encryption)."""

    model_config = ConfigDict(frozen=True)

    type: str = Field(description="AES256 (SSE-S3) or aws:kms (SSE-KMS), as S3 reported it.")
    kms_key_id: str | None = Field(default=None, description="The KMS key, for aws:kms.")


class ArtifactManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str = Field(description="Object name of the artifact, relative to the backup location.")
    compression: str = Field(description="zstd, gzip or none.")
    size: int = Field(
        ge=0, description="Bytes of the stored artifact (compressed, and encrypted if it is)."
    )
    sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the stored artifact: of what is stored, so of the ciphertext "
        "when it is encrypted.",
    )
    raw_size: int = Field(ge=0, description="Bytes of the dump before compression.")
    encryption: EncryptionManifest | None = Field(
        default=None,
        description="Set when Lifeboat encrypted the artifact (compressed, then encrypted): a "
        "restore needs the key with this key id. None: not encrypted by Lifeboat.",
    )
    server_side_encryption: StoredEncryptionManifest | None = Field(
        default=None,
        description="S3 server-side encryption of the stored artifact, as S3 reported it after "
        "the upload. None: the storage reported none (or is not S3).",
    )


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    format_version: int = FORMAT_VERSION
    lifeboat_version: str
    engine: str = Field(description="postgresql, mysql, mariadb or sqlite.")
    dump_format: str = Field(description="How the artifact was written, e.g. pg_dump-custom.")
    server_version: str
    database: str
    started_at: datetime
    completed_at: datetime
    artifact: ArtifactManifest
    tables: list[TableManifest]
    objects: list[str] | None = Field(
        default=None,
        description="Every object the dump holds, labelled '<kind> <name>' as restore plans "
        "label them ('table shop.orders', 'view shop.totals', 'function shop.total(integer)'): "
        "a dry run compares them with the target without reading the artifact. None in manifests "
        "written before Lifeboat recorded them.",
    )
    roles: list[str] | None = Field(
        default=None,
        description="Database roles (PostgreSQL owners and grantees, MySQL definers) the dump "
        "names: a restore checks they exist on the target before it reads the artifact. None in "
        "manifests written before Lifeboat recorded them.",
    )

    @property
    def row_counts(self) -> dict[str, int]:
        return {t.name: t.rows for t in self.tables}
