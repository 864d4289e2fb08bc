"""A damaged or doctored backup is refused, and the target stays exactly as it was.

For every engine and every way a stored backup can go wrong (a flipped byte, an object cut
short, the manifest missing, edited or unreadable, manifests swapped between two backups of the
same bucket or directory, another backup's artifact put in place), the real `lifeboat restore`
runs against the real database and the real storage (a directory, or the moto S3 server over
HTTP): it must fail with the typed error that names what is wrong, and a whole-database
fingerprint of the target taken before must equal the one taken after.

The table is the test: one row per kind of damage, with where it is stored and what the worker
must answer. Rows alternate between S3 and a directory so that both storages are shown refusing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lifeboat.contract import ExitCode
from tests.support.databases import Database, damage, lifeboat
from tests.support.shared_targets import module_database
from tests.support.stored_backups import MANIFEST, StoredBackup, local_backup, s3_backup

ENGINES = ["postgresql", "mariadb", "sqlite"]


# Each returns what the error must name: the damaged object, or the table whose count was edited.


def _flip_a_byte(a: StoredBackup, _: StoredBackup) -> str:
    blob = bytearray(a.artifact())
    blob[len(blob) // 2] ^= 0x01
    a.write_artifact(bytes(blob))
    return a.artifact_key


def _truncate(a: StoredBackup, _: StoredBackup) -> str:
    blob = a.artifact()
    a.write_artifact(blob[: len(blob) - max(1, len(blob) // 10)])
    return a.artifact_key


def _drop_the_manifest(a: StoredBackup, _: StoredBackup) -> str:
    a.delete(MANIFEST)
    return MANIFEST


def _edit_the_sha256(a: StoredBackup, _: StoredBackup) -> str:
    manifest = a.manifest()
    digest = manifest["artifact"]["sha256"]
    manifest["artifact"]["sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    a.write_manifest(manifest)
    return a.artifact_key


def _edit_the_size(a: StoredBackup, _: StoredBackup) -> str:
    manifest = a.manifest()
    manifest["artifact"]["size"] += 1
    a.write_manifest(manifest)
    return a.artifact_key


def _edit_a_row_count(a: StoredBackup, _: StoredBackup) -> str:
    manifest = a.manifest()
    table = manifest["tables"][-1]
    table["rows"] += 1
    a.write_manifest(manifest)
    return str(table["name"])


def _break_the_json(a: StoredBackup, _: StoredBackup) -> str:
    a.write(MANIFEST, a.read(MANIFEST)[:-20])
    return MANIFEST


def _swap_the_manifests(a: StoredBackup, b: StoredBackup) -> str:
    mine, theirs = a.read(MANIFEST), b.read(MANIFEST)
    a.write(MANIFEST, theirs)
    b.write(MANIFEST, mine)
    return a.artifact_key


def _put_another_backups_artifact(a: StoredBackup, b: StoredBackup) -> str:
    a.write_artifact(b.artifact())
    return a.artifact_key


@dataclass(frozen=True)
class Damage:
    """One row of the table: how the backup is damaged, and what the restore must answer."""

    do: Callable[[StoredBackup, StoredBackup], str]
    storage: str
    exit_code: int
    reason: str
    says: tuple[str, ...]
    """Fragments the error line must hold (what is wrong), besides what `do` says it damaged."""


DAMAGES: dict[str, Damage] = {
    "flipped-byte": Damage(
        _flip_a_byte,
        "s3",
        ExitCode.VERIFICATION,
        "ChecksumMismatch",
        ("SHA-256", "is corrupt", "nothing was restored"),
    ),
    "truncated": Damage(
        _truncate, "local", ExitCode.VERIFICATION, "ChecksumMismatch", ("truncated or replaced",)
    ),
    "manifest-missing": Damage(
        _drop_the_manifest, "s3", ExitCode.STORAGE, "BackupNotFound", ("manifest.json is missing",)
    ),
    "manifest-sha256-edited": Damage(
        _edit_the_sha256, "local", ExitCode.VERIFICATION, "ChecksumMismatch", ("SHA-256", "corrupt")
    ),
    "manifest-size-edited": Damage(
        _edit_the_size, "s3", ExitCode.VERIFICATION, "ChecksumMismatch", ("truncated or replaced",)
    ),
    "manifest-row-count-edited": Damage(
        _edit_a_row_count, "local", ExitCode.VERIFICATION, "VerificationFailed", ("rows",)
    ),
    "manifest-invalid-json": Damage(
        _break_the_json, "s3", ExitCode.VERIFICATION, "ManifestInvalid", ("Invalid JSON",)
    ),
    "manifests-swapped": Damage(
        _swap_the_manifests, "s3", ExitCode.VERIFICATION, "ChecksumMismatch", ("manifest",)
    ),
    "artifact-from-another-backup": Damage(
        _put_another_backups_artifact,
        "local",
        ExitCode.VERIFICATION,
        "ChecksumMismatch",
        ("manifest",),
    ),
}


@dataclass
class Prepared:
    """An engine's shared target and two pristine backups of it (kept in a directory)."""

    db: Database
    backups: list[Path]


