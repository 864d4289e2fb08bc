"""TLS-enabled PostgreSQL and MariaDB servers, separate from the shared session servers (which
keep TLS off: they are the "server without TLS" of the cleartext-refusal tests).

- `tls_pki`: a throwaway CA, a server certificate for 127.0.0.1/localhost, an unrelated CA.
- `tls_postgres_server`: ssl = on; TCP logins only over TLS (`hostnossl ... reject`); members of
  the role `cert_login` must present a client certificate whose CN is their name (`cert`).
- `tls_mariadb_server`: --ssl-cert/--ssl-key/--ssl-ca; users may be created REQUIRE X509.
- `tls_s3_server`: moto's S3 over https, its certificate signed by the test CA.

The roles are what a managed database gives: a database owner without SUPERUSER (PostgreSQL),
a user with ALL on its own database only (MariaDB).
"""

from __future__ import annotations

import contextlib
import shutil
import ssl
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from psycopg import sql
from werkzeug.serving import make_server

from tests.support import mariadb as maria
from tests.support import postgres as pg
from tests.support.tls import Pki, make_pki

CERT_LOGIN_GROUP = "cert_login"


@pytest.fixture(scope="session")
def tls_pki() -> Iterator[Pki]:
    root = Path(tempfile.mkdtemp(prefix="lifeboat-pki-"))
    try:
        yield make_pki(root / "pki")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class TlsPostgres:
    server: pg.PostgresServer
    pki: Pki

    def database(self, *, cert_login: bool = False) -> pg.PgDatabase:
        """A new database owned by a new non-superuser login; `cert_login`: the login must
        present a client certificate (pg_hba `cert`)."""
        name = f"tls_{uuid.uuid4().hex[:12]}"
        role = pg.PgRole(server=self.server, name=f"{name}_owner", password="pw-" + name)
        with self.server.connect(sslmode="require") as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} NOSUPERUSER NOCREATEDB").format(
                    sql.Identifier(role.name), sql.Literal(role.password)
                )
            )
            if cert_login:
                conn.execute(
                    sql.SQL("GRANT {} TO {}").format(
                        sql.Identifier(CERT_LOGIN_GROUP), sql.Identifier(role.name)
                    )
                )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(role.name)
                )
            )
        return pg.PgDatabase(server=self.server, name=name, role=role)

    def require_client_certificate(self, role: pg.PgRole) -> None:
        """From now on `role` logs in with a client certificate only (pg_hba `cert`)."""
        with self.server.connect(sslmode="require") as conn:
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(
                    sql.Identifier(CERT_LOGIN_GROUP), sql.Identifier(role.name)
                )
            )


@pytest.fixture(scope="session")
def tls_postgres_server(tls_pki: Pki) -> Iterator[TlsPostgres]:
    files = Path(tempfile.mkdtemp(prefix="lifeboat-pgtls-"))
    for source, target in (
        (tls_pki.server.cert, "server.crt"),
        (tls_pki.server.key, "server.key"),
        (tls_pki.ca, "ca.crt"),
    ):
        shutil.copy(source, files / target)
    (files / "server.key").chmod(0o600)
    hba = files / "pg_hba.conf"
    hba.write_text(
        "local all all trust\n"
        f"hostssl all +{CERT_LOGIN_GROUP} 127.0.0.1/32 cert\n"
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        "hostnossl all all 0.0.0.0/0 reject\n"
    )
    shutil.chown(files, "postgres", "postgres")
    for path in files.iterdir():
        shutil.chown(path, "postgres", "postgres")
    config = (
        "ssl = on\n"
        f"ssl_cert_file = '{files / 'server.crt'}'\n"
        f"ssl_key_file = '{files / 'server.key'}'\n"
        f"ssl_ca_file = '{files / 'ca.crt'}'\n"
        f"hba_file = '{hba}'\n"
    )
    try:
        with pg.own_cluster(config) as server:
            with server.connect(sslmode="require") as conn:
                conn.execute(
                    sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(CERT_LOGIN_GROUP))
                )
            yield TlsPostgres(server, tls_pki)
    finally:
        shutil.rmtree(files, ignore_errors=True)


@dataclass(frozen=True)
class TlsMariaDB:
    server: maria.MariaDBServer
    databases: maria.MariaDBDatabases
    pki: Pki


@pytest.fixture(scope="session")
def tls_mariadb_server(tls_pki: Pki) -> Iterator[TlsMariaDB]:
    base = Path(tempfile.mkdtemp(prefix="lbtls-"))  # short: unix socket paths are limited
    try:
        server = maria._start_server(
            base,
            extra_args=(
                f"--ssl-cert={tls_pki.server.cert}",
                f"--ssl-key={tls_pki.server.key}",
                f"--ssl-ca={tls_pki.ca}",
            ),
        )
        databases = maria.MariaDBDatabases(server)
        try:
            yield TlsMariaDB(server, databases, tls_pki)
        finally:
            with contextlib.suppress(Exception):
                databases.cleanup()
            maria._stop(server.process)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def tls_s3_server(s3_server: str, tls_pki: Pki) -> Iterator[str]:
    """moto's S3 over https, with a certificate from `tls_pki`'s CA; yields the endpoint URL.

    moto's state is per process, so a bucket made through `s3_server` (http) is the same bucket
    here: tests create it with `s3_bucket` and reach it over https."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_pki.server.cert, tls_pki.server.key)
    server = make_server(
        "127.0.0.1",
        0,
        DomainDispatcherApplication(create_backend_app),
        threaded=True,
        request_handler=MotoRequestHandler,
        ssl_context=context,
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
