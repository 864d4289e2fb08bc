"""Database engines behind one Protocol (`base.Engine`); `open_engine` picks one for a URL."""

from __future__ import annotations

from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.engines.base import Engine


def open_engine(url: DatabaseURL) -> Engine:
    """The engine for `url`. Drivers are imported here, so `--help` stays fast."""
    if url.engine == "postgresql":
        from lifeboat.worker.engines.postgres import PostgresEngine

        return PostgresEngine(url)
    if url.engine == "mysql":
        from lifeboat.worker.engines.mysql import MySQLEngine

        return MySQLEngine(url)
    if url.engine == "mariadb":
        from lifeboat.worker.engines.mysql import MariaDBEngine

        return MariaDBEngine(url)
    from lifeboat.worker.engines.sqlite import SQLiteEngine

    return SQLiteEngine(url)
