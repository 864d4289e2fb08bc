"""Database servers a test may restart: one PostgreSQL cluster and one mariadbd per test module.

The session's shared servers (tests/support/postgres.py, mariadb.py) are never restarted: other
tests use them. These are started by the same functions, on data directories and ports of their
own, and `restart()` does what an operator of the database (or its Pod's rescheduling) does:

- PostgreSQL: `pg_ctl restart -m fast` (open sessions are terminated, in-flight transactions
  rolled back, the server comes back on the same port). `-l LOGFILE` is given so the new
  postmaster does not inherit our pipes (TESTING.md).
- MariaDB: SIGTERM to mariadbd (a clean shutdown that kills client threads), then mariadbd
  started again with the very same command line on the same data directory and port.

`restart()` returns once the server accepts connections again.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymysql
import pytest

from tests.support import mariadb as maria
from tests.support import postgres as pg

_BACK_WITHIN = 60.0


@dataclass
class RestartablePostgres:
    server: pg.PostgresServer
    root: Path
    restarts: int = 0

    def restart(self, crash: bool = False) -> None:
        """Fast restart: sessions terminated, transactions rolled back, back on the same port.
        With `crash`, an immediate one: every process quits at once, no checkpoint, and the
        server runs crash recovery when it starts, as after a power cut or an OOM kill."""
        done = subprocess.run(
            pg._as_postgres(
                [
                    str(self.server.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.server.data_dir),
                    "-m",
                    "immediate" if crash else "fast",
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.root / "server.log"),
                    "restart",
                ]
            ),
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, f"pg_ctl restart failed: {done.stdout}{done.stderr}"
        self.restarts += 1
        with self.server.connect() as conn:
            conn.execute("SELECT 1")


@pytest.fixture(scope="module")
def restartable_postgres() -> Iterator[RestartablePostgres]:
    """A PostgreSQL cluster of the module's own, which its tests may restart."""
    with pg.own_cluster() as server:
        yield RestartablePostgres(server=server, root=server.data_dir.parent)


@dataclass
class RestartableMariaDB:
    server: maria.MariaDBServer
    argv: list[str]
    restarts: int = 0

    def restart(self, crash: bool = False) -> None:
        """Clean shutdown (SIGTERM), then the same mariadbd command line again. With `crash`,
        SIGKILL instead: InnoDB recovers from its redo log when the server starts."""
        if crash:
            self.server.process.kill()
            self.server.process.wait(timeout=60)
        else:
            maria._stop(self.server.process)
        process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.server.process = process
        self.restarts += 1
        deadline = time.monotonic() + _BACK_WITHIN
        while True:
            assert process.poll() is None, f"mariadbd did not restart:\n{self.server.log_tail()}"
            try:
                self.server.root().close()
                return
            except pymysql.MySQLError:
                assert time.monotonic() < deadline, "mariadbd did not come back in time"
                time.sleep(0.05)


@pytest.fixture(scope="module")
def restartable_mariadb() -> Iterator[RestartableMariaDB]:
    """A mariadbd of the module's own, which its tests may restart."""
    base = Path(tempfile.mkdtemp(prefix="lbrst-"))  # short: unix socket paths are limited
    try:
        server = maria._start_server(base)
        # Its own command line, as the kernel has it: what a restart runs again.
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        argv = [a.decode() for a in cmdline.split(b"\0") if a]
        restartable = RestartableMariaDB(server=server, argv=argv)
        try:
            yield restartable
        finally:
            maria._stop(restartable.server.process)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(base, ignore_errors=True)
