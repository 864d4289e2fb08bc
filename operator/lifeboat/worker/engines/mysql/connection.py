"""Reaching MySQL/MariaDB: PyMySQL sessions, the command-line tools' arguments, and one typed
error with one clear line for every way a server says no.

The password travels to the tools in `MYSQL_PWD` only (never argv) and is redacted from any text
that reaches a message.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import re
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pymysql

from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.errors import (
    AuthenticationFailed,
    DatabaseError,
    DatabaseNotFound,
    DatabaseUnreachable,
    InsufficientPrivilege,
    RoleMissing,
    TlsUnavailable,
    TlsVerificationFailed,
    UsageError,
)

if TYPE_CHECKING:
    from pymysql.connections import Connection
    from pymysql.cursors import Cursor

    PyMySQLConnection = Connection[Cursor]

MAX_PACKET = "1G"
_UNREACHABLE_CODES = {2002, 2003, 2005, 2006, 2013}
_AUTHENTICATION_CODES = {1045, 1698}
_DATABASE_DENIED = 1044
_UNKNOWN_DATABASE = 1049
_PRIVILEGE_CODES = {1142, 1143, 1227, 1370}
_NO_SUCH_DEFINER = 1449
_DENIED_DATABASE = re.compile(r"to database '((?:[^']|'')*)'")
# PyMySQL's RuntimeError when the server asks for an authentication method whose client side
# needs a package that is not installed (caching_sha2_password, MySQL 8's default: cryptography).
_AUTH_PACKAGE_MISSING = re.compile(
    r"'(?P<package>[\w.-]+)' package is required for (?P<methods>.+?) auth methods?"
)
_TOOL_ERROR = re.compile(r"ERROR (\d+) \(\w+\)")
_SSL_CONNECTION_ERROR = 2026
_TLS_NOT_OFFERED = re.compile(r"server (does not|doesn't) support (it|ssl)|ssl is required", re.I)
_CERTIFICATE_PROBLEM = re.compile(
    r"certificate verify failed|certificate|hostname mismatch|self[- ]signed|verification", re.I
)


def quote(identifier: str) -> str:
    """A MySQL identifier in backquotes, safe for any name."""
    return "`" + identifier.replace("`", "``") + "`"


def quote_string(text: str) -> str:
    """A MySQL string literal (for account names in GRANT suggestions)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Account:
    """A MySQL account `user@host` (or a MariaDB role, which has no host)."""

    user: str
    host: str | None = None

    @classmethod
    def parse(cls, text: str) -> Account:
        """'app@%' (CURRENT_USER(), manifest roles) -> Account('app', '%')."""
        user, at, host = text.rpartition("@")
        return cls(user, host) if at else cls(text, None)

    def __str__(self) -> str:
        return f"{self.user}@{self.host}" if self.host is not None else self.user

    def sql(self) -> str:
        """As GRANT and CREATE USER spell it: 'app'@'%'."""
        if self.host is None:
            return quote_string(self.user)
        return f"{quote_string(self.user)}@{quote_string(self.host)}"


