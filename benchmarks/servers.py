"""The servers a benchmark runs against, started here and stopped at the end: PostgreSQL, MariaDB
and an S3 server (moto over HTTP, in its own process so its CPU is its own).

Each server keeps its data below a directory of its own, so `--data-dir` can keep a generated
data set between invocations (a server is started again on a data directory it already made).
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
from psycopg import sql

VENV_BIN = Path(sys.executable).parent
PG_USER = "bench"
MARIADB_USER = "bench"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, ready: Any, timeout: float = 60.0, process: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} while starting")
        with contextlib.suppress(Exception):
            if ready():
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {timeout:.0f}s")
        time.sleep(0.05)


def pid_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its reaped children (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a server: the process, its live children and what they reaped."""
    import psutil

    total = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error, FileNotFoundError, IndexError):
                total += pid_cpu_seconds(proc.pid)
    return total


# -- PostgreSQL --------------------------------------------------------------------------------


def _pg_bin_dir() -> Path:
    configured = os.environ.get("LIFEBOAT_PG_BINDIR")
    if configured:
        return Path(configured)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise SystemExit("PostgreSQL is not installed: run `make system-deps` as root first")
    return Path(initdb).resolve().parent


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the `postgres` OS user when we are root."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class Postgres:
    root: Path
    port: int
    password: str
    bin_dir: Path
    host: str = "127.0.0.1"
    user: str = PG_USER

    @classmethod
    def start(cls, root: Path) -> Postgres:
        """Start a cluster in `root` (made there first if it is not one yet)."""
        bin_dir = _pg_bin_dir()
        data = root / "data"
        password_file = root / "bench-password"
        fresh = not (data / "PG_VERSION").exists()
        if fresh:
            shutil.rmtree(root, ignore_errors=True)
            (root / "sock").mkdir(parents=True)
            password_file.write_text("pw-" + secrets.token_urlsafe(12))
            if os.geteuid() == 0:
                for path in (root, root / "sock"):
                    shutil.chown(path, "postgres", "postgres")
            subprocess.run(
                _as_postgres(
                    [
                        str(bin_dir / "initdb"),
                        "-D",
                        str(data),
                        "-U",
                        "postgres",
                        "--auth-local=trust",
                        "--auth-host=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                        "--no-sync",
                    ]
                ),
                check=True,
                capture_output=True,
            )
        if (data / "postmaster.pid").exists():  # left running by an interrupted run
            subprocess.run(
                _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                capture_output=True,
                check=False,
            )
        port = free_port()
        (data / "postgresql.auto.conf").write_text(
            "# written by the Lifeboat benchmark at every start\n"
            f"port = {port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{root / 'sock'}'\n"
            "password_encryption = 'scram-sha-256'\n"
            "shared_buffers = '256MB'\n"
            "max_wal_size = '4GB'\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "log_min_messages = warning\n"
        )
        if os.geteuid() == 0:
            shutil.chown(data / "postgresql.auto.conf", "postgres", "postgres")
        subprocess.run(
            _as_postgres(
                [
                    str(bin_dir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(root / "server.log"),
                    "-w",
                    "-t",
                    "120",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        server = cls(root, port, password_file.read_text(), bin_dir)
        if fresh:
            with psycopg.connect(
                host=str(root / "sock"), port=port, user="postgres", autocommit=True
            ) as conn:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                        sql.Identifier(PG_USER), sql.Literal(server.password)
                    )
                )
        return server

    def stop(self) -> None:
        subprocess.run(
            _as_postgres(
                [str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "stop"]
            ),
            capture_output=True,
            check=False,
        )

    @property
    def postmaster_pid(self) -> int:
        return int((self.root / "data" / "postmaster.pid").read_text().split()[0])

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname,
            autocommit=True,
        )

    def url(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def tool_args(self) -> list[str]:
        return ["-h", self.host, "-p", str(self.port), "-U", self.user]

    @property
    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password, "LIFEBOAT_DB_PASSWORD": self.password}

    def recreate(self, dbname: str) -> None:
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))

    def drop(self, dbname: str) -> None:
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
            )

    def settle(self) -> None:
        """Write out what earlier runs left dirty, so no run pays for the one before it."""
        with self.connect() as conn:
            conn.execute("CHECKPOINT")


# -- MariaDB -----------------------------------------------------------------------------------


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin"):
        if (Path(directory) / name).exists():
            return str(Path(directory) / name)
    raise SystemExit(f"{name} is not installed: run `make system-deps` as root first")


