"""Which backups a location holds: every `manifest.json` below it, read and checked.

This is how a restore into a new cluster finds its backup, with no Backup object left: list the
bucket (or the volume), pick a backup by its database and time, and put its location into a
Restore's `spec.source`. A backup is a directory with a manifest (the pipeline writes the
manifest last), so a directory without one (an interrupted backup, anything else in the bucket)
is never listed. A manifest whose artifact is gone or has another size is listed with that
problem, because a restore from it would fail.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import IO, Any

from lifeboat.contract import format_bytes
from lifeboat.worker.errors import BackupNotFound, ManifestInvalid
from lifeboat.worker.manifest import MANIFEST_NAME, Manifest
from lifeboat.worker.pipeline import load_manifest
from lifeboat.worker.storage.base import Storage


@dataclass(frozen=True)
class FoundBackup:
    """A backup found below the listed location."""

    path: str
    """Its directory relative to the listed location ('' for the location itself, else ending
    in '/'): a Restore's spec.source.path when spec.source.storage names the listed location."""

    uri: str
    """Its location (s3://bucket/prefix/path/ or file:///dir/path/)."""

    manifest: Manifest

    problem: str | None = None
    """Why a restore from it would fail (artifact missing or of another size); None if sound."""

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.manifest.tables)


@dataclass(frozen=True)
class UnreadableManifest:
    """A `manifest.json` that is not a Lifeboat manifest (or no longer readable)."""

    uri: str
    problem: str


@dataclass(frozen=True)
class BackupListing:
    location: str
    """The listed location."""

    backups: list[FoundBackup]
    """Newest first (by the time the dump completed)."""

    unreadable: list[UnreadableManifest]

    objects: int
    """Objects seen below the location, backups and anything else."""


def list_backups(storage: Storage) -> BackupListing:
    """Find every backup below `storage` by its manifest; check each artifact's presence and size
    against the listing (no artifact is downloaded)."""
    sizes = {stored.key: stored.size for stored in storage.list_objects()}
    backups: list[FoundBackup] = []
    unreadable: list[UnreadableManifest] = []
    for key in sorted(sizes):
        if key != MANIFEST_NAME and not key.endswith(f"/{MANIFEST_NAME}"):
            continue
        path = key[: -len(MANIFEST_NAME)]
        location = storage.at(path) if path else storage
        try:
            manifest = load_manifest(location)
        except ManifestInvalid as exc:
            unreadable.append(UnreadableManifest(location.uri(MANIFEST_NAME), str(exc)))
            continue
        except BackupNotFound:  # deleted since it was listed: no longer a backup
            continue
        artifact = manifest.artifact
        stored = sizes.get(path + artifact.key)
        problem = None
        if stored is None:
            problem = f"artifact {artifact.key} is missing"
        elif stored != artifact.size:
            problem = f"artifact {artifact.key} has {stored} bytes, the manifest {artifact.size}"
        backups.append(FoundBackup(path, location.uri(), manifest, problem))
    backups.sort(key=lambda found: (found.manifest.completed_at, found.uri), reverse=True)
    return BackupListing(storage.uri(), backups, unreadable, len(sizes))


# -- output -----------------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns as kubectl prints them: left-aligned, three spaces apart, no trailing spaces."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


LISTING_HEADERS = ("ENGINE", "DATABASE", "TAKEN AT", "SIZE", "TABLES", "ROWS", "LOCATION")


def listing_rows(listing: BackupListing) -> list[list[str]]:
    """The table's rows; a backup with a problem gets it after its location."""
    rows = []
    for found in listing.backups:
        manifest = found.manifest
        location = found.uri + (f"  (!) {found.problem}" if found.problem else "")
        rows.append(
            [
                manifest.engine,
                manifest.database,
                f"{manifest.completed_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}",
                format_bytes(manifest.artifact.size),
                str(len(manifest.tables)),
                str(found.rows),
                location,
            ]
        )
    return rows


def listing_json(listing: BackupListing) -> dict[str, Any]:
    """The listing for scripts (`--output json`)."""
    return {
        "location": listing.location,
        "backups": [
            {
                "location": found.uri,
                "path": found.path,
                "engine": found.manifest.engine,
                "database": found.manifest.database,
                "serverVersion": found.manifest.server_version,
                "takenAt": found.manifest.completed_at.astimezone(UTC).isoformat(),
                "size": found.manifest.artifact.size,
                "compression": found.manifest.artifact.compression,
                "sha256": found.manifest.artifact.sha256,
                "tables": len(found.manifest.tables),
                "rows": found.rows,
                "problem": found.problem,
            }
            for found in listing.backups
        ],
        "unreadable": [{"manifest": bad.uri, "problem": bad.problem} for bad in listing.unreadable],
    }


def print_listing(
    listing: BackupListing,
    output: str = "text",
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> None:
    """The table (or JSON) on `out`; unreadable manifests and an empty result explained on `err`."""
    out = out or sys.stdout
    err = err or sys.stderr
    if output == "json":
        json.dump(listing_json(listing), out, indent=2)
        out.write("\n")
        return
    if listing.backups:
        out.write(format_table(LISTING_HEADERS, listing_rows(listing)) + "\n")
    else:
        err.write(
            f"no backups at {listing.location} ({listing.objects} objects, none a "
            f"{MANIFEST_NAME} of a complete backup)\n"
        )
    for bad in listing.unreadable:
        err.write(f"warning: skipped: {bad.problem}\n")
