"""DATABASE_URL parsing: one place that turns a URL into connection settings.

Passwords never come from argv: a password embedded in the URL is refused (it would show in
`ps`, shell history and Job specs). They come from LIFEBOAT_DB_PASSWORD, the engine's own
variable (PGPASSWORD, MYSQL_PWD), or a file named by LIFEBOAT_DB_PASSWORD_FILE.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from lifeboat.contract import (
    DB_TLS_MODES,
    DEFAULT_PORTS,
    ENV_DB_PASSWORD,
    ENV_DB_PASSWORD_FILE,
    ENV_DB_TLS_CA_FILE,
    ENV_DB_TLS_CERT_FILE,
    ENV_DB_TLS_KEY_FILE,
    ENV_DB_TLS_MODE,
)
from lifeboat.worker.errors import UsageError

ENGINE_SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "sqlite": "sqlite",
}


# URL parameters naming a TLS setting, as libpq and the MySQL/MariaDB clients spell them: either
# family is accepted for either engine.
_TLS_PARAMETERS = {
    "sslmode": "mode",
    "ssl-mode": "mode",
    "ssl_mode": "mode",
    "sslrootcert": "ca",
    "ssl-ca": "ca",
    "ssl_ca": "ca",
    "sslcert": "cert",
    "ssl-cert": "cert",
    "ssl_cert": "cert",
    "sslkey": "key",
    "ssl-key": "key",
    "ssl_key": "key",
}
# MySQL's --ssl-mode names, and libpq's `prefer`/`allow` (which would let a password go out in
# clear text: refused).
_MODE_ALIASES = {
    "disabled": "disable",
    "required": "require",
    "verify_ca": "verify-ca",
    "verify_identity": "verify-full",
}
_SOURCES = {
    "mode": f"sslmode= ({ENV_DB_TLS_MODE})",
    "ca": f"sslrootcert= / ssl-ca= ({ENV_DB_TLS_CA_FILE})",
    "cert": f"sslcert= / ssl-cert= ({ENV_DB_TLS_CERT_FILE})",
    "key": f"sslkey= / ssl-key= ({ENV_DB_TLS_KEY_FILE})",
}


@dataclass(frozen=True)
class DatabaseTls:
    """TLS to the database server. `mode` None: the engine's own default (libpq: prefer; the
    MySQL driver: TLS when offered). Every other mode but disable refuses to log in over a
    connection that is not encrypted, so a password never goes out in clear text."""

    mode: str | None = None
    """disable, require, verify-ca (the CA signed the certificate) or verify-full (and the
    certificate names the host)."""
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def required(self) -> bool:
        return self.mode in ("require", "verify-ca", "verify-full")

    @property
    def verify(self) -> bool:
        return self.mode in ("verify-ca", "verify-full")

    def describe(self) -> str:
        """For error messages: the mode and the CA file, never a key."""
        ca = f" with CA {self.ca_file}" if self.ca_file else ""
        return f"TLS mode {self.mode}{ca}"


def parse_tls(
    options: Mapping[str, str], env: Mapping[str, str]
) -> tuple[DatabaseTls, dict[str, str]]:
    """The TLS settings from the URL's parameters (which win) and the environment, and the
    remaining parameters. Errors name the parameter or variable to fix."""
    found: dict[str, str] = {}
    rest: dict[str, str] = {}
    for name, value in options.items():
        setting = _TLS_PARAMETERS.get(name.lower())
        if setting is None:
            rest[name] = value
        else:
            found[setting] = value
    for setting, variable in (
        ("mode", ENV_DB_TLS_MODE),
        ("ca", ENV_DB_TLS_CA_FILE),
        ("cert", ENV_DB_TLS_CERT_FILE),
        ("key", ENV_DB_TLS_KEY_FILE),
    ):
        if setting not in found and env.get(variable):
            found[setting] = env[variable]
    mode = found.get("mode")
    if mode is not None:
        mode = _MODE_ALIASES.get(mode.lower(), mode.lower())
        if mode not in DB_TLS_MODES:
            raise UsageError(
                f"DATABASE_URL: {_SOURCES['mode']} {found['mode']!r} is not a TLS mode; use "
                f"{', '.join(DB_TLS_MODES)} (prefer and allow could send the password unencrypted)"
            )
    files: dict[str, Path] = {}
    for setting in ("ca", "cert", "key"):
        if found.get(setting):
            path = Path(found[setting])
            if not path.is_file():
                raise UsageError(
                    f"DATABASE_URL: {_SOURCES[setting]} names {path}, which is not a readable "
                    "file: check the path (in a Job, the mounted Secret or ConfigMap and its key)"
                )
            files[setting] = path
    if files and mode is None:
        mode = "verify-full" if "ca" in files else "require"
    if mode == "disable" and files:
        raise UsageError(
            f"DATABASE_URL: TLS mode disable with a CA or client certificate: remove them, or "
            f"set {_SOURCES['mode']} to require, verify-ca or verify-full"
        )
    if mode in ("verify-ca", "verify-full") and "ca" not in files:
        raise UsageError(
            f"DATABASE_URL: TLS mode {mode} checks the server's certificate against a CA: give "
            f"the CA bundle with {_SOURCES['ca']}"
        )
    if ("cert" in files) != ("key" in files):
        raise UsageError(
            f"DATABASE_URL: a client certificate needs both {_SOURCES['cert']} and "
            f"{_SOURCES['key']}"
        )
    tls = DatabaseTls(
        mode=mode, ca_file=files.get("ca"), cert_file=files.get("cert"), key_file=files.get("key")
    )
    return tls, rest


@dataclass(frozen=True)
class DatabaseURL:
    """Where a database is. `repr` never shows the password."""

    engine: str
    database: str
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    path: Path | None = None
    options: Mapping[str, str] = field(default_factory=dict)
    tls: DatabaseTls = field(default_factory=DatabaseTls)

    def redacted(self) -> str:
        """The URL as it may be shown to people: never with a password."""
        if self.engine == "sqlite":
            return f"sqlite:///{self.path}"
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{self.engine}://{user}{self.host}{port}/{self.database}"

    def with_database(self, database: str) -> DatabaseURL:
        return DatabaseURL(
            engine=self.engine,
            database=database,
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            path=self.path,
            options=self.options,
            tls=self.tls,
        )


def parse_database_url(url: str, environ: Mapping[str, str] | None = None) -> DatabaseURL:
    """Parse DATABASE_URL; the error names the argument and what a valid one looks like."""
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    engine = ENGINE_SCHEMES.get(parts.scheme.lower())
    if engine is None:
        raise UsageError(
            f"DATABASE_URL: unknown scheme {parts.scheme!r}; use postgresql://, mysql://, "
            "mariadb:// or sqlite:///path/to/file.db"
        )
    if engine == "sqlite":
        raw = unquote(parts.netloc + parts.path)
        if not raw or raw == "/":
            raise UsageError("DATABASE_URL: sqlite needs a file path, e.g. sqlite:///data/app.db")
        # sqlite:////abs/path (four slashes, as SQLAlchemy writes it) means the same file.
        path = Path("/" + raw.lstrip("/")) if raw.startswith("/") else Path(raw)
        return DatabaseURL(engine=engine, database=path.stem, path=path)
    if parts.password is not None:
        raise UsageError(
            "DATABASE_URL: a password in the URL would leak through argv and logs; "
            "remove it and set LIFEBOAT_DB_PASSWORD (or LIFEBOAT_DB_PASSWORD_FILE) instead"
        )
    raw_database = parts.path.lstrip("/")
    database = unquote(raw_database)
    if not database or "/" in raw_database:  # a '/' in the name itself arrives as %2F
        raise UsageError(
            f"DATABASE_URL: name one database after the host, e.g. {engine}://user@host:port/shop"
        )
    if not parts.hostname:
        raise UsageError(f"DATABASE_URL: a host is needed, e.g. {engine}://user@db.example:port/db")
    try:
        port = parts.port or DEFAULT_PORTS[engine]
    except ValueError as exc:
        raise UsageError(f"DATABASE_URL: the port is not a number ({exc})") from None
    tls, options = parse_tls({k: v[-1] for k, v in parse_qs(parts.query).items()}, env)
    return DatabaseURL(
        engine=engine,
        database=database,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=_password_from_environment(engine, env),
        options=options,
        tls=tls,
    )


def _password_from_environment(engine: str, env: Mapping[str, str]) -> str | None:
    if env.get(ENV_DB_PASSWORD):
        return env[ENV_DB_PASSWORD]
    password_file = env.get(ENV_DB_PASSWORD_FILE)
    if password_file:
        try:
            return Path(password_file).read_text().rstrip("\r\n")
        except OSError as exc:
            raise UsageError(
                f"{ENV_DB_PASSWORD_FILE}: cannot read {password_file} ({exc.strerror})"
            ) from None
    native = {"postgresql": "PGPASSWORD", "mysql": "MYSQL_PWD", "mariadb": "MYSQL_PWD"}[engine]
    return env.get(native) or None