def _stop_leftover(pid_file: Path) -> None:
    """A server left running by an interrupted run holds the data directory: stop it."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        _wait("the leftover server to stop", lambda: not Path(f"/proc/{pid}").exists(), 120)


@dataclass
class MariaDB:
    root: Path
    port: int
    password: str
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"
    user: str = MARIADB_USER

    @classmethod
    def start(cls, root: Path) -> MariaDB:
        data = root / "data"
        password_file = root / "bench-password"
        fresh = not (data / "mysql").exists()
        if fresh:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            password_file.write_text("pw-" + secrets.token_urlsafe(12))
            subprocess.run(
                [
                    _binary("mariadb-install-db"),
                    "--no-defaults",
                    f"--datadir={data}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    *(["--user=root"] if os.geteuid() == 0 else []),
                ],
                check=True,
                capture_output=True,
            )
        _stop_leftover(root / "mariadbd.pid")
        port = free_port()
        process = subprocess.Popen(
            [
                _binary("mariadbd"),
                "--no-defaults",
                f"--datadir={data}",
                f"--socket={root / 'mysqld.sock'}",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                f"--pid-file={root / 'mariadbd.pid'}",
                f"--log-error={root / 'mariadbd.log'}",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=1G",
                "--innodb-log-file-size=512M",
                "--innodb-flush-log-at-trx-commit=2",
                "--innodb-doublewrite=0",
                "--max-allowed-packet=64M",
                *(["--user=root"] if os.geteuid() == 0 else []),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        server = cls(root, port, password_file.read_text(), process)
        _wait("mariadbd", lambda: server.root_connect().close() or True, 120, process)
        if fresh:
            with contextlib.closing(server.root_connect()) as conn, conn.cursor() as cur:
                cur.execute(
                    f"CREATE USER '{MARIADB_USER}'@'%%' IDENTIFIED BY %s", (server.password,)
                )
                cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{MARIADB_USER}'@'%'")
        return server

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def root_connect(self, database: str | None = None) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            unix_socket=str(self.root / "mysqld.sock"),
            user="root",
            database=database,
            charset="utf8mb4",
            autocommit=True,
        )

    def execute(self, *statements: str, database: str | None = None) -> None:
        with contextlib.closing(self.root_connect(database)) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def scalar(self, query: str, database: str | None = None) -> Any:
        with contextlib.closing(self.root_connect(database)) as conn, conn.cursor() as cur:
            cur.execute(query)
            row = cur.fetchone()
            return row[0] if row else None

    def url(self, dbname: str) -> str:
        return f"mariadb://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def tool_args(self) -> list[str]:
        return [f"--host={self.host}", f"--port={self.port}", f"--user={self.user}"]

    @property
    def env(self) -> dict[str, str]:
        return {"MYSQL_PWD": self.password, "LIFEBOAT_DB_PASSWORD": self.password}

    def recreate(self, dbname: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS `{dbname}`", f"CREATE DATABASE `{dbname}`")

    def drop(self, dbname: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS `{dbname}`")

    def settle(self, timeout: float = 120.0) -> None:
        """Flush the pages earlier runs left dirty (a restore leaves a buffer pool of them), so
        no run pays for the one before it."""
        with contextlib.closing(self.root_connect()) as conn, conn.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.innodb_max_dirty_pages_pct")
            row = cur.fetchone()
            default = row[0] if row else 90
            cur.execute("SET GLOBAL innodb_max_dirty_pages_pct = 0")
            try:
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
                    row = cur.fetchone()
                    if row is None or int(row[1]) < 64:
                        break
                    time.sleep(0.2)  # polling InnoDB's own flushing, not standing in for work
            finally:
                cur.execute(f"SET GLOBAL innodb_max_dirty_pages_pct = {float(default)}")


# -- S3 ----------------------------------------------------------------------------------------

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


@dataclass
class S3Server:
    """moto's S3 server over HTTP on 127.0.0.1, in a process of its own."""

    endpoint: str
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls) -> S3Server:
        port = free_port()
        process = subprocess.Popen(
            [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        endpoint = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            with contextlib.suppress(urllib.error.HTTPError):  # any HTTP answer: it serves
                urllib.request.urlopen(endpoint, timeout=1).close()
            return True

        _wait("moto_server", ready, 60, process)
        return cls(endpoint, process)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    @property
    def env(self) -> dict[str, str]:
        return {**S3_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_ENV["AWS_REGION"],
            config=Config(s3={"addressing_style": "path"}),
        )

    def empty(self, bucket: str) -> None:
        """Delete every object and unfinished upload (moto keeps them all in memory)."""
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )

    def object_size(self, bucket: str, key: str) -> int:
        return int(self.client().head_object(Bucket=bucket, Key=key)["ContentLength"])


@contextlib.contextmanager
def running(server: Any) -> Iterator[Any]:
    try:
        yield server
    finally:
        server.stop()
