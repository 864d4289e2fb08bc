"""The two streams: dump -> compress -> SHA-256 -> store, and store -> verify -> decompress -> load.

Both start with a preflight that fails within seconds, before a byte moves: a backup connects
and proves it can read everything and that the storage accepts writes; a restore reads the
manifest, connects to the target, checks the privileges, the server version and the roles the
backup names, and only then downloads the artifact. A dry run stops after the preflight and the
checksum pass and reports the plan.

Nothing is staged on disk and memory stays bounded: a chunk at a time flows through, and the
storage writer holds at most a fixed number of upload parts. The order of publication is what makes
a backup trustworthy: the artifact is published (atomically) only when the dump tool succeeded, and
the manifest is written last, so a location without a manifest is never a backup.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from lifeboat import __version__
from lifeboat.contract import ENGINE_FAMILIES, same_family
from lifeboat.worker.compression import (
    Compression,
    DecompressingReader,
    make_compressor,
)
from lifeboat.worker.engines.base import Check, Engine, RestoreOptions, RestorePlan
from lifeboat.worker.errors import (
    BackupNotFound,
    ChecksumMismatch,
    ManifestInvalid,
    RestoreError,
    StorageError,
    UsageError,
    VerificationFailed,
)
from lifeboat.worker.manifest import (
    MANIFEST_NAME,
    ArtifactManifest,
    Manifest,
    TableManifest,
)
from lifeboat.worker.progress import Progress
from lifeboat.worker.storage.base import WRITE_PROBE, Storage
from lifeboat.worker.streams import CHUNK_SIZE, Readable


def artifact_key(engine: str, compression: Compression) -> str:
    return f"{engine}.dump{compression.extension}"


@dataclass(frozen=True)
class BackupOptions:
    compression: Compression = Compression.ZSTD
    level: int | None = None
    overwrite: bool = False


def run_backup(
    engine: Engine, storage: Storage, progress: Progress, options: BackupOptions = BackupOptions()
) -> Manifest:
    """Dump `engine` into `storage`; return the manifest once both are stored and checked."""
    started = _now()
    progress.set_stage("checking")
    engine.preflight_backup()
    storage.check()
    storage.check_writable()
    info = engine.inspect()
    _refuse_to_clobber(storage, overwrite=options.overwrite)
    progress.set_totals(
        bytes_total=info.estimated_bytes,
        items_total=len(info.tables),
        estimated=True,
        item_bytes=info.table_bytes,
    )
    key = artifact_key(engine.name, options.compression)
    compressor = make_compressor(options.compression, options.level)
    digest = hashlib.sha256()
    raw_size = 0
    size = 0
    progress.set_stage("dumping")
    with (
        engine.dump(progress) as dump,
        storage.open_writer(key, size_hint=info.estimated_bytes) as writer,
    ):
        while chunk := dump.read(CHUNK_SIZE):
            raw_size += len(chunk)
            progress.add_bytes(len(chunk))
            out = compressor.compress(chunk)
            if out:
                digest.update(out)
                size += writer.write(out) or len(out)
        tail = compressor.flush()
        digest.update(tail)
        if tail:
            writer.write(tail)
        size += len(tail)
        summary = dump.finish()  # raises if the tool failed: the writer then aborts
    try:
        progress.set_stage("verifying")
        stored = storage.size(key)
        if stored != size:
            raise StorageError(
                f"the stored artifact {storage.uri(key)} has {stored} bytes, {size} were written"
            )
        manifest = Manifest(
            lifeboat_version=__version__,
            engine=engine.name,
            dump_format=engine.dump_format,
            server_version=info.version,
            database=engine.url.database,
            started_at=started,
            completed_at=_now(),
            artifact=ArtifactManifest(
                key=key,
                compression=options.compression.value,
                size=size,
                sha256=digest.hexdigest(),
                raw_size=raw_size,
            ),
            tables=[TableManifest(name=n, rows=r) for n, r in sorted(summary.row_counts.items())],
            objects=sorted(set(summary.objects)),
            roles=sorted(set(summary.roles)),
        )
        storage.put_bytes(MANIFEST_NAME, manifest.model_dump_json(indent=2).encode())
    except BaseException:
        # Published but not described: take it back, so only complete backups are ever seen.
        with contextlib.suppress(Exception):
            storage.delete([key])
        raise
    progress.finish()
    return manifest


def _refuse_to_clobber(storage: Storage, *, overwrite: bool) -> None:
    """A location holds one backup. Replacing it must be asked for, and first unpublishes it."""
    if storage.size(MANIFEST_NAME) is None:
        return
    if not overwrite:
        raise UsageError(
            f"BACKUP_URL: {storage.uri()} already holds a backup; "
            "choose a new location or pass --overwrite to replace it"
        )
    storage.delete([MANIFEST_NAME])


@dataclass(frozen=True)
class RestoreReport:
    """How a restore ended. For a dry run, `row_counts` are the manifest's (what would be
    loaded) and `plan` says what would change; nothing was."""

    manifest: Manifest
    checksum_verified: bool
    row_counts: dict[str, int]
    plan: RestorePlan
    dry_run: bool = False
    bytes_read: int = 0
    """Bytes of the artifact read from storage (both passes)."""

    @property
    def rows_verified(self) -> int:
        return sum(self.row_counts.values())


def load_manifest(storage: Storage) -> Manifest:
    try:
        raw = storage.get_bytes(MANIFEST_NAME)
    except BackupNotFound:
        raise BackupNotFound(
            f"no complete backup at {storage.uri()}: {MANIFEST_NAME} is missing "
            "(an interrupted backup leaves no manifest)"
        ) from None
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ManifestInvalid(
            f"{storage.uri(MANIFEST_NAME)} is not a Lifeboat manifest ({where}: {first['msg']})"
        ) from None


def run_restore(
    storage: Storage,
    engine: Engine,
    progress: Progress,
    options: RestoreOptions | None = None,
    *,
    verify_first: bool = True,
    dry_run: bool = False,
) -> RestoreReport:
    """Restore the backup at `storage` into `engine`'s database, proven or not at all.

    `dry_run`: the preflight and the checksum pass only; the target is not touched."""
    options = options or RestoreOptions()
    progress.set_stage("reading manifest")
    manifest = load_manifest(storage)
    if not same_family(manifest.engine, engine.name):
        raise RestoreError(
            f"the backup at {storage.uri()} is a {manifest.engine} backup; "
            f"it cannot be restored into {engine.name}"
        )
    if manifest.dump_format != engine.dump_format:
        raise RestoreError(
            f"the backup's format {manifest.dump_format!r} is not {engine.dump_format!r}, "
            "which this version of Lifeboat restores"
        )
    # Connect, authenticate and check privileges, versions and roles before downloading a byte:
    # a wrong password on a 100 GB backup must fail in seconds, not after the checksum pass.
    progress.set_stage("checking the target")
    plan = engine.plan_restore(manifest, options)
    art = manifest.artifact
    stored = storage.size(art.key)
    if stored is None:
        raise BackupNotFound(f"{storage.uri(art.key)} named by the manifest does not exist")
    if stored != art.size:
        raise ChecksumMismatch(
            f"{storage.uri(art.key)} has {stored} bytes but the manifest says {art.size}: "
            "the artifact was truncated or replaced; nothing was restored"
        )
    plan.checks.append(Check("artifact", f"{storage.uri(art.key)}: {art.size} bytes, as recorded"))
    passes = 1 if dry_run or not verify_first else 2
    progress.set_totals(bytes_total=art.size * passes, items_total=len(manifest.tables))
    if verify_first or dry_run:
        progress.set_stage("verifying checksum")
        with storage.open_reader(art.key) as reader:
            verifying = VerifyingReader(reader, manifest, storage.uri(art.key), progress)
            while verifying.read(CHUNK_SIZE):
                pass
        plan.checks.append(Check("checksum", f"SHA-256 {art.sha256} matches the manifest"))
    if dry_run:
        progress.finish()
        return RestoreReport(
            manifest=manifest,
            checksum_verified=True,
            row_counts=manifest.row_counts,
            plan=plan,
            dry_run=True,
            bytes_read=art.size,
        )
    progress.set_stage("restoring")
    compression = Compression(art.compression)
    with storage.open_reader(art.key) as reader:
        verifying = VerifyingReader(reader, manifest, storage.uri(art.key), progress)
        result = engine.restore(
            DecompressingReader(verifying, compression), manifest, progress, options
        )
        if not verifying.verified:
            raise ChecksumMismatch("the engine finished before the artifact was read to its end")
    mismatches = compare_row_counts(manifest.row_counts, dict(result.row_counts))
    if mismatches:
        # The engine checks before committing; this second look is the proof we report.
        raise VerificationFailed("after the restore: " + "; ".join(mismatches), mismatches)
    progress.finish()
    return RestoreReport(
        manifest=manifest,
        checksum_verified=True,
        row_counts=dict(result.row_counts),
        plan=plan,
        bytes_read=art.size * passes,
    )


def compare_row_counts(expected: dict[str, int], actual: dict[str, int]) -> list[str]:
    """Human lines for every table whose row count differs (or is missing) from the manifest."""
    problems = []
    for table, rows in sorted(expected.items()):
        got = actual.get(table)
        if got is None:
            problems.append(f"table {table} is missing (expected {rows} rows)")
        elif got != rows:
            problems.append(f"table {table} has {got} rows, the backup has {rows}")
    return problems


class VerifyingReader:
    """Counts and hashes the stored artifact as it streams; at its end, compares with the manifest.

    Raising at the end (not after) is the point: the engine is still inside its transaction or
    shadow database when the mismatch surfaces, so it rolls back.
    """

    def __init__(self, inner: Readable, manifest: Manifest, uri: str, progress: Progress) -> None:
        self._inner = inner
        self._expected = manifest.artifact
        self._uri = uri
        self._progress = progress
        self._digest = hashlib.sha256()
        self._size = 0
        self.verified = False

    def read(self, n: int = -1, /) -> bytes:
        data = self._inner.read(n)
        if data:
            self._size += len(data)
            if self._size > self._expected.size:
                raise ChecksumMismatch(
                    f"{self._uri} is larger than the manifest's {self._expected.size} bytes"
                )
            self._digest.update(data)
            self._progress.add_bytes(len(data))
            return data
        if not self.verified:
            self._check()
        return data

    def _check(self) -> None:
        if self._size != self._expected.size:
            raise ChecksumMismatch(
                f"{self._uri} ended after {self._size} bytes, the manifest says "
                f"{self._expected.size}: the artifact is truncated"
            )
        actual = self._digest.hexdigest()
        if actual != self._expected.sha256:
            raise ChecksumMismatch(
                f"{self._uri} has SHA-256 {actual[:16]}…, the manifest says "
                f"{self._expected.sha256[:16]}…: the artifact is corrupt; nothing was restored"
            )
        self.verified = True


def _now() -> datetime:
    return datetime.now(UTC)


def delete_backup(storage: Storage) -> list[str]:
    """Remove a backup: the manifest first (it stops being a backup at once), then artifacts.

    Every artifact name Lifeboat can write is deleted, so an artifact left without a manifest by
    an interrupted run goes too. Returns the keys that existed.
    """
    keys = [MANIFEST_NAME, WRITE_PROBE]
    with contextlib.suppress(BackupNotFound, ManifestInvalid):
        keys.append(load_manifest(storage).artifact.key)
    keys += [artifact_key(e, c) for e in ENGINE_FAMILIES for c in Compression]
    unique = list(dict.fromkeys(keys))
    present = [key for key in unique if storage.size(key) is not None]
    storage.delete([MANIFEST_NAME])
    storage.delete([key for key in unique if key != MANIFEST_NAME])
    return present
