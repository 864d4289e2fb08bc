"""PostgreSQL for tests: a throwaway cluster per session, and a fresh database per test.

The cluster is real (initdb + pg_ctl from the distribution's PostgreSQL), listens on 127.0.0.1 on
a free port and asks for a SCRAM password over TCP, exactly as a server in a cluster would.

Tests log in as what managed databases hand out: every database is owned by a role of its own
with LOGIN and a password but without SUPERUSER, CREATEDB or CREATEROLE (`CREATE ROLE app LOGIN;
CREATE DATABASE shop OWNER app`), and `PgDatabase.url`/`.env`/`.password` are that owner's. Roles
with exact grants come from `pg_role_factory` (privilege tests). `lifeboat`, a superuser with a
password, sets up and inspects (`server.connect()`, `PgDatabase.admin()`); the bootstrap
superuser `postgres` is reachable only through the Unix socket inside the cluster's own directory
and is used only to create `lifeboat`. Databases and roles made for a test are dropped after it.

When run as root (CI, the dev machines) the server binaries run as the `postgres` OS user, since
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from lifeboat.worker.database_url import DatabaseURL, parse_database_url
from tests.support.e2e import E2E_SETTINGS

ROLE = "lifeboat"
_SYSTEM_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'"


def _find_bin_dir() -> Path | None:
    """LIFEBOAT_PG_BINDIR, else the newest /usr/lib/postgresql/N/bin, else initdb on PATH."""
    configured = os.environ.get("LIFEBOAT_PG_BINDIR")
    if configured:
        return Path(configured)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway cluster."""

    host: str
    port: int
    password: str
    socket_dir: Path
    data_dir: Path
    bin_dir: Path
    user: str = ROLE

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        """A password login over TCP as `lifeboat`, like the worker's."""
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=dbname,
            connect_timeout=10,
            autocommit=True,
            **kwargs,
        )

    def database_exists(self, name: str) -> bool:
        with self.connect() as conn:
            row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            return row is not None

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    @property
    def superuser(self) -> PgRole:
        return PgRole(server=self, name=self.user, password=self.password)


@dataclass(frozen=True)
class PgRole:
    """A login role on the test server. Its password travels in `env`, never in a URL."""

    server: PostgresServer
    name: str
    password: str = field(repr=False)

    @property
    def env(self) -> dict[str, str]:
        return {"LIFEBOAT_DB_PASSWORD": self.password}


