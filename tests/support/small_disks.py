"""Real full disks: a tmpfs mounted for a test, whose size the test sets and changes.

`tmpfs(size)` mounts a tmpfs of `size` bytes on a fresh directory (needs root; the test is
skipped otherwise) and always unmounts it at the end, lazily if a process still holds it, so a
failing test never leaves a mount behind. A database server's data (a PostgreSQL tablespace, a
mariadbd data directory) is put there while it is roomy, then `resize()` shrinks the volume to
what it holds plus a margin (tmpfs refuses a size below what it holds): the server's disk is
then really full when a restore writes more than the margin, and growing it again is what an
operator does to free space (`kubectl edit pvc`, a bigger volume).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

MIB = 2**20


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


@contextlib.contextmanager
def tmpfs(size: int, *, owner: str | None = None, prefix: str = "lbdisk-") -> Iterator[Path]:
    """A directory on a tmpfs of `size` bytes (owned by the OS user `owner`, else root, mode
    0755 so that server processes may reach it); unmounted and removed at the end."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))  # short: unix socket paths are limited
    directory.chmod(0o755)
    try:
        done = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(directory))
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
        try:
            if owner is not None and os.geteuid() == 0:
                shutil.chown(directory, owner, owner)
            yield directory
        finally:
            if _run("umount", str(directory)).returncode != 0:
                _run("umount", "-l", str(directory))  # still held: detach it now, freed later
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def used(directory: Path) -> int:
    """Bytes in use on the filesystem of `directory`."""
    usage = shutil.disk_usage(directory)
    return usage.total - usage.free


def resize(directory: Path, size: int) -> None:
    """Make the tmpfs at `directory` `size` bytes (rounded up to whole pages)."""
    done = _run("mount", "-o", f"remount,size={size}", str(directory))
    assert done.returncode == 0, f"cannot resize the tmpfs at {directory}: {done.stderr}"


def leave_free(directory: Path, free: int) -> None:
    """Shrink (or grow) the tmpfs at `directory` so that exactly about `free` bytes are left."""
    resize(directory, used(directory) + free)
