"""The manifest: what a backup is, written next to the artifact, last.

A backup exists only when its manifest exists and parses: the artifact alone is never treated as
a backup. The manifest carries everything a restore needs to prove itself: the artifact's size and
SHA-256, and a row count per table taken in the same snapshot as the dump.
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


class ArtifactManifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str = Field(description="Object name of the artifact, relative to the backup location.")
    compression: str = Field(description="zstd, gzip or none.")
    size: int = Field(ge=0, description="Bytes of the stored (compressed) artifact.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the stored artifact.")
    raw_size: int = Field(ge=0, description="Bytes of the dump before compression.")


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