@dataclass
class PgDatabase:
    """One database on the test server, and what a test needs to reach and inspect it.

    `url`, `env`, `password`, `connect()` and `execute()` log in as `role` (the database's
    owner unless `as_role` said otherwise); `admin()`, `row_counts()` and `fingerprint()` look
    as the superuser, so they see everything whoever owns it."""

    server: PostgresServer
    name: str
    role: PgRole

    @property
    def user(self) -> str:
        return self.role.name

    @property
    def env(self) -> dict[str, str]:
        return self.role.env

    @property
    def url(self) -> str:
        """DATABASE_URL as a user writes it: no password (that travels in `env`)."""
        return f"postgresql://{self.role.name}@{self.server.host}:{self.server.port}/{self.name}"

    @property
    def password(self) -> str:
        return self.role.password

    def as_role(self, role: PgRole) -> PgDatabase:
        """The same database, reached as another login."""
        return PgDatabase(server=self.server, name=self.name, role=role)

    def database_url(self, **env: str) -> DatabaseURL:
        """The parsed URL the worker would build from `url` and `env` (overrides in `env`)."""
        return parse_database_url(self.url, {**self.env, **env})

    def exists(self) -> bool:
        return self.server.database_exists(self.name)

    def owner(self) -> str:
        with self.server.connect() as conn:
            row = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (self.name,)
            ).fetchone()
        assert row is not None, f"database {self.name} does not exist"
        return str(row[0])

    def connect(self) -> psycopg.Connection[Any]:
        """A session as `role`, over TCP with its password, like the worker's."""
        return psycopg.connect(
            host=self.server.host,
            port=self.server.port,
            user=self.role.name,
            password=self.role.password,
            dbname=self.name,
            connect_timeout=10,
            autocommit=True,
        )

    def admin(self) -> psycopg.Connection[Any]:
        """A superuser session on this database, for set-up and inspection."""
        return self.server.connect(self.name)

    def execute(self, statement: str | sql.Composable, params: Sequence[Any] | None = None) -> None:
        """Run one statement (or several, without params) in autocommit mode."""
        with self.connect() as conn:
            conn.execute(statement, params)  # type: ignore[arg-type]

    def fetch(
        self, query: str | sql.Composable, params: Sequence[Any] | None = None
    ) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(query, params).fetchall()  # type: ignore[arg-type]

    def scalar(self, query: str | sql.Composable, params: Sequence[Any] | None = None) -> Any:
        rows = self.fetch(query, params)
        return rows[0][0] if rows else None

    def row_counts(self) -> dict[str, int]:
        """Exact rows per user table, named schema.table like the manifest."""
        with self.admin() as conn:
            return {
                name: conn.execute(
                    sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
                        sql.Identifier(schema), sql.Identifier(table)
                    )
                ).fetchone()[0]  # type: ignore[index]
                for schema, table, name in _user_tables(conn)
            }

    def fingerprint(self) -> dict[str, Any]:
        """Everything a restore could change, in comparable form: objects, definitions, rows.

        Two fingerprints are equal when the databases hold the same schemas, tables (with their
        rows, in a canonical order), views, functions, sequences (with their positions) and
        large objects.
        """
        with self.admin() as conn:
            schemas = conn.execute(
                f"SELECT n.nspname, pg_get_userbyid(n.nspowner), obj_description(n.oid) "
                f"FROM pg_namespace n WHERE {_SYSTEM_SCHEMAS} ORDER BY 1"
            ).fetchall()
            relations = conn.execute(
                f"SELECT n.nspname, c.relname, c.relkind::text, "
                f"CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END "
                f"FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                f"WHERE {_SYSTEM_SCHEMAS} AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
                f"ORDER BY 1, 2"
            ).fetchall()
            columns = conn.execute(
                f"SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), "
                f"a.attnotnull FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                f"JOIN pg_namespace n ON n.oid = c.relnamespace "
                f"WHERE {_SYSTEM_SCHEMAS} AND c.relkind IN ('r', 'p', 'v') AND a.attnum > 0 "
                f"AND NOT a.attisdropped ORDER BY 1, 2, a.attnum"
            ).fetchall()
            functions = conn.execute(
                f"SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), "
                f"md5(pg_get_functiondef(p.oid)) FROM pg_proc p "
                f"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {_SYSTEM_SCHEMAS} "
                f"AND p.prokind IN ('f', 'p') ORDER BY 1, 2, 3"
            ).fetchall()
            indexes = conn.execute(
                f"SELECT n.nspname, c.relname, pg_get_indexdef(c.oid) FROM pg_class c "
                f"JOIN pg_namespace n ON n.oid = c.relnamespace "
                f"WHERE {_SYSTEM_SCHEMAS} AND c.relkind = 'i' ORDER BY 1, 2"
            ).fetchall()
            rows: dict[str, list[str]] = {}
            for schema, table, name in _user_tables(conn):
                rows[name] = [
                    r[0]
                    for r in conn.execute(
                        sql.SQL("SELECT t::text FROM ONLY {}.{} AS t ORDER BY 1").format(
                            sql.Identifier(schema), sql.Identifier(table)
                        )
                    ).fetchall()
                ]
            sequences = {}
            for schema, name, kind, _ in relations:
                if kind == "S":
                    sequences[f"{schema}.{name}"] = conn.execute(
                        sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
                            sql.Identifier(schema), sql.Identifier(name)
                        )
                    ).fetchone()
            large_objects = conn.execute(
                "SELECT oid::bigint, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1"
            ).fetchall()
        return {
            "schemas": schemas,
            "relations": relations,
            "columns": columns,
            "functions": functions,
            "indexes": indexes,
            "rows": rows,
            "sequences": sequences,
            "large_objects": large_objects,
        }


def _user_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str]]:
    rows = conn.execute(
        f"SELECT n.nspname, c.relname FROM pg_class c "
        f"JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"WHERE c.relkind = 'r' AND {_SYSTEM_SCHEMAS} ORDER BY 1, 2"
    ).fetchall()
    return [(s, t, f"{s}.{t}") for s, t in rows]


# Text that breaks naive dump formats: tabs, newlines, backslashes, quotes, non-ASCII, NULLs.
AWKWARD_TEXTS: list[str | None] = [
    "plain",
    "tab\there",
    "line one\nline two\r\nline three",
    "back\\slash \\N and \\.",
    'quote \' and "double"',
    "unicode: żółć, 日本語, emoji 🛟",
    "",
    None,
]

SAMPLE_ROW_COUNTS = {
    "public.events": 3,
    "shop.customers": len(AWKWARD_TEXTS),
    "shop.empty_table": 0,
    "shop.order lines": 5,
    "shop.orders": 40,
}


