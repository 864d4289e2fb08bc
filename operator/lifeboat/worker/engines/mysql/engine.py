"""The MySQL and MariaDB engine: one class behind `base.Engine`, the work done by the modules of
this package (preflight, dump, staging and swap)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import ClassVar

from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.engines.base import (
    Check,
    RestoreOptions,
    RestorePlan,
    RestoreResult,
    ServerInfo,
)
from lifeboat.worker.engines.mysql import preflight
from lifeboat.worker.engines.mysql.catalog import COUNTED_TYPES
from lifeboat.worker.engines.mysql.connection import Connector
from lifeboat.worker.engines.mysql.dump import MySQLDumpStream, run_dump
from lifeboat.worker.engines.mysql.restore import restore
from lifeboat.worker.manifest import Manifest
from lifeboat.worker.progress import Progress
from lifeboat.worker.streams import Readable


class MySQLEngine:
    """A MySQL or MariaDB database, reached over TCP; tools preferred: mariadb-dump, mariadb."""

    name: ClassVar[str] = "mysql"
    dump_format: ClassVar[str] = "mysql-sql"
    product: ClassVar[str] = "MySQL"

    def __init__(self, url: DatabaseURL) -> None:
        self.url = url
        self.connector = Connector(url, self.product)

    @property
    def user(self) -> str:
        return self.connector.user

    def preflight_backup(self) -> list[Check]:
        return preflight.preflight_backup(self.connector)

    def inspect(self) -> ServerInfo:
        """Version, tables and their data size, from the server's catalog. Tables are named as
        the dump's data sections name them, which is how progress items are named."""
        database = self.url.database
        with self.connector.session(database) as s:
            version = s.version()
            rows = s.query(
                "SELECT TABLE_NAME, COALESCE(DATA_LENGTH, 0) FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE IN %s ORDER BY TABLE_NAME",
                (database, COUNTED_TYPES),
            )
        table_bytes = {str(name): int(size) for name, size in rows}
        return ServerInfo(
            version=version,
            tables=list(table_bytes),
            estimated_bytes=sum(table_bytes.values()),
            table_bytes=table_bytes,
        )

    def dump(self, progress: Progress) -> AbstractContextManager[MySQLDumpStream]:
        return run_dump(self.connector, progress)

    def plan_restore(self, manifest: Manifest, options: RestoreOptions) -> RestorePlan:
        return preflight.plan_restore(self.connector, manifest, options)

    def restore(
        self, source: Readable, manifest: Manifest, progress: Progress, options: RestoreOptions
    ) -> RestoreResult:
        """Stage inside the target database, verify, swap with one RENAME (see restore.py)."""
        return restore(self.connector, source, manifest, progress, options)


class MariaDBEngine(MySQLEngine):
    """The same engine under MariaDB's name (mariadb:// URLs)."""

    name: ClassVar[str] = "mariadb"
    product: ClassVar[str] = "MariaDB"
