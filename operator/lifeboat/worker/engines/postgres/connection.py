"""Reaching PostgreSQL: libpq settings without the password, sessions, one clear line for every
way a login fails, and who the login is once in (`Login`, the roles it may act as).

The password travels only as psycopg's `password=` argument and as PGPASSWORD in the tools'
environment; the conninfo string (which the tools get in argv) never holds it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.engines.postgres import catalog
from lifeboat.worker.engines.postgres.catalog import quote_ident
from lifeboat.worker.errors import (
    AuthenticationFailed,
    DatabaseError,
    DatabaseNotFound,
    DatabaseUnreachable,
    InsufficientPrivilege,
    TlsUnavailable,
    TlsVerificationFailed,
    UsageError,
)

CONNECT_TIMEOUT_SECONDS = 10
_CERTIFICATE_PROBLEMS = re.compile(
    r"certificate verify failed|does not match host name|root certificate file"
    r"|could not read root certificate"
)
# Where to go when the target database does not exist (yet): to create it, or to check that it
# can be created.
MAINTENANCE_DATABASES = ("postgres", "template1")


class Connector:
    """Connections to one PostgreSQL database (or, for its creation, the server's maintenance
    database), as the login of a `DatabaseURL`."""

    def __init__(self, url: DatabaseURL) -> None:
        if any(key.lower() in ("password", "passfile") for key in url.options):
            raise UsageError(
                "DATABASE_URL: a password in the URL's options would leak through argv and logs; "
                "set LIFEBOAT_DB_PASSWORD (or LIFEBOAT_DB_PASSWORD_FILE) instead"
            )
        self.url = url

    @property
    def where(self) -> str:
        return f"{self.url.host or 'localhost'}:{self.url.port or 5432}"

    @property
    def user(self) -> str:
        return self.url.user or "(default)"

    def conninfo(self, database: str | None = None, application: str = "lifeboat") -> str:
        """libpq connection settings for psycopg and the tools: never the password."""
        params: dict[str, Any] = {
            "host": self.url.host,
            "port": self.url.port,
            "user": self.url.user,
            "dbname": database or self.url.database,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": application,
        }
        params.update(self.url.options)
        params.update(self.tls_params())
        return make_conninfo("", **{k: v for k, v in params.items() if v is not None})

    def tls_params(self) -> dict[str, str]:
        """libpq's sslmode, sslrootcert, sslcert, sslkey: paths, never a key's content. libpq
        with sslmode require or stricter refuses before authentication when the server does not
        offer TLS, so the password never goes out unencrypted."""
        tls = self.url.tls
        if tls.mode is None:
            return {}
        params = {"sslmode": tls.mode}
        for name, path in (
            ("sslrootcert", tls.ca_file),
            ("sslcert", tls.cert_file),
            ("sslkey", tls.key_file),
        ):
            if path is not None:
                params[name] = str(path)
        return params

    def tool_env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.url.password} if self.url.password else {}

    def secrets(self) -> list[str]:
        return [self.url.password] if self.url.password else []

    def redact(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text

    def connect(self, database: str | None = None) -> psycopg.Connection[Any]:
        """An autocommit session, with connection failures turned into the error types."""
        try:
            return psycopg.connect(
                self.conninfo(database), password=self.url.password, autocommit=True
            )
        except psycopg.ProgrammingError as exc:
            raise UsageError(f"DATABASE_URL: {self.redact(str(exc))}") from None
        except psycopg.OperationalError as exc:
            raise self.connection_error(exc, database or self.url.database) from None

    def connect_maintenance(self) -> psycopg.Connection[Any]:
        """A session on the server's maintenance database, for a target that does not exist."""
        error: DatabaseError | None = None
        for database in MAINTENANCE_DATABASES:
            try:
                return self.connect(database)
            except (DatabaseNotFound, InsufficientPrivilege) as exc:
                error = exc
        assert error is not None
        raise error

    def connection_error(self, exc: psycopg.Error, database: str) -> DatabaseError:
        text = self.redact(str(exc)).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        reason = first.rsplit(" failed: ", 1)[-1].replace("FATAL:  ", "").strip()
        lowered = text.lower()
        user = self.user
        if "server does not support ssl" in lowered:
            return TlsUnavailable(
                f"PostgreSQL at {self.where} does not offer TLS, and {self.url.tls.describe()} "
                "requires it: nothing was sent, the password included; turn on ssl on the "
                "server, or (only on a trusted network) set the TLS mode to disable"
            )
        if _CERTIFICATE_PROBLEMS.search(lowered):
            return TlsVerificationFailed(
                f"the TLS certificate of PostgreSQL at {self.where} was not accepted "
                f"({self.url.tls.describe()}): {reason}; nothing was sent, the password "
                "included; give the CA that signed the server's certificate, and for "
                "verify-full a host the certificate names"
            )
        if "requires a valid client certificate" in lowered or (
            "certificate authentication failed" in lowered
        ):
            return AuthenticationFailed(
                f"user '{user}' was refused by {self.where}: {reason}; the server wants a client "
                "certificate whose common name is the user (tls.clientCertSecretRef, "
                "sslcert/sslkey)"
            )
        if "password authentication failed" in lowered or "no password supplied" in lowered:
            return AuthenticationFailed(
                f"user '{user}' was refused by {self.where}: "
                "check LIFEBOAT_DB_PASSWORD / the secret"
            )
        if "is not permitted to log in" in lowered:
            return AuthenticationFailed(
                f"user '{user}' was refused by {self.where}: the role may not log in "
                f"(ALTER ROLE {quote_ident(user)} LOGIN)"
            )
        if "pg_hba.conf" in lowered or ("role" in lowered and "does not exist" in lowered):
            return AuthenticationFailed(f"user '{user}' was refused by {self.where}: {reason}")
        if "permission denied for database" in lowered:
            return InsufficientPrivilege(
                f"role '{user}' cannot connect to database {database}: "
                f"GRANT CONNECT ON DATABASE {quote_ident(database)} TO {quote_ident(user)}"
            )
        if "database" in lowered and "does not exist" in lowered:
            return DatabaseNotFound(f"database '{database}' does not exist on {self.where}")
        return DatabaseUnreachable(f"cannot reach PostgreSQL at {self.where}: {reason}")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class Login:
    """Who we are on the server, and which server it is."""

    user: str
    superuser: bool
    createdb: bool
    bypassrls: bool
    version: str
    """server_version as the server says it ('15.8 (Debian 15.8-0+deb12u1)')."""
    major: tuple[int, ...]

    @property
    def sql_user(self) -> str:
        return quote_ident(self.user)

    def describe(self, where: str) -> str:
        role = f"{self.user} (superuser)" if self.superuser else self.user
        return f"PostgreSQL {self.version.split()[0]} at {where}, logged in as {role}"


