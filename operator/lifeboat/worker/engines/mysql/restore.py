"""A restore: stage the backup inside the target database, prove it, swap it in, commit.

  1. Staging (staging.py): the dump streams through the `mariadb` client into staged tables of
     the target database (created first if it does not exist); views, routines, triggers and
     events are held back. Tables left staged by an interrupted earlier restore are removed first.
  2. Verification: row counts of the staged tables against the manifest. A mismatch, a failing
     statement, or `source.read` raising (ChecksumMismatch at the artifact's end) drops the staged
     tables (or the database the restore created): up to here the target was not touched.
  3. The swap (swap.py): one RENAME TABLE, the held-back objects created, everything journaled and
     undone on failure.
  4. Commit: parked tables dropped, the backup's own foreign key names restored. The report
     gives the counts step 2 proved: the staged tables it counted are the very tables the one
     RENAME TABLE made live, so counting them again would only repeat a full scan of every
     table (measured: about 2% of a 1 GB restore, docs/benchmarks.md).

Every statement of 1-4 runs in the target database, so `ALL PRIVILEGES ON db.*` is all a restore
needs (docs/privileges.md). One restore at a time per database: a second one would remove the
first one's staged tables.
"""

from __future__ import annotations

from lifeboat.worker.engines.base import RestoreOptions, RestoreResult
from lifeboat.worker.engines.mysql.catalog import Catalog, read_catalog
from lifeboat.worker.engines.mysql.connection import Connector, quote
from lifeboat.worker.engines.mysql.preflight import refuse_postgres_options
from lifeboat.worker.engines.mysql.reserved_names import StagingNames, new_token
from lifeboat.worker.engines.mysql.staging import (
    discard,
    drop_tables,
    find_leftovers,
    load,
    verify,
)
from lifeboat.worker.engines.mysql.swap import Swap
from lifeboat.worker.manifest import Manifest
from lifeboat.worker.progress import Progress
from lifeboat.worker.streams import Readable

LOCK_WAIT_SECONDS = 60
"""How long the swap waits for metadata locks (a long transaction on the target) before it fails
and rolls back."""


def restore(
    connector: Connector,
    source: Readable,
    manifest: Manifest,
    progress: Progress,
    options: RestoreOptions,
) -> RestoreResult:
    refuse_postgres_options(options)
    database = connector.url.database
    with connector.session(None) as session:
        mariadb_server = "mariadb" in session.version().lower()
        session.execute("SET SESSION lock_wait_timeout = %s", (LOCK_WAIT_SECONDS,))
        session.execute("SET SESSION foreign_key_checks = 0")
        exists = session.database_exists(database)
        if not exists:
            session.execute(f"CREATE DATABASE {quote(database)}")
        session.conn.select_db(database)
        notes: list[str] = []
        leftovers = find_leftovers(session, database)
        if leftovers.staged:
            drop_tables(session, database, leftovers.staged)
            notes.append(
                "removed the staged tables an interrupted restore left: "
                + ", ".join(leftovers.staged)
            )
        notes += [n for n in leftovers.notes(database) if not n.startswith("staged tables")]
        names = StagingNames.for_tables(new_token(), manifest.row_counts)
        try:
            staged = load(connector, database, source, progress, names)
            counts = verify(session, database, staged, manifest)
            current = read_catalog(session, database) if exists else Catalog()
            swap = Swap(session, database, staged, current, options, mariadb_server)
            swap.check()
        except BaseException:
            discard(session, database, names, created=not exists)
            raise
        try:
            swap.run()
        except BaseException:
            if not exists:
                discard(session, database, names, created=True)
            raise
        notes += swap.commit()
    return RestoreResult(row_counts=counts, notes=notes)