@pytest.fixture(scope="module")
def prepared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Prepared]]:
    """Per engine, made once: a target, backup A of it, backup B a little later (same artifact
    name, other bytes), then the target changed again so that it differs from both."""
    made: dict[str, Prepared] = {}
    with contextlib.ExitStack() as stack:

        def get(engine: str) -> Prepared:
            if engine not in made:
                root = tmp_path_factory.mktemp(f"corrupt-{engine}")
                db = module_database(request, engine, root, stack)
                a, b = (local_backup(root / "pristine", name) for name in ("a", "b"))
                _back_up(db, a)
                db.execute(f"DELETE FROM {db.orders_table} WHERE id % 3 = 0")
                _back_up(db, b)
                damage(db)
                for pristine in (a, b):  # both whole: a dry run checks size and SHA-256
                    check = lifeboat("restore", pristine.url, db.url, "--dry-run", env=db.env)
                    assert check.returncode == 0, check.stderr
                made[engine] = Prepared(db, [root / "pristine" / "a", root / "pristine" / "b"])
            return made[engine]

        yield get


def _copies(
    request: pytest.FixtureRequest, tmp_path: Path, storage: str, pristine: list[Path]
) -> list[StoredBackup]:
    """The two pristine backups copied object for object, side by side, into a directory or
    a bucket of the real S3 server."""
    if storage == "local":
        copies = [local_backup(tmp_path / "backups", name) for name in ("a", "b")]
    else:
        bucket = request.getfixturevalue("s3_bucket")
        copies = [s3_backup(bucket, f"team/{name}") for name in ("a", "b")]
    for source, copy in zip(pristine, copies, strict=True):
        if copy.directory is not None:
            copy.directory.mkdir(parents=True)
        for path in source.iterdir():
            copy.write(path.name, path.read_bytes())
    return copies


def _back_up(db: Database, where: StoredBackup) -> None:
    done = lifeboat("backup", db.url, where.url, "--progress", "none", env={**db.env, **where.env})
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("kind", list(DAMAGES))
@pytest.mark.parametrize("engine", ENGINES)
def test_a_damaged_backup_is_refused_and_the_target_is_unchanged(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    prepared: Callable[[str], Prepared],
    engine: str,
    kind: str,
) -> None:
    damage_ = DAMAGES[kind]
    target = prepared(engine)
    db = target.db
    a, b = _copies(request, tmp_path, damage_.storage, target.backups)
    before = db.fingerprint()

    damaged = damage_.do(a, b)
    done = lifeboat("restore", a.url, db.url, "--progress", "none", env={**db.env, **a.env})

    line = done.stderr.strip().splitlines()[-1]
    assert done.returncode == damage_.exit_code, done.stderr
    assert line.startswith(f"lifeboat: error: {damage_.reason}: "), line
    for fragment in (*damage_.says, damaged):
        assert fragment in line, line
    assert "Traceback" not in done.stderr
    assert db.fingerprint() == before, "the refused restore changed the target"
