"""MariaDB for tests: a throwaway mariadbd per session, a fresh database per test, a sample schema.

The server is a real `mariadbd` from the Debian packages, started from an empty data directory on
a free port of 127.0.0.1 with grants enforced (tests need wrong passwords to be refused).

Tests run as what managed databases hand to applications, never as a superuser: every database
made by `mariadb_databases.create()` (or `mariadb_database`) gets its own user with
`ALL PRIVILEGES ON thatdb.*` and nothing else, and `url`, `env`, `connect()`, `execute()` use that
user. `reserve()` names a database that does not exist yet and grants its user on that name (as a
managed service does before the restore creates it). `create_user()` makes users with exactly the
grants a privilege test names. Root, over the server's socket, is for setting up and inspecting
(`root()`, `fingerprint`, `leftovers`). Passwords travel in the environment only: the URLs handed
out never contain them. The password is deliberately full of quotes, backslashes and shell
characters, so any quoting bug shows up as an authentication failure. Users are dropped at
teardown with their databases.

Reusable pieces for other suites: `mariadb_server`, `mariadb_database`, `mariadb_databases`
(fixtures), `seed_sample_schema` (tables with hostile strings, binary data, NULLs, a view on a
view, routines, a trigger and an event) and `fingerprint` (everything a restore must bring back,
for before/after comparisons).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pytest

from tests.support.e2e import E2E_SETTINGS

PASSWORD = "lb p@ss'w\"rd\\ #;$(x) é"
RESERVED_PREFIX = "__lifeboat_"
"""Tables (and foreign keys) a restore stages in the target database carry this prefix."""
_START_TIMEOUT = 60.0


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"):
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MariaDBServer:
    """A running mariadbd: TCP on 127.0.0.1:port for the code under test, a socket for root."""

    host: str
    port: int
    socket: Path
    datadir: Path
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def root(self, database: str | None = None) -> pymysql.connections.Connection[Any]:
        """A superuser connection over the socket, for setting up and inspecting."""
        return pymysql.connect(
            unix_socket=str(self.socket),
            user="root",
            database=database,
            charset="utf8mb4",
            autocommit=True,
        )

    def root_execute(self, *statements: str, database: str | None = None) -> None:
        with contextlib.closing(self.root(database)) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)

    def connect(
        self, user: MariaDBUser, database: str | None = None
    ) -> pymysql.connections.Connection[Any]:
        """A connection as `user` over TCP, as the engine connects."""
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=user.name,
            password=user.password.encode(),  # as the engine and the tools send it: UTF-8
            database=database,
            charset="utf8mb4",
            autocommit=True,
        )

    def databases(self) -> list[str]:
        with contextlib.closing(self.root()) as conn, conn.cursor() as cur:
            cur.execute("SHOW DATABASES")
            return [str(r[0]) for r in cur.fetchall()]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


@dataclass(frozen=True)
class MariaDBUser:
    """A login on the test server: 'name'@'%' with the shared hostile PASSWORD."""

    name: str
    password: str = field(default=PASSWORD, repr=False)
    host: str = "%"

    @property
    def account(self) -> str:
        """As SQL names it: 'name'@'%'."""
        return f"'{self.name}'@'{self.host}'"

    @property
    def label(self) -> str:
        """As CURRENT_USER() and manifests name it: name@%."""
        return f"{self.name}@{self.host}"

    @property
    def env(self) -> dict[str, str]:
        return {"LIFEBOAT_DB_PASSWORD": self.password}


@dataclass
class MariaDBDatabase:
    """One database on the test server, the user that owns it (ALL on it alone), and what a
    worker needs to reach it as that user."""

    server: MariaDBServer
    name: str
    user: MariaDBUser

    @property
    def password(self) -> str:
        return self.user.password

    @property
    def url(self) -> str:
        """DATABASE_URL without the password: mariadb://USER@127.0.0.1:PORT/name."""
        return self.url_for("mariadb")

    def url_for(self, scheme: str, user: MariaDBUser | None = None) -> str:
        login = user or self.user
        return f"{scheme}://{login.name}@{self.server.host}:{self.server.port}/{self.name}"

    @property
    def env(self) -> dict[str, str]:
        return self.user.env

    def connect(self) -> pymysql.connections.Connection[Any]:
        return self.server.connect(self.user, self.name)

    def execute(self, *statements: str, args: Sequence[Any] | None = None) -> None:
        """Run statements in order as the database's user (one statement each; routines need no
        DELIMITER here)."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement, args)

    def root_execute(self, *statements: str) -> None:
        """Run statements as root, in this database (objects defined by someone else)."""
        self.server.root_execute(*statements, database=self.name)

    def fetchall(self, sql: str, args: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            cur.execute(sql, args)
            return [tuple(r) for r in cur.fetchall()]

    def scalar(self, sql: str, args: Sequence[Any] | None = None) -> Any:
        rows = self.fetchall(sql, args)
        return rows[0][0] if rows else None

    def exists(self) -> bool:
        return self.name in self.server.databases()

    def leftovers(self) -> list[str]:
        """What a restore of this database left behind: tables and foreign keys with reserved
        names inside it, and any database named after it (the shadow/parking databases of
        earlier Lifeboat versions, or anything else a restore made)."""
        like = RESERVED_PREFIX.replace("_", "\\_") + "%"
        with contextlib.closing(self.server.root()) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT TABLE_NAME FROM information_schema.TABLES"
                " WHERE TABLE_SCHEMA = %s AND TABLE_NAME LIKE %s",
                (self.name, like),
            )
            found = [f"table {r[0]}" for r in cur.fetchall()]
            cur.execute(
                "SELECT TABLE_NAME, CONSTRAINT_NAME FROM information_schema.TABLE_CONSTRAINTS"
                " WHERE TABLE_SCHEMA = %s AND CONSTRAINT_NAME LIKE %s",
                (self.name, like),
            )
            found += [f"constraint {r[1]} of {r[0]}" for r in cur.fetchall()]
        found += [
            f"database {d}"
            for d in self.server.databases()
            if d != self.name and (d.startswith(self.name) or RESERVED_PREFIX in d)
        ]
        return found

    def row_counts(self) -> dict[str, int]:
        tables = self.fetchall(
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' AND TABLE_NAME NOT LIKE %s",
            (self.name, RESERVED_PREFIX.replace("_", "\\_") + "%"),
        )
        return {
            str(t): int(self.scalar(f"SELECT COUNT(*) FROM {quote(str(t))}")) for (t,) in tables
        }


class MariaDBDatabases:
    """Creates uniquely named databases, each with its own user, and users with exact grants;
    drops all of them (and anything a restore left) afterwards."""

    def __init__(self, server: MariaDBServer) -> None:
        self.server = server
        self._names: list[str] = []
        self._users: list[MariaDBUser] = []

    def create(self, prefix: str = "t", *, user: MariaDBUser | None = None) -> MariaDBDatabase:
        """A new empty utf8mb4 database and its user (or `user`, granted ALL on it too)."""
        db = self.reserve(prefix, user=user)
        self.server.root_execute(f"CREATE DATABASE {quote(db.name)} CHARACTER SET utf8mb4")
        return db

    def reserve(self, prefix: str = "t", *, user: MariaDBUser | None = None) -> MariaDBDatabase:
        """A unique name that does not exist yet (restore-into-a-missing-database tests), with a
        user granted ALL on that name (a grant may name a database before it exists)."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self._names.append(name)
        owner = user or self.create_user(f"u_{name}"[:32])
        self.server.root_execute(f"GRANT ALL PRIVILEGES ON {quote(name)}.* TO {owner.account}")
        return MariaDBDatabase(self.server, name, owner)

    def create_user(self, name: str | None = None, *grants: str) -> MariaDBUser:
        """A user with exactly `grants` ('SELECT, SHOW VIEW ON `db`.*', ...), dropped at
        teardown."""
        user = MariaDBUser(name or f"u_{uuid.uuid4().hex[:12]}")
        with contextlib.closing(self.server.root()) as conn, conn.cursor() as cur:
            account = user.account.replace("%", "%%")  # the driver formats with %
            cur.execute(f"CREATE USER {account} IDENTIFIED BY %s", (user.password,))
            self._users.append(user)
            for grant in grants:
                cur.execute(f"GRANT {grant} TO {user.account}")
        return user

    def cleanup(self) -> None:
        existing = self.server.databases()
        with contextlib.closing(self.server.root()) as conn, conn.cursor() as cur:
            for name in existing:
                if any(name == n or name.startswith(f"{n[:41]}__lifeboat_") for n in self._names):
                    cur.execute(f"DROP DATABASE IF EXISTS {quote(name)}")
            for user in self._users:
                cur.execute(f"DROP USER IF EXISTS {user.account}")


def quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def _start_server(base: Path, extra_args: Sequence[str] = ()) -> MariaDBServer:
    install_db = _binary("mariadb-install-db")
    mariadbd = _binary("mariadbd")
    missing = [
        n
        for n, path in (
            ("mariadbd", mariadbd),
            ("mariadb-install-db", install_db),
            ("mariadb-dump", _binary("mariadb-dump") or _binary("mysqldump")),
            ("mariadb", _binary("mariadb") or _binary("mysql")),
        )
        if path is None
    ]
    if missing or mariadbd is None or install_db is None:
        pytest.skip(
            f"MariaDB tests need {', '.join(missing)}: apt-get install -y mariadb-server "
            "mariadb-client"
        )
    datadir = base / "data"
    log = base / "mariadbd.log"
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    install = subprocess.run(
        [
            install_db,
            "--no-defaults",
            f"--datadir={datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *as_root,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if install.returncode != 0:
        pytest.fail(f"mariadb-install-db failed:\n{install.stdout}\n{install.stderr}")
    sock = base / "mysqld.sock"
    port = _free_port()
    process = subprocess.Popen(
        [
            mariadbd,
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={sock}",
            f"--port={port}",
            f"--bind-address={E2E_SETTINGS.bind_address}",
            f"--pid-file={base / 'mariadbd.pid'}",
            f"--log-error={log}",
            "--skip-name-resolve",
            "--event-scheduler=OFF",
            "--innodb-buffer-pool-size=64M",
            "--innodb-flush-log-at-trx-commit=0",
            "--innodb-doublewrite=0",
            "--max-allowed-packet=64M",
            *as_root,
            *extra_args,  # e.g. --ssl-cert (tests/support/tls_servers.py)
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = MariaDBServer("127.0.0.1", port, sock, datadir, log, process)
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"mariadbd exited with {process.returncode}:\n{server.log_tail()}")
        try:
            server.root().close()
            break
        except pymysql.MySQLError:
            if time.monotonic() > deadline:
                _stop(process)
                pytest.fail(f"mariadbd did not accept connections in time:\n{server.log_tail()}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.05)  # bounded poll that also notices an early exit
    return server


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()  # mariadbd shuts down cleanly on SIGTERM
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[MariaDBServer]:
    """A real mariadbd for the session (skipped with a clear message if it is not installed)."""
    base = Path(tempfile.mkdtemp(prefix="lbmdb-"))  # short: unix socket paths are limited
    try:
        server = _start_server(base)
        try:
            yield server
        finally:
            _stop(server.process)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mariadb_databases(mariadb_server: MariaDBServer) -> Iterator[MariaDBDatabases]:
    """Factory of fresh databases; all of them, and any restore leftovers, dropped afterwards."""
    factory = MariaDBDatabases(mariadb_server)
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture
def mariadb_database(mariadb_databases: MariaDBDatabases) -> MariaDBDatabase:
    """A fresh, empty, uniquely named utf8mb4 database, and its user with ALL on it alone."""
    return mariadb_databases.create()


# -- the sample schema ---------------------------------------------------------------------------

TRICKY_STRINGS = [
    "O'Brien",
    "it''s doubled",
    'say "hi"',
    "back\\slash",
    "ends with a backslash\\",
    "\\'",
    "paren ),( inside",
    "(1),(2);",
    "');\n(",
    "line1\nline2",
    "cr\r\ntab\t",
    "nul\x00byte",
    "ctrl-z \x1a",
    "unicodé ☃ — ünïcödé",
    "emoji 🚀🙂",
    "",
    "; DROP TABLE customers; --",
    "x\n-- Dumping data for table `customers`\nUNLOCK TABLES;\nINSERT INTO `orders` VALUES (9);",
    "`backtick` and ``two``",
    "%_ like",
    "0x41",
    "NULL",
    "DELIMITER ;;",
]
TRICKY_BINARY = [
    bytes(range(256)),
    b"\x00'\\\n\r()\x1a;,",
    b"",
    random.Random(7).randbytes(3000),
]
ODD_TABLE = "odd `name` (1),(2)"


def seed_sample_schema(db: MariaDBDatabase, *, bulk_rows: int = 3000) -> dict[str, int]:
    """Create the sample schema in `db`; return the row count of each table.

    Tables: `customers` (every string in TRICKY_STRINGS, NULLs), `orders` (foreign key to
    customers, a trigger), `attachments` (BLOB/BINARY/BIT, TRICKY_BINARY), `empty_things` (no
    rows), ODD_TABLE (a name with backquotes and parentheses) and `bulk_rows` (enough data for
    mariadb-dump to split it over several INSERT statements). Also a view on a view, a procedure
    whose body contains an INSERT line, a function and a disabled event.
    """
    statements = [
        "CREATE TABLE customers (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(200) NOT NULL,"
        " note TEXT NULL, created DATETIME(6) NOT NULL DEFAULT '2024-01-02 03:04:05.123456')",
        "CREATE TABLE orders (id INT PRIMARY KEY AUTO_INCREMENT, customer_id INT NOT NULL,"
        " amount DECIMAL(12,2) NOT NULL, status ENUM('new','paid','shipped') NOT NULL"
        " DEFAULT 'new', audit VARCHAR(60) NULL,"
        " CONSTRAINT orders_customer FOREIGN KEY (customer_id) REFERENCES customers (id))",
        "CREATE TABLE attachments (id INT PRIMARY KEY, body LONGBLOB NULL, digest BINARY(4) NULL,"
        " flags BIT(8) NULL, ratio DOUBLE NULL)",
        "CREATE TABLE empty_things (id INT PRIMARY KEY, label VARCHAR(10))",
        f"CREATE TABLE {quote(ODD_TABLE)} (id INT PRIMARY KEY, v VARCHAR(20))",
        "CREATE TABLE bulk_rows (id INT PRIMARY KEY, payload VARCHAR(1000) NOT NULL)",
    ]
    db.execute(*statements)
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:
        customers = [
            (s, None if i % 3 == 0 else f"note {i}: {s}") for i, s in enumerate(TRICKY_STRINGS)
        ]
        cur.executemany("INSERT INTO customers (name, note) VALUES (%s, %s)", customers)
        cur.executemany(
            "INSERT INTO orders (customer_id, amount, status) VALUES (%s, %s, %s)",
            [
                (1 + i % len(TRICKY_STRINGS), f"{i * 7.25:.2f}", ("new", "paid")[i % 2])
                for i in range(40)
            ],
        )
        cur.executemany(
            "INSERT INTO attachments (id, body, digest, flags, ratio) VALUES (%s, %s, %s, %s, %s)",
            [
                (i, body, body[:4].ljust(4, b"\x00"), i * 37 % 256, i / 3)
                for i, body in enumerate(TRICKY_BINARY)
            ]
            + [(len(TRICKY_BINARY), None, None, None, None)],
        )
        cur.execute(f"INSERT INTO {quote(ODD_TABLE)} VALUES (1, '(1),(2)'), (2, 'x''y')")
        cur.execute("SET SESSION max_recursive_iterations = %s", (bulk_rows + 1,))
        cur.execute(
            "INSERT INTO bulk_rows (id, payload) WITH RECURSIVE seq (n) AS"
            " (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %s)"
            " SELECT n, REPEAT(CONCAT('row ', n, ' (x),(y) ''q'' \\\\ '), 20) FROM seq",
            (bulk_rows,),
        )
    db.execute(
        "CREATE VIEW customer_totals AS SELECT c.id, c.name, COALESCE(SUM(o.amount), 0) AS total"
        " FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id, c.name",
        "CREATE VIEW big_customers AS SELECT id, name FROM customer_totals WHERE total > 100",
        "CREATE PROCEDURE add_order(IN cid INT)\nBEGIN\n"
        "INSERT INTO `orders` (customer_id, amount) VALUES (cid, 1.00);\nEND",
        "CREATE FUNCTION shout(s VARCHAR(100)) RETURNS VARCHAR(110) DETERMINISTIC"
        " RETURN CONCAT(UPPER(s), '!')",
        "CREATE TRIGGER orders_audit BEFORE INSERT ON orders FOR EACH ROW"
        " SET NEW.audit = CONCAT('by trigger, status ', NEW.status)",
        "CREATE EVENT nightly_cleanup ON SCHEDULE EVERY 1 DAY STARTS '2030-01-01 00:00:00'"
        " DISABLE DO DELETE FROM empty_things",
    )
    return {
        "customers": len(TRICKY_STRINGS),
        "orders": 40,
        "attachments": len(TRICKY_BINARY) + 1,
        "empty_things": 0,
        ODD_TABLE: 2,
        "bulk_rows": bulk_rows,
    }


def fingerprint(db: MariaDBDatabase) -> dict[str, Any]:
    """Everything a restore must reproduce: table definitions and rows, views, routines,
    triggers and events. Equal fingerprints mean an unchanged (or faithfully restored) database.

    Read as root (it sees every definition, whoever defined it). Tables with reserved names are a
    restore's staging, not the database's content: `leftovers()` reports them."""
    result: dict[str, Any] = {}
    with contextlib.closing(db.server.root(db.name)) as conn, conn.cursor() as cur:

        def rows(sql: str, args: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
            cur.execute(sql, args)
            return [tuple(r) for r in cur.fetchall()]

        for name, kind in rows(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            (db.name,),
        ):
            if name.startswith(RESERVED_PREFIX):
                continue
            if kind == "VIEW":
                result[f"view {name}"] = rows(f"SHOW CREATE VIEW {quote(name)}")[0][1]
                continue
            result[f"table {name}"] = rows(f"SHOW CREATE TABLE {quote(name)}")[0][1]
            data = rows(f"SELECT * FROM {quote(name)}")
            result[f"rows {name}"] = sorted(data, key=repr)
        for name, kind in rows(
            "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES"
            " WHERE ROUTINE_SCHEMA = %s",
            (db.name,),
        ):
            result[f"{kind.lower()} {name}"] = rows(f"SHOW CREATE {kind} {quote(name)}")[0][2]
        for name, table, statement in rows(
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, ACTION_STATEMENT"
            " FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
            (db.name,),
        ):
            if not table.startswith(RESERVED_PREFIX):
                result[f"trigger {name}"] = (table, statement)
        for (name,) in rows(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (db.name,)
        ):
            result[f"event {name}"] = rows(f"SHOW CREATE EVENT {quote(name)}")[0][3]
    return result
