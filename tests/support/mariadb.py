"""MariaDB for tests: a throwaway mariadbd per session, a fresh database per test, a sample schema.

The server is a real `mariadbd` from the Debian packages, started from an empty data directory on
a free port of 127.0.0.1 with grants enforced (tests need wrong passwords to be refused). Tests
reach it over TCP as the user `lifeboat`, whose password travels in the environment only: the
URLs handed out never contain it. The password is deliberately full of quotes, backslashes and
shell characters, so any quoting bug shows up as an authentication failure.

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

USER = "lifeboat"
PASSWORD = "lb p@ss'w\"rd\\ #;$(x) é"
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

    def connect(self, database: str | None = None) -> pymysql.connections.Connection[Any]:
        """A connection as the test user over TCP, as the engine connects."""
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=USER,
            password=PASSWORD.encode(),  # as the engine and the tools send it: UTF-8
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


@dataclass
class MariaDBDatabase:
    """One database on the test server, and what a worker needs to reach it."""

    server: MariaDBServer
    name: str
    password: str = field(default=PASSWORD, repr=False)

    @property
    def url(self) -> str:
        """DATABASE_URL without the password: mariadb://lifeboat@127.0.0.1:PORT/name."""
        return self.url_for("mariadb")

    def url_for(self, scheme: str) -> str:
        return f"{scheme}://{USER}@{self.server.host}:{self.server.port}/{self.name}"

    @property
    def env(self) -> dict[str, str]:
        return {"LIFEBOAT_DB_PASSWORD": self.password}

    def connect(self) -> pymysql.connections.Connection[Any]:
        return self.server.connect(self.name)

    def execute(self, *statements: str, args: Sequence[Any] | None = None) -> None:
        """Run statements in order (one statement each; routines need no DELIMITER here)."""
        with contextlib.closing(self.connect()) as conn, conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement, args)

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
        """Shadow or parking databases a restore of this database left behind."""
        prefix = f"{self.name[:41]}__lifeboat_"
        return [d for d in self.server.databases() if d.startswith(prefix)]

    def row_counts(self) -> dict[str, int]:
        tables = self.fetchall(
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
            (self.name,),
        )
        return {
            str(t): int(self.scalar(f"SELECT COUNT(*) FROM {quote(str(t))}")) for (t,) in tables
        }


class MariaDBDatabases:
    """Creates uniquely named databases and drops them (and restore leftovers) afterwards."""

    def __init__(self, server: MariaDBServer) -> None:
        self.server = server
        self._names: list[str] = []

    def create(self, prefix: str = "t") -> MariaDBDatabase:
        db = self.reserve(prefix)
        with contextlib.closing(self.server.root()) as conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {quote(db.name)} CHARACTER SET utf8mb4")
        return db

    def reserve(self, prefix: str = "t") -> MariaDBDatabase:
        """A unique name that does not exist yet (restore-into-a-missing-database tests)."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self._names.append(name)
        return MariaDBDatabase(self.server, name)

    def cleanup(self) -> None:
        existing = self.server.databases()
        with contextlib.closing(self.server.root()) as conn, conn.cursor() as cur:
            for name in existing:
                if any(name == n or name.startswith(f"{n[:41]}__lifeboat_") for n in self._names):
                    cur.execute(f"DROP DATABASE IF EXISTS {quote(name)}")


def quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def _start_server(base: Path) -> MariaDBServer:
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
    with contextlib.closing(server.root()) as conn, conn.cursor() as cur:
        for host in ("%", "127.0.0.1"):
            pattern = host.replace("%", "%%")  # the driver formats with %
            cur.execute(f"CREATE USER '{USER}'@'{pattern}' IDENTIFIED BY %s", (PASSWORD,))
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'{host}' WITH GRANT OPTION")
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
    """A fresh, empty, uniquely named utf8mb4 database."""
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
    """
    result: dict[str, Any] = {}
    with contextlib.closing(db.connect()) as conn, conn.cursor() as cur:

        def rows(sql: str, args: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
            cur.execute(sql, args)
            return [tuple(r) for r in cur.fetchall()]

        for name, kind in rows(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES"
            " WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            (db.name,),
        ):
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
            result[f"trigger {name}"] = (table, statement)
        for (name,) in rows(
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (db.name,)
        ):
            result[f"event {name}"] = rows(f"SHOW CREATE EVENT {quote(name)}")[0][3]
    return result
