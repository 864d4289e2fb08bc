"""`PostgresEngine`: the `Engine` protocol for PostgreSQL, put together from this package's parts.

Each part lives in the module named after it: `connection` (libpq settings and login errors),
`preflight` (privileges, versions, roles, the restore plan), `dump` (pg_dump in one snapshot),
`archive` (the TOC of the restore's stream) and `restore` (the single verified transaction).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import ClassVar

import psycopg

from lifeboat.worker.database_url import DatabaseURL
from lifeboat.worker.engines.base import (
    Check,
    RestoreOptions,
    RestorePlan,
    RestoreResult,
    ServerInfo,
)
from lifeboat.worker.engines.postgres import preflight
from lifeboat.worker.engines.postgres.catalog import USER_TABLE_SIZES_SQL
from lifeboat.worker.engines.postgres.connection import Connector, first_line
from lifeboat.worker.engines.postgres.dump import PostgresDump, start_dump
from lifeboat.worker.engines.postgres.restore import SingleTransactionRestore
from lifeboat.worker.errors import DatabaseError, RestoreError
from lifeboat.worker.manifest import Manifest
from lifeboat.worker.progress import Progress
from lifeboat.worker.streams import Readable


class PostgresEngine:
    """PostgreSQL through psycopg (catalog, snapshot, counts) and pg_dump/pg_restore/psql.

    Runs as what managed databases give an application: the owner of its database, without
    SUPERUSER, CREATEDB or CREATEROLE (a role that only reads, such as pg_read_all_data, for
    backups). docs/privileges.md lists what each operation needs.
    """

    name: ClassVar[str] = "postgresql"
    dump_format: ClassVar[str] = "pg_dump-custom"

    def __init__(self, url: DatabaseURL) -> None:
        self.connector = Connector(url)
        self.url = url

    def preflight_backup(self) -> list[Check]:
        return preflight.backup_checks(self.connector)

    def inspect(self) -> ServerInfo:
        with self.connector.connect() as conn:
            try:
                version_row = conn.execute("SHOW server_version").fetchone()
                rows = conn.execute(USER_TABLE_SIZES_SQL).fetchall()
            except psycopg.Error as exc:
                raise DatabaseError(
                    f"reading the catalog of '{self.url.database}' failed: {first_line(exc)}"
                ) from None
        sizes = {f"{schema}.{table}": int(size) for schema, table, size in rows}
        return ServerInfo(
            version=str(version_row[0]) if version_row else "unknown",
            tables=list(sizes),
            estimated_bytes=sum(sizes.values()),
            table_bytes=sizes,
        )

    def dump(self, progress: Progress) -> AbstractContextManager[PostgresDump]:
        return start_dump(self.connector, progress)

    def plan_restore(self, manifest: Manifest, options: RestoreOptions) -> RestorePlan:
        return preflight.plan_restore(self.connector, manifest, options)

    def restore(
        self, source: Readable, manifest: Manifest, progress: Progress, options: RestoreOptions
    ) -> RestoreResult:
        """Replace (or, with keep_extra_objects, overlay) the target in one verified transaction.

        Needs: a role that owns the target database (or a superuser), CREATEDB when the database
        is missing, and the roles the backup names unless no_owner/no_privileges (they belong to
        the cluster, not the database, so no database backup carries them). Subscriptions are
        not restored.
        """
        if manifest.dump_format != self.dump_format:
            raise RestoreError(
                f"the backup's format {manifest.dump_format!r} is not {self.dump_format!r}"
            )
        return SingleTransactionRestore(self.connector).run(source, manifest, progress, options)
