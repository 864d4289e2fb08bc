"""Bad input to the `lifeboat` command, table-driven: one line naming the argument, the right exit
code, no traceback, no secret echoed, nothing left behind.

Then a full disk (a real one: a 1 MiB tmpfs when this machine lets root mount one, else a file
size limit, RLIMIT_FSIZE, which makes writes fail with EFBIG as a full disk does), and names no
shell or SQL may interpret: a database and a table whose names hold quotes, spaces, `;`,
`$(...)`, backticks and non-ASCII letters, backed up and restored for real on PostgreSQL and
MariaDB.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from lifeboat.cli.demo import create_shop
from lifeboat.contract import ExitCode
from tests.support import mariadb as maria
from tests.support import postgres as pg

SECRET = "hunter2-" + "do-not-echo"


def lifeboat(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lifeboat", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        preexec_fn=preexec_fn,  # only setrlimit, before exec
        check=False,
    )


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Path], list[str]]
    exit_code: int
    reason: str
    says: tuple[str, ...]
    env: Callable[[Path], dict[str, str]] = field(default=lambda _: {})


def backup_to(url: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["backup", f"sqlite:///{tmp}/shop.db", url, "--progress", "none"]


def backup_from(url: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["backup", url, str(tmp / "backups"), "--progress", "none"]


USAGE, STORAGE = ExitCode.USAGE, ExitCode.STORAGE
PG_URL = "postgresql://app@127.0.0.1:1/shop"

CASES = [
    # DATABASE_URL
    Case(
        "db-unknown-scheme",
        backup_from("redis://cache/0"),
        USAGE,
        "InvalidArgument",
        ("DATABASE_URL: unknown scheme 'redis'",),
    ),
    Case(
        "db-empty", backup_from(""), USAGE, "InvalidArgument", ("DATABASE_URL: unknown scheme ''",)
    ),
    Case("db-not-a-url", backup_from("shop database"), USAGE, "InvalidArgument", ("DATABASE_URL",)),
    Case(
        "db-no-database",
        backup_from("postgresql://app@db"),
        USAGE,
        "InvalidArgument",
        ("DATABASE_URL: name one database",),
    ),
    Case(
        "db-two-databases",
        backup_from("postgresql://app@db/a/b"),
        USAGE,
        "InvalidArgument",
        ("DATABASE_URL: name one database",),
    ),
    Case(
        "db-no-host",
        backup_from("mysql:///shop"),
        USAGE,
        "InvalidArgument",
        ("DATABASE_URL: a host is needed",),
    ),
    Case(
        "db-port-not-a-number",
        backup_from("postgresql://app@db:fivefour/shop"),
        USAGE,
        "InvalidArgument",
        ("DATABASE_URL: the port is not a number",),
    ),
    Case(
        "db-port-out-of-range",
        backup_from("postgresql://app@db:99999/shop"),
        USAGE,
        "InvalidArgument",
        ("DATABASE_URL: the port is not a number", "out of range"),
    ),
    Case(
        "db-sqlite-no-path",
        backup_from("sqlite://"),
        USAGE,
        "InvalidArgument",
        ("DATABASE_URL: sqlite needs a file path",),
    ),
    Case(
        "db-password-in-url",
        backup_from(f"postgresql://app:{SECRET}@db/shop"),
        USAGE,
        "InvalidArgument",
        ("DATABASE_URL: a password in the URL",),
    ),
    # BACKUP_URL
    Case("store-empty", backup_to(""), USAGE, "InvalidArgument", ("BACKUP_URL is empty",)),
    Case(
        "store-unknown-scheme",
        backup_to("ftp://files/backups"),
        USAGE,
        "InvalidArgument",
        ("BACKUP_URL: unknown scheme 'ftp'",),
    ),
    Case(
        "store-no-bucket",
        backup_to("s3:///prefix/"),
        USAGE,
        "InvalidArgument",
        ("BACKUP_URL", "valid bucket"),
    ),
    Case(
        "store-bucket-space",
        backup_to("s3://bad bucket/x/"),
        USAGE,
        "InvalidArgument",
        ("BACKUP_URL", "valid bucket"),
    ),
    Case(
        "store-bucket-unicode",
        backup_to("s3://bückets/x/"),
        USAGE,
        "InvalidArgument",
        ("BACKUP_URL", "valid bucket"),
    ),
    Case(
        "store-bucket-port",
        backup_to("s3://minio:9000/x/"),
        USAGE,
        "InvalidArgument",
        ("BACKUP_URL", "port after the bucket"),
    ),
    Case(
        "store-credentials-in-url",
        backup_to(f"s3://key:{SECRET}@bucket/x/"),
        USAGE,
        "InvalidArgument",
        ("BACKUP_URL: credentials do not belong in the URL",),
    ),
    Case(
        "store-unknown-parameter",
        backup_to("s3://bucket/x/?secret=abc"),
        USAGE,
        "InvalidArgument",
        ("BACKUP_URL: unknown parameter 'secret'",),
    ),
    Case(
        "store-endpoint-not-a-url",
        backup_to("s3://bucket/x/?endpoint=minio:9000"),
        USAGE,
        "InvalidArgument",
        ("BACKUP_URL: endpoint must look like",),
    ),
    Case(
        "store-prefix-dotdot",
        backup_to("s3://bucket/shop/../billing/"),
        USAGE,
        "InvalidArgument",
        ("BACKUP_URL", "'..' segment"),
    ),
    Case(
        "store-file-relative",
        backup_to("file://backups/x"),
        USAGE,
        "InvalidArgument",
        ("BACKUP_URL", "names a host"),
    ),
    Case(
        "store-file-query",
        backup_to("file:///tmp/x?y=1"),
        USAGE,
        "InvalidArgument",
        ("BACKUP_URL", "query or fragment"),
    ),
    Case(
        "store-is-a-file",
        lambda tmp: [
            "backup",
            f"sqlite:///{tmp}/shop.db",
            str(tmp / "shop.db"),
            "--progress",
            "none",
        ],
        STORAGE,
        "StorageError",
        ("shop.db is not a directory",),
    ),
    Case(
        "store-below-a-file",
        lambda tmp: [
            "backup",
            f"sqlite:///{tmp}/shop.db",
            f"file://{tmp}/shop.db/inside/",
            "--progress",
            "none",
        ],
        STORAGE,
        "StorageError",
        ("is not a directory",),
    ),
    Case(
        "restore-from-a-file",
        lambda tmp: [
            "restore",
            str(tmp / "shop.db"),
            f"sqlite:///{tmp}/copy.db",
            "--progress",
            "none",
        ],
        STORAGE,
        "",
        ("shop.db",),
    ),
    # Passwords
    Case(
        "password-file-missing",
        backup_from(PG_URL),
        USAGE,
        "InvalidArgument",
        ("LIFEBOAT_DB_PASSWORD_FILE: cannot read", "No such file"),
        env=lambda tmp: {
            "LIFEBOAT_DB_PASSWORD_FILE": str(tmp / "nowhere"),
            "LIFEBOAT_DB_PASSWORD": "",
        },
    ),
    Case(
        "password-file-is-a-directory",
        backup_from(PG_URL),
        USAGE,
        "InvalidArgument",
        ("LIFEBOAT_DB_PASSWORD_FILE: cannot read", "directory"),
        env=lambda tmp: {"LIFEBOAT_DB_PASSWORD_FILE": str(tmp), "LIFEBOAT_DB_PASSWORD": ""},
    ),
]


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 20
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_bad_arguments_end_in_one_line_naming_them(tmp_path: Path, case: Case) -> None:
    create_shop(tmp_path / "shop.db", orders=20)

    def files() -> list[str]:  # SQLite's own -wal/-shm of the source database do not count
        return sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm")))

    before = files()
    done = lifeboat(*case.args(tmp_path), env=case.env(tmp_path), cwd=tmp_path)
    assert done.returncode == case.exit_code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"lifeboat: error: {case.reason}"), lines[0]
    for words in case.says:
        assert words in lines[0], lines[0]
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stdout + done.stderr
    assert files() == before  # nothing left behind


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["backup", "sqlite:///x.db", "b", "--compression", "lz4"],
            "--compression: 'lz4' is not supported",
        ),
        (["backup", "sqlite:///x.db", "b", "--timeout", "soon"], "--timeout: invalid float value"),
        (["backup", "sqlite:///x.db", "b", "--progress-interval", "-1"], "--progress-interval"),
        (["backup", "sqlite:///x.db"], "BACKUP_URL"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_malformed_command_lines_exit_2_naming_the_option(
    tmp_path: Path, args: list[str], says: str
) -> None:
    done = lifeboat(*args, cwd=tmp_path)
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert says in done.stderr
    assert "Traceback" not in done.stderr


# -- a full disk ----------------------------------------------------------------------------------


@dataclass
class SmallDisk:
    """Where writes run out of space after about a MiB, and how to run a process there."""

    directory: Path
    preexec_fn: Callable[[], None] | None
    kind: str


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024, 1024 * 1024))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = None
    if shutil.which("mount") is not None and os.geteuid() == 0:
        mounted = subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                "size=1m",
                f"lifeboat-{uuid.uuid4().hex[:8]}",
                str(mountpoint),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if mounted is not None and mounted.returncode == 0:
        try:
            yield SmallDisk(mountpoint, None, "tmpfs")
        finally:
            subprocess.run(["umount", str(mountpoint)], check=True)
    else:
        # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG, as on a full disk.
        yield SmallDisk(mountpoint, _limit_file_size, "RLIMIT_FSIZE")


def test_a_full_disk_is_disk_full_and_leaves_nothing_behind(
    tmp_path: Path, small_disk: SmallDisk
) -> None:
    db = tmp_path / "big.db"
    create_shop(db, orders=60_000)
    assert db.stat().st_size > 2 * 1024 * 1024
    target = small_disk.directory / "backups"
    done = lifeboat(
        "backup",
        f"sqlite:///{db}",
        str(target),
        "--compression",
        "none",
        "--progress",
        "none",
        preexec_fn=small_disk.preexec_fn,
    )
    assert done.returncode == ExitCode.STORAGE, (small_disk.kind, done.stderr)
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("lifeboat: error: DiskFull: "), (small_disk.kind, line)
    assert "Traceback" not in done.stderr
    leftovers = [p for p in target.rglob("*") if p.is_file()] if target.exists() else []
    assert leftovers == [], leftovers  # no partial dump, no manifest: not a backup
    listed = lifeboat("list", str(target), "--output", "json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["backups"] == []


# -- names that are data, never code ------------------------------------------------------------

ODD_NAME = "sh\"op 'x'; $(touch pwned) `id` ünï"
ODD_TABLE = 'ta"ble; $(id) `x` ö'


def odd_postgres_database(request: pytest.FixtureRequest) -> pg.PgDatabase:
    """A database named ODD_NAME on the test server, owned by a role of its own; dropped after."""
    server: pg.PostgresServer = request.getfixturevalue("postgres_server")
    role = request.getfixturevalue("pg_role_factory")(prefix="odd")
    from psycopg import sql

    with server.connect() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(ODD_NAME), sql.Identifier(role.name)
            )
        )
    request.addfinalizer(lambda: server.drop_database(ODD_NAME))
    return pg.PgDatabase(server=server, name=ODD_NAME, role=role)


def odd_mariadb_database(request: pytest.FixtureRequest) -> maria.MariaDBDatabase:
    databases: maria.MariaDBDatabases = request.getfixturevalue("mariadb_databases")
    user = databases.create_user()
    server = databases.server
    server.root_execute(
        f"CREATE DATABASE {maria.quote(ODD_NAME)} CHARACTER SET utf8mb4",
        f"GRANT ALL PRIVILEGES ON {maria.quote(ODD_NAME)}.* TO {user.account}",
    )
    request.addfinalizer(
        lambda: server.root_execute(f"DROP DATABASE IF EXISTS {maria.quote(ODD_NAME)}")
    )
    return maria.MariaDBDatabase(server, ODD_NAME, user)


@dataclass
class OddDatabase:
    url: str
    env: dict[str, str]
    fingerprint: Callable[[], Any]
    execute: Callable[[str], None]
    table: str


def _odd(request: pytest.FixtureRequest, engine: str) -> OddDatabase:
    if engine == "postgresql":
        db = odd_postgres_database(request)
        table = '"' + ODD_TABLE.replace('"', '""') + '"'
        host = f"{db.server.host}:{db.server.port}"
        return OddDatabase(
            url=f"postgresql://{quote(db.user, safe='')}@{host}/{quote(ODD_NAME, safe='')}",
            env=db.env,
            fingerprint=db.fingerprint,
            execute=lambda statement: db.execute(statement),
            table=table,
        )
    mdb = odd_mariadb_database(request)
    host = f"{mdb.server.host}:{mdb.server.port}"
    return OddDatabase(
        url=f"mariadb://{quote(mdb.user.name, safe='')}@{host}/{quote(ODD_NAME, safe='')}",
        env=mdb.env,
        fingerprint=lambda: maria.fingerprint(mdb),
        execute=lambda statement: mdb.execute(statement),
        table=maria.quote(ODD_TABLE),
    )


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_names_with_quotes_semicolons_substitutions_and_unicode_round_trip(
    request: pytest.FixtureRequest, tmp_path: Path, engine: str
) -> None:
    db = _odd(request, engine)
    db.execute(f"CREATE TABLE {db.table} (id int primary key, note text)")
    values = ", ".join(f"({i}, 'note {i}; $(id) `x` ''q''')" for i in range(1, 41))
    db.execute(f"INSERT INTO {db.table} VALUES {values}")
    original = db.fingerprint()
    location = tmp_path / "backups" / "odd $(touch pwned) `id` ü"
    work = tmp_path / "work"
    work.mkdir()

    done = lifeboat("backup", db.url, str(location), "--output", "json", env=db.env, cwd=work)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rows"] == 40

    db.execute(f"DELETE FROM {db.table} WHERE id > 10")
    assert db.fingerprint() != original
    done = lifeboat("restore", str(location), db.url, "--progress", "none", env=db.env, cwd=work)
    assert done.returncode == 0, done.stderr
    assert db.fingerprint() == original
    assert list(work.iterdir()) == []  # no `touch pwned`, no `id`: no shell saw the names
    assert not (tmp_path / "pwned").exists()
    manifest = json.loads(lifeboat("show", str(location), cwd=work).stdout)
    assert manifest["database"] == ODD_NAME
    assert any(ODD_TABLE in str(table["name"]) for table in manifest["tables"])


def test_the_odd_names_hold_what_the_issue_asks_for() -> None:
    for name in (ODD_NAME, ODD_TABLE):
        for needle in ('"', " ", ";", "$(", ")", "`"):
            assert needle in name, (name, needle)
        assert not name.isascii()