def _login_name() -> str:
    """Who the MySQL tools connect as when the URL names no user: the login name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container uid without a passwd entry
        return "root"


def _pick_tool(preferred: str, fallback: str) -> str:
    return preferred if shutil.which(preferred) else fallback


@functools.cache
def tool_help(tool: str) -> str:
    """`tool --help` text (it starts with the version), to adapt flags to MariaDB or MySQL."""
    try:
        done = subprocess.run(
            [tool, "--no-defaults", "--help", "--verbose"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout


class Connector:
    """Where the server is and who logs in: sessions for Lifeboat, arguments for the tools."""

    def __init__(self, url: DatabaseURL, product: str) -> None:
        self.url = url
        self.product = product
        self.host = url.host or "localhost"
        self.port = url.port or 3306
        self.user = url.user or _login_name()
        timeout = url.options.get("connect_timeout", "10")
        if not timeout.isdigit() or int(timeout) < 1:
            raise UsageError(
                f"DATABASE_URL: connect_timeout must be a number of seconds, not {timeout!r}"
            )
        self.connect_timeout = int(timeout)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def redact(self, text: str) -> str:
        password = self.url.password
        return text.replace(password, "***") if password else text

    # -- errors ----------------------------------------------------------------------------------

    def error(
        self, exc: pymysql.MySQLError, *, database: str | None = None, fix: str = ""
    ) -> DatabaseError:
        """One clear line for a driver error; never the password.

        `database` is the database the statement was about, if the server's message does not
        say; `fix` is the sentence that ends a privilege error (the GRANT that helps)."""
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        text = self.redact(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
        return self.error_for(code, text, database=database, fix=fix)

    def error_for(
        self, code: int | None, text: str, *, database: str | None = None, fix: str = ""
    ) -> DatabaseError:
        account = f"'{self.user}'"
        if self.url.tls.required and (
            code == _SSL_CONNECTION_ERROR
            or (code in _UNREACHABLE_CODES and _CERTIFICATE_PROBLEM.search(text))
            or _TLS_NOT_OFFERED.search(text)
        ):
            return self.tls_error(text)
        if code in _AUTHENTICATION_CODES:
            return AuthenticationFailed(
                f"{self.product} at {self.where} refused user {account} ({text}); "
                "check LIFEBOAT_DB_PASSWORD / the secret that provides it"
            )
        if code == _DATABASE_DENIED:
            named = _DENIED_DATABASE.search(text)
            refused = named.group(1).replace("''", "'") if named else database
            return InsufficientPrivilege(
                f"{self.product} at {self.where} refused user {account} on database "
                f"'{refused}' ({text}){'; ' + fix if fix else ''}"
            )
        if code == _UNKNOWN_DATABASE:
            return DatabaseNotFound(
                f"database '{database}' does not exist on {self.where}"
                if database
                else f"{self.product} at {self.where}: {text}"
            )
        if code in _PRIVILEGE_CODES:
            return InsufficientPrivilege(
                f"{self.product} at {self.where} refused user {account}: {text}"
                f"{'; ' + fix if fix else ''}"
            )
        if code == _NO_SUCH_DEFINER:
            return RoleMissing(
                f"{self.product} at {self.where}: {text}; users are server-wide and not part of "
                "a backup: create that user on the target server first"
            )
        if code in _UNREACHABLE_CODES or code is None:
            return DatabaseUnreachable(f"cannot reach {self.product} at {self.where}: {text}")
        return DatabaseError(f"{self.product} at {self.where}: {text} (error {code})")

    def tool_error(self, line: str, *, what: str) -> DatabaseError:
        """The typed error for a tool's 'ERROR 1142 (42000) at line 3: ...' line."""
        found = _TOOL_ERROR.search(line)
        code = int(found.group(1)) if found else -1
        error = self.error_for(code, self.redact(line))
        if type(error) in (DatabaseError, DatabaseUnreachable):
            return DatabaseError(f"{what}: {self.redact(line)}")
        return type(error)(f"{what}: {error}")

    # -- sessions --------------------------------------------------------------------------------

    def connect(self, database: str | None) -> PyMySQLConnection:
        try:
            return pymysql.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                # Bytes: PyMySQL would encode a str as latin-1, the tools send UTF-8.
                password=(self.url.password or "").encode(),
                database=database,
                charset="utf8mb4",
                autocommit=True,
                connect_timeout=self.connect_timeout,
                **self._ssl_arguments(),
            )
        except pymysql.MySQLError as exc:
            raise self.error(exc, database=database) from None
        except ssl.SSLError as exc:
            raise self.tls_error(str(exc)) from None
        except RuntimeError as exc:
            missing = _AUTH_PACKAGE_MISSING.search(str(exc))
            if missing is None:
                raise
            raise self.auth_package_missing(missing["package"], missing["methods"]) from None

    def _ssl_arguments(self) -> dict[str, Any]:
        """PyMySQL's TLS settings. An SSLContext makes PyMySQL require TLS: it raises (error
        2026) before it sends the login packet when the server does not offer it, so the
        password never goes out unencrypted."""
        tls = self.url.tls
        if tls.mode is None:
            return {}
        if tls.mode == "disable":
            return {"ssl_disabled": True}
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        context.check_hostname = tls.mode == "verify-full"
        context.verify_mode = ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE
        if tls.cert_file is not None:
            try:
                context.load_cert_chain(str(tls.cert_file), keyfile=str(tls.key_file))
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(
                    f"DATABASE_URL: cannot load the client certificate {tls.cert_file} and key "
                    f"{tls.key_file} ({exc}): check they are PEM and belong together"
                ) from None
        return {"ssl": context}

    def tls_error(self, text: str) -> DatabaseError:
        """TLS was asked for and failed: the server offers none, or its certificate is not
        accepted. Either way the login packet (the password) was never sent."""
        tls = self.url.tls
        if _TLS_NOT_OFFERED.search(text):
            return TlsUnavailable(
                f"{self.product} at {self.where} does not offer TLS, and {tls.describe()} "
                "requires it: nothing was sent, the password included; give the server "
                "ssl_cert/ssl_key (have_ssl=YES), or (only on a trusted network) set the TLS "
                "mode to disable"
            )
        return TlsVerificationFailed(
            f"the TLS certificate of {self.product} at {self.where} was not accepted "
            f"({tls.describe()}): {text}; nothing was sent, the password included; give the "
            "CA that signed the server's certificate, and for verify-full a host the "
            "certificate names"
        )

    def auth_package_missing(self, package: str, methods: str) -> AuthenticationFailed:
        """The server wants an authentication method this worker cannot speak: not a wrong
        password (it was never checked), a missing Python package."""
        return AuthenticationFailed(
            f"{self.product} at {self.where} asks user '{self.user}' to log in with {methods} "
            f"(caching_sha2_password is MySQL 8's default), which needs the Python package "
            f"'{package}' beside PyMySQL, and this worker lacks it: use the Lifeboat image, "
            f"which ships it, or pip install {package}; the password was not checked"
        )

    @contextlib.contextmanager
    def session(self, database: str | None) -> Iterator[Session]:
        """A session on `database` (None: no default database). A driver error escaping the
        block becomes the typed error."""
        conn = self.connect(database)
        try:
            yield Session(conn, self)
        except pymysql.MySQLError as exc:
            raise self.error(exc, database=database) from None
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    # -- tools -----------------------------------------------------------------------------------

    def tool_env(self) -> dict[str, str]:
        return {"MYSQL_PWD": self.url.password} if self.url.password else {}

    def secrets(self) -> list[str]:
        return [self.url.password] if self.url.password else []

    def connection_args(self) -> list[str]:
        # --no-defaults: behaviour comes from the URL, not from whatever my.cnf the image has.
        return [
            "--no-defaults",
            "--protocol=TCP",
            f"--host={self.host}",
            f"--port={self.port}",
            f"--user={self.user}",
            "--default-character-set=utf8mb4",
            f"--max-allowed-packet={MAX_PACKET}",
            *self.tls_args(),
        ]

    def tls_args(self) -> list[str]:
        """The tools' TLS flags (paths only). MariaDB's --ssl refuses a server without TLS before
        it logs in; MySQL's client takes --ssl-mode instead."""
        tls = self.url.tls
        if tls.mode is None:
            return []
        oracle = "--ssl-mode" in tool_help(self.dump_tool())
        if tls.mode == "disable":
            return ["--ssl-mode=DISABLED"] if oracle else ["--skip-ssl"]
        if oracle:
            modes = {
                "require": "REQUIRED",
                "verify-ca": "VERIFY_CA",
                "verify-full": "VERIFY_IDENTITY",
            }
            args = [f"--ssl-mode={modes[tls.mode]}"]
        else:
            args = ["--ssl"]
            args.append(
                "--ssl-verify-server-cert"
                if tls.mode == "verify-full"
                else "--skip-ssl-verify-server-cert"
            )
        for flag, path in (
            ("--ssl-ca", tls.ca_file),
            ("--ssl-cert", tls.cert_file),
            ("--ssl-key", tls.key_file),
        ):
            if path is not None:
                args.append(f"{flag}={path}")
        return args

    def dump_tool(self) -> str:
        return _pick_tool("mariadb-dump", "mysqldump")

    def client_argv(self, database: str) -> tuple[list[str], bool]:
        """The `mariadb` client for `database`, and whether it is MariaDB's (sandbox aware)."""
        tool = _pick_tool("mariadb", "mysql")
        help_text = tool_help(tool)
        argv = [tool, *self.connection_args(), f"--connect-timeout={self.connect_timeout}"]
        if "--sandbox" in help_text:
            argv.append("--sandbox")  # a backup must not run shell commands (\!) on restore
        argv += ["--batch", f"--database={database}"]
        return argv, "MariaDB" in help_text


