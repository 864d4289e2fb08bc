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

from lifeboat.contract import DEFAULT_PORTS, ENV_DB_PASSWORD, ENV_DB_PASSWORD_FILE
from lifeboat.worker.errors import UsageError

ENGINE_SCHEMES = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "sqlite": "sqlite",
}


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
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return DatabaseURL(
        engine=engine,
        database=database,
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=_password_from_environment(engine, env),
        options=options,
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