def seed_sample_schema(db: PgDatabase, *, large_object: bool = True) -> dict[str, int]:
    """A small but awkward database: two schemas, a mixed-case table name with a space, text
    with tabs/newlines/unicode/NULLs, bytea, jsonb, arrays, a foreign key, a view, a function,
    a sequence with a position, an empty table and (optionally) a large object.

    Returns the exact row count per table, named as the manifest names them.
    """
    with db.connect() as conn, conn.transaction():
        conn.execute(
            """
            CREATE SCHEMA shop;
            CREATE TABLE shop.customers (
                id serial PRIMARY KEY,
                name text NOT NULL,
                note text,
                created_at timestamptz NOT NULL DEFAULT '2024-01-02 03:04:05+00'
            );
            CREATE TABLE shop.orders (
                id bigserial PRIMARY KEY,
                customer_id int NOT NULL REFERENCES shop.customers (id),
                amount numeric(12, 2) NOT NULL CHECK (amount >= 0),
                tags text[],
                data jsonb
            );
            CREATE TABLE shop."order lines" (
                order_id bigint REFERENCES shop.orders (id),
                "Line No" int,
                sku text,
                PRIMARY KEY (order_id, "Line No")
            );
            CREATE TABLE shop.empty_table (id int);
            CREATE TABLE public.events (id int PRIMARY KEY, payload bytea, at date);
            CREATE INDEX orders_customer ON shop.orders (customer_id);
            CREATE SEQUENCE shop.invoice_numbers START 1000;
            SELECT setval('shop.invoice_numbers', 1041);
            CREATE VIEW shop.customer_totals AS
                SELECT c.id, c.name, coalesce(sum(o.amount), 0) AS total
                FROM shop.customers c LEFT JOIN shop.orders o ON o.customer_id = c.id
                GROUP BY c.id, c.name;
            CREATE FUNCTION shop.order_total(customer int) RETURNS numeric
                LANGUAGE sql STABLE
                AS $$ SELECT coalesce(sum(amount), 0) FROM shop.orders WHERE customer_id = $1 $$;
            COMMENT ON TABLE shop.orders IS 'orders, one row per checkout';
            """
        )
        for i, text in enumerate(AWKWARD_TEXTS, start=1):
            conn.execute(
                "INSERT INTO shop.customers (name, note) VALUES (%s, %s)", (f"customer {i}", text)
            )
        conn.execute(
            "INSERT INTO shop.orders (customer_id, amount, tags, data) "
            "SELECT 1 + g %% %s, g * 1.25, ARRAY['t' || g, NULL, 'a,b'], "
            "jsonb_build_object('n', g, 'text', E'x\\ty\\nz') FROM generate_series(1, 40) g",
            (len(AWKWARD_TEXTS),),
        )
        conn.execute(
            "INSERT INTO shop.\"order lines\" SELECT 1, g, 'sku-' || g FROM generate_series(1, 5) g"
        )
        conn.execute(
            "INSERT INTO public.events VALUES (1, '\\x00ff10'::bytea, '2024-02-29'), "
            "(2, NULL, NULL), (3, convert_to('ünïcode', 'UTF8'), '1999-12-31')"
        )
        if large_object:
            conn.execute("SELECT lo_from_bytea(0, '\\x0001020304ff'::bytea)")
    return dict(SAMPLE_ROW_COUNTS)


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: drop to the `postgres` OS user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


