"""The two streams: dump -> compress -> (encrypt) -> SHA-256 -> store, and back: store -> verify ->
(decrypt) -> decompress -> load.

Both start with a preflight that fails within seconds, before a byte moves: a backup connects
and proves it can read everything and that the storage accepts writes; a restore reads the
manifest, connects to the target, checks the privileges, the server version and the roles the
backup names, and only then downloads the artifact. A dry run stops after the preflight and the
checksum pass and reports the plan.

Nothing is staged on disk and memory stays bounded: a chunk at a time flows through, and the
storage writer holds at most a fixed number of upload parts. The order of publication is what makes
a backup trustworthy: the artifact is published (atomically) only when the dump tool succeeded, and
the manifest is written last, so a location without a manifest is never a backup.

Encryption (worker/encryption.py) sits between compression and the checksum, so the manifest's
size and SHA-256 describe what is stored. A restore checks the key's id against the manifest
before it connects to the target, authenticates every chunk in the checksum pass, and opens the
first chunk before the engine starts: a wrong key or a damaged artifact never reaches the target,
and a chunk that fails authentication later (without the checksum pass) fails inside the engine's
transaction, which rolls back.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from lifeboat import __version__
from lifeboat.contract import (
    ENCRYPTION_ALGORITHM,
    ENGINE_FAMILIES,
    ENV_ENCRYPTION_KEY,
    same_family,
)
from lifeboat.worker.compression import (
    Compression,
    DecompressingReader,
    make_compressor,
)
from lifeboat.worker.encryption import (
    DecryptingReader,
    EncryptingCompressor,
    EncryptionKey,
    Encryptor,
)
from lifeboat.worker.engines.base import Check, Engine, RestoreOptions, RestorePlan
from lifeboat.worker.errors import (
    AccessDenied,
    BackupNotEncrypted,
    BackupNotFound,
    ChecksumMismatch,
    EncryptionKeyMismatch,
    EncryptionKeyRequired,
    ManifestInvalid,
    RestoreError,
    StorageError,
    UsageError,
    VerificationFailed,
)
from lifeboat.worker.manifest import (
    MANIFEST_NAME,
    ArtifactManifest,
    EncryptionManifest,
    Manifest,
    StoredEncryptionManifest,
    TableManifest,
)
from lifeboat.worker.progress import Progress
from lifeboat.worker.storage.base import WRITE_PROBE, Storage
from lifeboat.worker.streams import CHUNK_SIZE, Readable

ENCRYPTED_EXTENSION = ".enc"


def artifact_key(engine: str, compression: Compression, *, encrypted: bool = False) -> str:
    return f"{engine}.dump{compression.extension}{ENCRYPTED_EXTENSION if encrypted else ''}"


def lifeboat_keys() -> list[str]:
    """Every object name a backup can write at its location: the manifest, the write probe and
    every artifact name. What `delete_backup` deletes and `remove_leftovers` looks for."""
    keys = [MANIFEST_NAME, WRITE_PROBE]
    keys += [
        artifact_key(e, c, encrypted=encrypted)
        for e in ENGINE_FAMILIES
        for c in Compression
        for encrypted in (False, True)
    ]
    return keys


def remove_leftovers(storage: Storage) -> list[str]:
    """Remove what a killed backup of this location left: multipart uploads, temp files.

    SIGKILL gives a worker no chance to abort its own writes; they were never visible as objects
    (no manifest, no artifact), but they take space. Only Lifeboat's own names at this very
    location are touched. Returns what was removed, for the log."""
    return storage.remove_incomplete(lifeboat_keys())


@dataclass(frozen=True)
class BackupOptions:
    compression: Compression = Compression.ZSTD
    level: int | None = None
    overwrite: bool = False
    encryption_key: EncryptionKey | None = None
    """Encrypt the artifact with this key (AES-256-GCM); None: stored as compressed."""
    notes: list[str] | None = None
    """Receives what the backup wants people to know (leftovers it removed)."""


def run_backup(
    engine: Engine, storage: Storage, progress: Progress, options: BackupOptions = BackupOptions()
) -> Manifest:
    """Dump `engine` into `storage`; return the manifest once both are stored and checked."""
    started = _now()
    progress.set_stage("checking")
    engine.preflight_backup()
    storage.check()
    storage.check_writable()
    notes = options.notes if options.notes is not None else []
    try:
        removed = remove_leftovers(storage)
    except AccessDenied as exc:
        # Cleaning up is a courtesy: a policy without s3:ListBucketMultipartUploads or
        # s3:AbortMultipartUpload must not stop the backup itself.
        notes.append(f"leftovers of interrupted backups were not looked for: {exc}")
        removed = []
    if removed:
        notes.append(
            "removed what an interrupted backup of this location left: " + ", ".join(removed)
        )
    info = engine.inspect()
    _refuse_to_clobber(storage, overwrite=options.overwrite)
    progress.set_totals(
        bytes_total=info.estimated_bytes,
        items_total=len(info.tables),
        estimated=True,
        item_bytes=info.table_bytes,
    )
    secret = options.encryption_key
    key = artifact_key(engine.name, options.compression, encrypted=secret is not None)
    compressor = make_compressor(options.compression, options.level)
    encryptor = Encryptor(secret) if secret is not None else None
    if encryptor is not None:
        compressor = EncryptingCompressor(compressor, encryptor)
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
        at_rest = storage.stored_encryption(key)
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
                encryption=None
                if encryptor is None
                else EncryptionManifest(
                    algorithm=ENCRYPTION_ALGORITHM,
                    key_id=encryptor.key_id,
                    chunk_size=encryptor.chunk_size,
                ),
                server_side_encryption=None
                if at_rest is None
                else StoredEncryptionManifest(type=at_rest.type, kms_key_id=at_rest.kms_key_id),
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
    notes: tuple[str, ...] = ()
    """What the engine wants people to know (leftovers of an interrupted restore it removed, a
    database it created)."""

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
        problem = f"{where}: {first['msg']}" if where else str(first["msg"])
        raise ManifestInvalid(
            f"{storage.uri(MANIFEST_NAME)} is not a Lifeboat manifest ({problem})"
        ) from None


def run_restore(
    storage: Storage,
    engine: Engine,
    progress: Progress,
    options: RestoreOptions | None = None,
    *,
    verify_first: bool = True,
    dry_run: bool = False,
    encryption_key: EncryptionKey | None = None,
) -> RestoreReport:
    """Restore the backup at `storage` into `engine`'s database, proven or not at all.

    `dry_run`: the preflight and the checksum pass only; the target is not touched.
    `encryption_key`: the key of an encrypted backup (required then, refused otherwise)."""
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
    check_encryption_key(manifest, encryption_key, storage.uri())
    # Connect, authenticate and check privileges, versions and roles before downloading a byte:
    # a wrong password on a 100 GB backup must fail in seconds, not after the checksum pass.
    progress.set_stage("checking the target")
    plan = engine.plan_restore(manifest, options)
    art = manifest.artifact
    if art.encryption is not None:
        plan.checks.append(
            Check(
                "encryption key",
                f"{art.encryption.algorithm}, key id {art.encryption.key_id}: the key given is "
                "the backup's",
            )
        )
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
            decrypting = _decrypting(verifying, encryption_key, storage.uri(art.key))
            stream: Readable = verifying if decrypting is None else decrypting
            while stream.read(CHUNK_SIZE):
                pass
        plan.checks.append(Check("checksum", f"SHA-256 {art.sha256} matches the manifest"))
        if decrypting is not None:
            plan.checks.append(
                Check(
                    "decryption",
                    f"all {decrypting.chunks} chunks authenticated ({ENCRYPTION_ALGORITHM})",
                )
            )
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
        decrypting = _decrypting(verifying, encryption_key, storage.uri(art.key))
        if decrypting is not None:
            # The header and the first chunk, before the engine touches the target: a wrong key
            # (or a damaged start) fails here even without the checksum pass.
            decrypting.prime()
        plaintext: Readable = verifying if decrypting is None else decrypting
        result = engine.restore(
            DecompressingReader(plaintext, compression), manifest, progress, options
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
        notes=tuple(result.notes),
    )


def check_encryption_key(manifest: Manifest, key: EncryptionKey | None, where: str) -> None:
    """Refuse a key that does not fit the backup, by its id, before anything else happens."""
    encryption = manifest.artifact.encryption
    if encryption is None:
        if key is not None:
            raise BackupNotEncrypted(
                f"the backup at {where} is not encrypted, but a key was given ({key.source}): an "
                "encrypted backup may have been replaced by a plaintext one, so it is not "
                "trusted; restore it without a key only if it was taken without encryption; "
                "nothing was restored"
            )
        return
    if key is None:
        raise EncryptionKeyRequired(
            f"the backup at {where} is encrypted ({encryption.algorithm}, key id "
            f"{encryption.key_id}); give its key with --encryption-key-file or "
            f"${ENV_ENCRYPTION_KEY} (a Restore: spec.encryption.keySecretRef, or the encryption "
            "of the Backup's storage); nothing was restored"
        )
    if encryption.algorithm != ENCRYPTION_ALGORITHM:
        raise RestoreError(
            f"the backup at {where} is encrypted with {encryption.algorithm}, which this version "
            f"of Lifeboat cannot decrypt (it knows {ENCRYPTION_ALGORITHM})"
        )
    if encryption.key_id != key.key_id:
        raise EncryptionKeyMismatch(
            f"the backup at {where} was encrypted with the key whose id is {encryption.key_id}; "
            f"the key from {key.source} has id {key.key_id}: give the key it was encrypted with "
            "(`lifeboat key-id` prints a key's id); nothing was restored"
        )


def _decrypting(inner: Readable, key: EncryptionKey | None, where: str) -> DecryptingReader | None:
    return None if key is None else DecryptingReader(inner, key, where)


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


DRILLS_DIRECTORY = "drills"
"""Below a backup's location: the JSON reports of its restore drills (worker/drill.py)."""


def delete_backup(storage: Storage) -> list[str]:
    """Remove a backup: the manifest first (it stops being a backup at once), then artifacts,
    then its restore drills' reports.

    Every artifact name Lifeboat can write is deleted, so an artifact left without a manifest by
    an interrupted run goes too. Returns the keys that existed.
    """
    keys = lifeboat_keys()
    with contextlib.suppress(BackupNotFound, ManifestInvalid):
        keys.append(load_manifest(storage).artifact.key)
    unique = list(dict.fromkeys(keys))
    present = [key for key in unique if storage.size(key) is not None]
    storage.delete([MANIFEST_NAME])
    storage.delete([key for key in unique if key != MANIFEST_NAME])
    with contextlib.suppress(BackupNotFound):
        present += storage.remove_incomplete(unique)
    drills = storage.at(DRILLS_DIRECTORY)
    with contextlib.suppress(BackupNotFound):
        reports = [o.key for o in drills.list_objects() if "/" not in o.key]
        drills.delete(reports)
        present += [f"{DRILLS_DIRECTORY}/{key}" for key in reports]
    return present