def login(conn: psycopg.Connection[Any]) -> Login:
    """The login's attributes and the server's version, read in the session."""
    row = conn.execute(
        "SELECT current_user, r.rolsuper, r.rolcreatedb, r.rolbypassrls, "
        "pg_catalog.current_setting('server_version'), "
        "pg_catalog.current_setting('server_version_num')::int "
        "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user"
    ).fetchone()
    assert row is not None
    user, superuser, createdb, bypassrls, version, number = row
    return Login(
        user=str(user),
        superuser=bool(superuser),
        createdb=bool(createdb),
        bypassrls=bool(bypassrls),
        version=str(version),
        major=catalog.major_of_number(int(number)),
    )


def existing_roles(conn: psycopg.Connection[Any], names: Sequence[str]) -> dict[str, bool]:
    """Of `names`, the roles that exist, each with: may the login act as it (is a member)."""
    rows = conn.execute(
        "SELECT r.rolname, pg_catalog.pg_has_role(r.oid, 'MEMBER') FROM pg_catalog.pg_roles r "
        "WHERE r.rolname = ANY(%s)",
        (list(names),),
    ).fetchall()
    return {str(name): bool(member) for name, member in rows}


def catalog_error(connector: Connector, exc: psycopg.Error) -> DatabaseError:
    """A catalog query failed (the session was cut, a statement timeout): one line."""
    return DatabaseError(
        f"reading the catalog of '{connector.url.database}' on {connector.where} failed: "
        f"{first_line(exc)}"
    )
