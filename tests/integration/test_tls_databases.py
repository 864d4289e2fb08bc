"""TLS to the databases, against real PostgreSQL and MariaDB servers with TLS turned on.

A backup and a restore over verify-full (and verify-ca), a CA that did not sign the server's
certificate, client-certificate logins (pg_hba `cert`, MariaDB `REQUIRE X509`), and the refusal
that matters most: when TLS is asked for and the server offers none, the worker stops before it
logs in. The session servers (TLS off) play that server, behind a proxy that records every byte
the client sends: the login (its user name, its password or the password's hash) never appears.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lifeboat.contract import ExitCode, parse_error_line
from tests.support import mariadb as maria
from tests.support import postgres as pg
from tests.support.databases import lifeboat
from tests.support.tls_servers import TlsMariaDB, TlsPostgres


def _error(stderr: str) -> tuple[str | None, str]:
    parsed = parse_error_line(stderr)
    assert parsed is not None, stderr
    return parsed


def _query(**params: str | Path) -> str:
    return "?" + "&".join(f"{k}={v}" for k, v in params.items())


class RecordingProxy:
    """127.0.0.1:port forwarding to a server, keeping every byte the client sent."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.sent = bytearray()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink, record in ((client, upstream, True), (upstream, client, False)):
                thread = threading.Thread(
                    target=self._pump, args=(source, sink, record), daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if record:
                    self.sent += data
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()
        for thread in self._threads:
            thread.join(timeout=5)


@contextlib.contextmanager
def recording_proxy(host: str, port: int) -> Iterator[RecordingProxy]:
    proxy = RecordingProxy((host, port))
    try:
        yield proxy
    finally:
        proxy.close()


# -- PostgreSQL ---------------------------------------------------------------------------------


def test_postgres_round_trip_over_verified_tls(
    tls_postgres_server: TlsPostgres, tmp_path: Path
) -> None:
    db = tls_postgres_server.database()
    pg.seed_sample_schema(db, large_object=False)
    original = db.fingerprint()
    backups = f"file://{tmp_path}/backups/"
    url = db.url + _query(sslmode="verify-full", sslrootcert=tls_postgres_server.pki.ca)

    done = lifeboat("backup", url, backups, "--progress", "none", env=db.env)
    assert done.returncode == 0, done.stderr

    db.execute("DELETE FROM shop.orders WHERE id % 2 = 0")
    assert db.fingerprint() != original
    # The Job's way: the TLS settings in the environment, not in the URL.
    tls_env = {
        "LIFEBOAT_DB_TLS_MODE": "verify-ca",
        "LIFEBOAT_DB_TLS_CA_FILE": str(tls_postgres_server.pki.ca),
    }
    done = lifeboat("restore", backups, db.url, "--progress", "none", env={**db.env, **tls_env})
    assert done.returncode == 0, done.stderr
    assert _without_schema_owners(db.fingerprint()) == _without_schema_owners(original)


def _without_schema_owners(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """On this server the owner may not act as pg_database_owner, so a recreated public schema
    belongs to the owner itself (see postgres/restore.py): not a TLS matter."""
    return {k: v for k, v in fingerprint.items() if k != "schemas"}


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_postgres_refuses_a_server_certificate_from_another_ca(
    tls_postgres_server: TlsPostgres, tmp_path: Path, mode: str
) -> None:
    db = tls_postgres_server.database()
    url = db.url + _query(sslmode=mode, sslrootcert=tls_postgres_server.pki.other_ca)

    done = lifeboat("backup", url, f"file://{tmp_path}/b/", "--progress", "none", env=db.env)

    assert done.returncode == ExitCode.REFUSED, done.stderr
    reason, message = _error(done.stderr)
    assert reason == "TlsVerificationFailed"
    assert "certificate" in message
    assert "password" in message
    assert db.password not in done.stderr


def test_postgres_client_certificate_login_needs_the_certificate(
    tls_postgres_server: TlsPostgres, tmp_path: Path
) -> None:
    pki = tls_postgres_server.pki
    db = tls_postgres_server.database(cert_login=True)
    client = pki.client(db.user)
    verified = _query(sslmode="verify-full", sslrootcert=pki.ca)

    with_cert = db.url + verified + f"&sslcert={client.cert}&sslkey={client.key}"
    done = lifeboat("backup", with_cert, f"file://{tmp_path}/ok/", "--progress", "none", env={})
    assert done.returncode == 0, done.stderr

    done = lifeboat(
        "backup", db.url + verified, f"file://{tmp_path}/no/", "--progress", "none", env=db.env
    )
    assert done.returncode == ExitCode.REFUSED, done.stderr
    reason, message = _error(done.stderr)
    assert reason == "AuthenticationFailed"
    assert "client certificate" in message


def test_postgres_never_logs_in_to_a_server_without_tls(
    postgres_server: pg.PostgresServer, pg_database: pg.PgDatabase, tmp_path: Path
) -> None:
    with recording_proxy(postgres_server.host, postgres_server.port) as proxy:
        url = f"postgresql://{pg_database.user}@127.0.0.1:{proxy.port}/{pg_database.name}"
        done = lifeboat(
            "backup",
            url + "?sslmode=require",
            f"file://{tmp_path}/b/",
            "--progress",
            "none",
            env=pg_database.env,
        )

    assert done.returncode == ExitCode.REFUSED, done.stderr
    reason, message = _error(done.stderr)
    assert reason == "TlsUnavailable"
    assert "does not offer TLS" in message
    assert "nothing was sent" in message
    assert proxy.sent, "the client never connected"
    # Only SSLRequest packets (8 bytes each) went out: no startup packet, no user, no password.
    assert len(proxy.sent) % 8 == 0
    assert pg_database.user.encode() not in proxy.sent
    assert pg_database.password.encode() not in proxy.sent


# -- MariaDB ------------------------------------------------------------------------------------


def _mariadb_db(tls_mariadb_server: TlsMariaDB) -> maria.MariaDBDatabase:
    return tls_mariadb_server.databases.create("tls")


def test_mariadb_round_trip_over_verified_tls(
    tls_mariadb_server: TlsMariaDB, tmp_path: Path
) -> None:
    db = _mariadb_db(tls_mariadb_server)
    maria.seed_sample_schema(db, bulk_rows=200)
    original = maria.fingerprint(db)
    backups = f"file://{tmp_path}/backups/"
    url = db.url + _query(**{"ssl-mode": "VERIFY_IDENTITY", "ssl-ca": tls_mariadb_server.pki.ca})

    done = lifeboat("backup", url, backups, "--progress", "none", env=db.env)
    assert done.returncode == 0, done.stderr

    db.execute("DELETE FROM orders WHERE id % 2 = 0")
    assert maria.fingerprint(db) != original
    tls_env = {
        "LIFEBOAT_DB_TLS_MODE": "verify-ca",
        "LIFEBOAT_DB_TLS_CA_FILE": str(tls_mariadb_server.pki.ca),
    }
    done = lifeboat("restore", backups, db.url, "--progress", "none", env={**db.env, **tls_env})
    assert done.returncode == 0, done.stderr
    assert maria.fingerprint(db) == original


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_mariadb_refuses_a_server_certificate_from_another_ca(
    tls_mariadb_server: TlsMariaDB, tmp_path: Path, mode: str
) -> None:
    db = _mariadb_db(tls_mariadb_server)
    url = db.url + _query(sslmode=mode, sslrootcert=tls_mariadb_server.pki.other_ca)

    done = lifeboat("backup", url, f"file://{tmp_path}/b/", "--progress", "none", env=db.env)

    assert done.returncode == ExitCode.REFUSED, done.stderr
    reason, message = _error(done.stderr)
    assert reason == "TlsVerificationFailed"
    assert "certificate" in message


def test_mariadb_x509_user_needs_the_client_certificate(
    tls_mariadb_server: TlsMariaDB, tmp_path: Path
) -> None:
    pki = tls_mariadb_server.pki
    db = tls_mariadb_server.databases.create("x509")
    maria.seed_sample_schema(db, bulk_rows=50)
    user = db.user
    tls_mariadb_server.server.root_execute(f"ALTER USER {user.account} REQUIRE X509")
    client = pki.client(user.name)
    verified = db.url + _query(**{"ssl-mode": "verify-full", "ssl-ca": pki.ca})

    with_cert = verified + f"&ssl-cert={client.cert}&ssl-key={client.key}"
    done = lifeboat("backup", with_cert, f"file://{tmp_path}/ok/", "--progress", "none", env=db.env)
    assert done.returncode == 0, done.stderr
    done = lifeboat(
        "restore", f"file://{tmp_path}/ok/", with_cert, "--progress", "none", env=db.env
    )
    assert done.returncode == 0, done.stderr

    done = lifeboat("backup", verified, f"file://{tmp_path}/no/", "--progress", "none", env=db.env)
    assert done.returncode == ExitCode.REFUSED, done.stderr
    reason, _ = _error(done.stderr)
    assert reason == "AuthenticationFailed"


def test_mariadb_never_logs_in_to_a_server_without_tls(
    mariadb_server: maria.MariaDBServer, mariadb_database: maria.MariaDBDatabase, tmp_path: Path
) -> None:
    db = mariadb_database
    with recording_proxy(mariadb_server.host, mariadb_server.port) as proxy:
        url = f"mariadb://{db.user.name}@127.0.0.1:{proxy.port}/{db.name}?ssl-mode=REQUIRED"
        done = lifeboat("backup", url, f"file://{tmp_path}/b/", "--progress", "none", env=db.env)

    assert done.returncode == ExitCode.REFUSED, done.stderr
    reason, message = _error(done.stderr)
    assert reason == "TlsUnavailable"
    assert "does not offer TLS" in message
    assert "nothing was sent" in message
    # The server spoke first (its greeting) and the client hung up: no login packet at all.
    assert db.user.name.encode() not in proxy.sent
    assert db.password.encode() not in proxy.sent