def _start_cluster(bin_dir: Path, extra_config: str = "") -> tuple[PostgresServer, Path]:
    root = Path(tempfile.mkdtemp(prefix="lifeboat-pg-"))
    data_dir, socket_dir = root / "data", root / "sock"
    socket_dir.mkdir()
    password = "pw-" + secrets.token_urlsafe(12)
    pwfile = root / "bootstrap-password"
    pwfile.write_text(secrets.token_urlsafe(12))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(socket_dir, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = _free_port()
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# lifeboat test server\n"
            f"port = {port}\n"
            f"listen_addresses = '{E2E_SETTINGS.bind_address}'\n"
            f"unix_socket_directories = '{socket_dir}'\n"
            "password_encryption = 'scram-sha-256'\n"
            "max_connections = 60\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "log_min_messages = warning\n"
        )
        conf.write(extra_config)  # e.g. ssl = on (tests/support/tls_servers.py)
    if E2E_SETTINGS.enabled:  # a real cluster's Pods connect from outside the loopback
        with (data_dir / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 0.0.0.0/0 scram-sha-256\n")
    log = root / "server.log"
    started = subprocess.run(
        _as_postgres(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data_dir),
                "-l",
                str(log),
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    if started.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{tail}")
    with psycopg.connect(
        host=str(socket_dir), port=port, user="postgres", dbname="postgres", autocommit=True
    ) as admin:
        admin.execute(
            sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
                sql.Identifier(ROLE), sql.Literal(password)
            )
        )
    server = PostgresServer(
        host="127.0.0.1",
        port=port,
        password=password,
        socket_dir=socket_dir,
        data_dir=data_dir,
        bin_dir=bin_dir,
    )
    return server, root


@contextlib.contextmanager
def own_cluster(extra_config: str = "") -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster (initdb, started): stopped and deleted at the end.

    Skips the test when the server binaries or the client tools are missing."""
    bin_dir = _find_bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists() or not (bin_dir / "pg_ctl").exists():
        pytest.skip(
            "PostgreSQL server binaries not found (apt-get install postgresql, or set "
            "LIFEBOAT_PG_BINDIR to the directory holding initdb and pg_ctl)"
        )
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore/psql are not on PATH (apt-get install postgresql-client)")
    server, root = _start_cluster(bin_dir, extra_config)
    try:
        yield server
    finally:
        subprocess.run(
            _as_postgres(
                [str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "stop"]
            ),
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster for the whole session; stopped and deleted at the end."""
    with own_cluster() as server:
        yield server


PgRoleFactory = Callable[..., PgRole]
PgDatabaseFactory = Callable[..., PgDatabase]

# Role attributes a test may ask for; SUPERUSER and CREATEROLE are never handed out.
_ROLE_ATTRIBUTES = {"CREATEDB", "BYPASSRLS", "NOINHERIT"}


@pytest.fixture
def pg_role_factory(postgres_server: PostgresServer) -> Iterator[PgRoleFactory]:
    """Makes login roles with exactly the grants a test names: `make_role("reader",
    grants=["pg_read_all_data"], database=db)` runs `GRANT pg_read_all_data TO reader_1a2b...`
    as the superuser in `db` (grants on objects need their database). No SUPERUSER, CREATEDB or
    CREATEROLE unless `attributes` asks (CREATEDB, BYPASSRLS). Dropped when the test ends."""
    roles: list[str] = []

    def make_role(
        prefix: str = "role",
        *,
        grants: Sequence[str] = (),
        attributes: Sequence[str] = (),
        database: PgDatabase | None = None,
        name: str | None = None,
    ) -> PgRole:
        unknown = set(attributes) - _ROLE_ATTRIBUTES
        assert not unknown, f"role attributes {unknown} are not for tests"
        role = PgRole(
            server=postgres_server,
            name=name or f"{prefix}_{uuid.uuid4().hex[:8]}",
            password="pw-" + secrets.token_urlsafe(12),
        )
        with postgres_server.connect() as conn:
            conn.execute(
                sql.SQL(
                    "CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB NOCREATEROLE "
                    + " ".join(attributes)
                ).format(sql.Identifier(role.name), sql.Literal(role.password))
            )
        roles.append(role.name)
        if grants:
            with database.admin() if database else postgres_server.connect() as conn:
                for grant in grants:
                    conn.execute(
                        sql.SQL("GRANT " + grant + " TO {}").format(sql.Identifier(role.name))
                    )
        return role

    yield make_role
    with postgres_server.connect() as conn:
        for name in reversed(roles):
            with contextlib.suppress(psycopg.Error):
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture
def pg_database_factory(
    postgres_server: PostgresServer, pg_role_factory: PgRoleFactory
) -> Iterator[PgDatabaseFactory]:
    """Makes uniquely named databases, each owned by a login role of its own without SUPERUSER,
    CREATEDB or CREATEROLE, as managed databases are (`owner=` gives an existing role instead).

    `create=False` names a database without creating it (restore-creates-it tests); its role
    then needs `createdb=True` (ALTER ROLE ... CREATEDB, also for an `owner=`) for the restore
    to create it, which those tests say.
    Every database made or named here is dropped when the test ends, then its role.
    """
    names: list[str] = []

    def make(
        *,
        create: bool = True,
        prefix: str = "t",
        createdb: bool = False,
        owner: PgRole | None = None,
    ) -> PgDatabase:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        names.append(name)
        role = owner or pg_role_factory(name=f"{name}_owner")
        if createdb:
            with postgres_server.connect() as conn:
                conn.execute(sql.SQL("ALTER ROLE {} CREATEDB").format(sql.Identifier(role.name)))
        if create:
            with postgres_server.connect() as conn:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(role.name)
                    )
                )
        return PgDatabase(server=postgres_server, name=name, role=role)

    yield make
    for name in names:
        with contextlib.suppress(psycopg.Error):
            postgres_server.drop_database(name)


@pytest.fixture
def pg_database(pg_database_factory: PgDatabaseFactory) -> PgDatabase:
    """A fresh, empty database for one test, owned by its own non-superuser login."""
    return pg_database_factory()
