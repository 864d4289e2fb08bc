"""LocalStorage on a real filesystem: atomic writes, aborts that leave nothing, mapped OS errors."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lifeboat.worker.errors import AccessDenied, BackupNotFound, DiskFull
from lifeboat.worker.storage.local import LocalStorage
from lifeboat.worker.streams import CHUNK_SIZE


class Boom(Exception):
    pass


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def write_then_fail(storage: LocalStorage, key: str) -> None:
    with storage.open_writer(key) as writer:
        writer.write(b"half a dump")
        raise Boom


def write_chunks(storage: LocalStorage, key: str, count: int) -> None:
    with storage.open_writer(key) as writer:
        for _ in range(count):
            writer.write(b"\0" * CHUNK_SIZE)


def test_a_streamed_object_round_trips(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    chunk = os.urandom(CHUNK_SIZE // 3)
    with storage.open_writer("dump.zst", size_hint=10) as writer:
        for _ in range(12):
            assert writer.write(chunk) == len(chunk)
    assert storage.size("dump.zst") == 12 * len(chunk)
    digest = hashlib.sha256()
    with storage.open_reader("dump.zst") as reader:
        while block := reader.read(CHUNK_SIZE):
            assert len(block) <= CHUNK_SIZE
            digest.update(block)
    assert digest.digest() == hashlib.sha256(chunk * 12).digest()
    assert names(tmp_path) == ["dump.zst"]


def test_nothing_is_visible_under_the_key_until_the_writer_finishes(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    with storage.open_writer("dump.zst") as writer:
        writer.write(b"x" * 1000)
        assert storage.size("dump.zst") is None
        [temp] = names(tmp_path)
        assert temp.startswith(".dump.zst.partial-")
    assert names(tmp_path) == ["dump.zst"]
    assert stat.S_IMODE((tmp_path / "dump.zst").stat().st_mode) & 0o007 == 0


def test_an_exception_in_the_writer_leaves_nothing_behind(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("dump.zst", b"previous good backup")
    with pytest.raises(Boom):
        write_then_fail(storage, "dump.zst")
    assert names(tmp_path) == ["dump.zst"]
    assert storage.get_bytes("dump.zst") == b"previous good backup"


def test_a_finished_write_replaces_the_previous_object(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("manifest.json", b"old")
    storage.put_bytes("manifest.json", b"new")
    assert storage.get_bytes("manifest.json") == b"new"
    assert names(tmp_path) == ["manifest.json"]


def test_the_directory_is_created_on_first_write(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "a" / "b")
    storage.check()
    assert not (tmp_path / "a").exists(), "check() has no side effects"
    storage.put_bytes("manifest.json", b"{}")
    assert (tmp_path / "a" / "b" / "manifest.json").read_bytes() == b"{}"


def test_a_missing_object_is_backup_not_found_naming_where(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "nowhere")
    assert storage.size("manifest.json") is None
    with pytest.raises(BackupNotFound, match=r"file://.*/nowhere/manifest\.json"):
        storage.get_bytes("manifest.json")
    with pytest.raises(BackupNotFound), storage.open_reader("dump.zst"):
        pass


def test_deleting_missing_objects_is_fine(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("a", b"1")
    storage.put_bytes("b", b"2")
    storage.delete(["a", "never-written"])
    assert names(tmp_path) == ["b"]
    LocalStorage(tmp_path / "missing").delete(["x"])


@pytest.mark.parametrize("key", ["", ".", "..", "../escape", "a/b", "/etc/passwd"])
def test_keys_cannot_leave_the_directory(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="plain file names"):
        LocalStorage(tmp_path / "d").put_bytes(key, b"x")


def test_uri_is_a_file_url(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "with space")
    assert storage.uri("m.json") == (tmp_path / "with space").as_uri() + "/m.json"
    assert storage.uri().endswith("/with%20space/")


def test_check_rejects_a_path_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(Exception, match="not a directory"):
        LocalStorage(tmp_path / "file" / "backups").check()


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, so the disk really fills up. Needs mount privileges (root here)."""
    yield from _mounted_tmpfs(tmp_path / "tiny", "size=1m")


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory writes are refused in: chmod for a normal user, a read-only mount for root."""
    if os.geteuid() != 0:
        directory = tmp_path / "ro"
        directory.mkdir()
        directory.chmod(0o500)
        yield directory
        directory.chmod(0o700)
        return
    yield from _mounted_tmpfs(tmp_path / "ro", "ro,size=1m")


def _mounted_tmpfs(mountpoint: Path, options: str) -> Iterator[Path]:
    if shutil.which("mount") is None:
        pytest.skip("no mount(8) here to create a small tmpfs")
    mountpoint.mkdir()
    source = f"lifeboat-test-{uuid.uuid4().hex[:8]}"
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, source, str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); needs root")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_full_disk_is_disk_full_and_leaves_no_temp_file(tiny_tmpfs: Path) -> None:
    storage = LocalStorage(tiny_tmpfs)
    with pytest.raises(DiskFull, match=r"no space left on device writing .*/tiny/dump\.zst"):
        write_chunks(storage, "dump.zst", 4)
    assert names(tiny_tmpfs) == []


def test_a_refused_write_is_access_denied(read_only_dir: Path) -> None:
    storage = LocalStorage(read_only_dir)
    with pytest.raises(AccessDenied, match=r"writing .*/ro/manifest\.json"):
        storage.put_bytes("manifest.json", b"{}")
    with pytest.raises(AccessDenied, match="permission denied"):
        LocalStorage(read_only_dir / "sub").check()
    assert names(read_only_dir) == []
