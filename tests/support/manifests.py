"""Manifests for engine tests that drive an engine directly (no pipeline, no compression)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime

from lifeboat.worker.engines.base import Engine
from lifeboat.worker.manifest import ArtifactManifest, Manifest, TableManifest


def manifest_for_raw_dump(
    engine: Engine, server_version: str, row_counts: Mapping[str, int], data: bytes, key: str
) -> Manifest:
    """The manifest the pipeline would write for `data` stored uncompressed under `key`."""
    now = datetime.now(UTC)
    return Manifest(
        lifeboat_version="test",
        engine=engine.name,
        dump_format=engine.dump_format,
        server_version=server_version,
        database=engine.url.database,
        started_at=now,
        completed_at=now,
        artifact=ArtifactManifest(
            key=key,
            compression="none",
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            raw_size=len(data),
        ),
        tables=[TableManifest(name=n, rows=r) for n, r in sorted(row_counts.items())],
    )