class Session:
    """A PyMySQL connection with the few query shapes the engine needs."""

    def __init__(self, conn: PyMySQLConnection, connector: Connector) -> None:
        self.conn = conn
        self.connector = connector

    def query(self, sql: str | bytes, args: object = None) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)  # type: ignore[arg-type]
            return list(cur.fetchall())

    def execute(self, sql: str | bytes, args: object = None) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)  # type: ignore[arg-type]

    def scalar(self, sql: str, args: object = None) -> Any:
        rows = self.query(sql, args)
        return rows[0][0] if rows else None

    def show(self, sql: str) -> dict[str, Any] | None:
        """The one row of a SHOW CREATE statement, by column name (None: no row)."""
        with self.conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            names = [d[0] for d in cur.description or ()]
        return None if row is None else dict(zip(names, row, strict=True))

    def current_account(self) -> Account:
        """The account the server matched the login to (its grants are this account's)."""
        return Account.parse(str(self.scalar("SELECT CURRENT_USER()")))

    def version(self) -> str:
        return str(self.scalar("SELECT VERSION()"))

    def database_exists(self, database: str) -> bool:
        """Whether `database` exists as far as this login can see (any privilege on it)."""
        rows = self.query(
            "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (database,)
        )
        return bool(rows)

    def reset(self) -> None:
        """Back to Lifeboat's session settings after replaying a dump's SET statements."""
        with contextlib.suppress(pymysql.MySQLError):
            self.execute("SET NAMES utf8mb4")
            self.execute("SET SESSION sql_mode = DEFAULT, time_zone = DEFAULT")
