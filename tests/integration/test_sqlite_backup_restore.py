"""The whole worker pipeline on SQLite and a local directory: the embedded default, for real."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

import pytest

from lifeboat.cli.demo import create_shop, fingerprint
from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.engines.base import RestoreOptions
from lifeboat.worker.engines.sqlite import SQLiteEngine
from lifeboat.worker.errors import (
    BackupNotFound,
    ChecksumMismatch,
    DumpFailed,
    UsageError,
    VerificationFailed,
)
from lifeboat.worker.manifest import MANIFEST_NAME, Manifest
from lifeboat.worker.pipeline import BackupOptions, run_backup, run_restore
from lifeboat.worker.progress import CallbackReporter, Progress, ProgressSnapshot
from lifeboat.worker.storage import open_storage


def engine_for(path: Path) -> SQLiteEngine:
    return SQLiteEngine(parse_database_url(f"sqlite:///{path}"))


def damage(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(
            "DELETE FROM orders WHERE id % 3 = 0; DROP TABLE products;"
            "CREATE TABLE late (x); INSERT INTO late VALUES (1);"
        )


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "db" / "shop.db"
    path.parent.mkdir()
    create_shop(path, orders=2000)
    return path


def backup(shop: Path, location: Path, **options: object) -> Manifest:
    return run_backup(
        engine_for(shop), open_storage(str(location)), Progress("backup"), BackupOptions(**options)
    )


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_round_trip_brings_every_row_back_and_drops_later_objects(
    shop: Path, tmp_path: Path, compression: str
) -> None:
    from lifeboat.worker.compression import Compression

    original = fingerprint(shop)
    manifest = backup(shop, tmp_path / "b", compression=Compression(compression))
    assert manifest.row_counts["orders"] == 2000
    damage(shop)
    assert fingerprint(shop) != original

    report = run_restore(open_storage(str(tmp_path / "b")), engine_for(shop), Progress("restore"))

    assert fingerprint(shop) == original
    assert "late" not in fingerprint(shop)
    assert report.checksum_verified
    assert report.row_counts == manifest.row_counts


def test_keep_extra_objects_restores_backed_up_tables_and_keeps_new_ones(
    shop: Path, tmp_path: Path
) -> None:
    original = fingerprint(shop)
    backup(shop, tmp_path / "b")
    damage(shop)
    run_restore(
        open_storage(str(tmp_path / "b")),
        engine_for(shop),
        Progress("restore"),
        RestoreOptions(keep_extra_objects=True),
    )
    after = fingerprint(shop)
    assert after.pop("late")[0] == 1
    assert after == original


def test_restore_creates_a_missing_target(shop: Path, tmp_path: Path) -> None:
    backup(shop, tmp_path / "b")
    target = tmp_path / "new" / "copy.db"
    run_restore(open_storage(str(tmp_path / "b")), engine_for(target), Progress("restore"))
    assert fingerprint(target) == fingerprint(shop)


@pytest.mark.parametrize("verify_first", [True, False])
def test_flipped_byte_is_refused_and_target_unchanged(
    shop: Path, tmp_path: Path, verify_first: bool
) -> None:
    manifest = backup(shop, tmp_path / "b")
    artifact = tmp_path / "b" / manifest.artifact.key
    blob = bytearray(artifact.read_bytes())
    blob[len(blob) // 3] ^= 0x01
    artifact.write_bytes(bytes(blob))
    damage(shop)
    before = fingerprint(shop)

    with pytest.raises(ChecksumMismatch):
        run_restore(
            open_storage(str(tmp_path / "b")),
            engine_for(shop),
            Progress("restore"),
            verify_first=verify_first,
        )
    assert fingerprint(shop) == before
    assert not list(shop.parent.glob(".*lifeboat-restore*"))


def test_truncated_artifact_is_refused(shop: Path, tmp_path: Path) -> None:
    manifest = backup(shop, tmp_path / "b")
    artifact = tmp_path / "b" / manifest.artifact.key
    artifact.write_bytes(artifact.read_bytes()[:-100])
    with pytest.raises(ChecksumMismatch, match="truncated or replaced"):
        run_restore(open_storage(str(tmp_path / "b")), engine_for(shop), Progress("restore"))


def test_row_count_mismatch_fails_and_leaves_target_unchanged(shop: Path, tmp_path: Path) -> None:
    backup(shop, tmp_path / "b")
    manifest_path = tmp_path / "b" / MANIFEST_NAME
    manifest = Manifest.model_validate_json(manifest_path.read_text())
    tables = [
        t.model_copy(update={"rows": t.rows + 1}) if t.name == "orders" else t
        for t in manifest.tables
    ]
    manifest_path.write_text(manifest.model_copy(update={"tables": tables}).model_dump_json())
    damage(shop)
    before = fingerprint(shop)
    with pytest.raises(VerificationFailed, match="orders"):
        run_restore(open_storage(str(tmp_path / "b")), engine_for(shop), Progress("restore"))
    assert fingerprint(shop) == before


class FailingDump:
    """Wraps a real dump stream and fails after some bytes, as a dying dump tool would."""

    def __init__(self, inner, fail_after: int) -> None:
        self._inner = inner
        self._left = fail_after

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        self._left -= len(data)
        if self._left < 0:
            raise DumpFailed("simulated: the dump tool died")
        return data

    def finish(self):
        return self._inner.finish()


def test_failed_dump_leaves_no_artifact_and_no_manifest(shop: Path, tmp_path: Path) -> None:
    engine = engine_for(shop)
    real_dump = engine.dump

    @contextlib.contextmanager
    def failing_dump(progress):
        with real_dump(progress) as stream:
            yield FailingDump(stream, fail_after=100_000)

    engine.dump = failing_dump  # type: ignore[method-assign]
    location = tmp_path / "b"
    with pytest.raises(DumpFailed):
        run_backup(engine, open_storage(str(location)), Progress("backup"))
    assert sorted(p.name for p in location.iterdir()) == []
    with pytest.raises(BackupNotFound, match=MANIFEST_NAME):
        run_restore(open_storage(str(location)), engine_for(shop), Progress("restore"))


def test_a_location_holds_one_backup_unless_overwrite(shop: Path, tmp_path: Path) -> None:
    backup(shop, tmp_path / "b")
    with pytest.raises(UsageError, match="--overwrite"):
        backup(shop, tmp_path / "b")
    second = backup(shop, tmp_path / "b", overwrite=True)
    assert Manifest.model_validate_json((tmp_path / "b" / MANIFEST_NAME).read_text()) == second


def test_backup_of_a_live_database_is_consistent(shop: Path, tmp_path: Path) -> None:
    stop = threading.Event()

    def writer() -> None:
        with contextlib.closing(sqlite3.connect(shop, timeout=30)) as db:
            i = 10_000_000
            while not stop.is_set():
                i += 1
                db.execute("INSERT INTO orders VALUES (?, 1, '2026-01-01', 'live')", (i,))
                db.commit()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        manifest = backup(shop, tmp_path / "b")
    finally:
        stop.set()
        thread.join()
    target = tmp_path / "copy.db"
    report = run_restore(open_storage(str(tmp_path / "b")), engine_for(target), Progress("r"))
    assert report.row_counts == manifest.row_counts


def test_progress_is_measured_monotonic_and_ends_at_100(shop: Path, tmp_path: Path) -> None:
    for operation in ("backup", "restore"):
        seen: list[ProgressSnapshot] = []
        progress = Progress(operation, [CallbackReporter(seen.append)], interval=0)
        if operation == "backup":
            manifest = run_backup(engine_for(shop), open_storage(str(tmp_path / "b")), progress)
        else:
            run_restore(open_storage(str(tmp_path / "b")), engine_for(shop), progress)
        percents = [s.percent for s in seen]
        assert percents == sorted(percents), operation
        assert percents[-1] == 100.0
        assert [s for s in seen if s.percent == 100.0] == [seen[-1]]
        assert seen[-1].items_done == len(manifest.tables)
        assert seen[-1].bytes_done > 0


def test_failure_after_publishing_takes_the_artifact_back(shop: Path, tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "b"))

    def manifest_write_fails(key: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    storage.put_bytes = manifest_write_fails  # type: ignore[method-assign]
    with pytest.raises(OSError, match="No space"):
        run_backup(engine_for(shop), storage, Progress("backup"))
    assert list((tmp_path / "b").iterdir()) == []
