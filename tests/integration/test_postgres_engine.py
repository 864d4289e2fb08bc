"""The PostgreSQL engine against a real server: dumps that match their counts, restores that
commit only when proven, and one-line errors for the ways a connection fails."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lifeboat.worker.engines._process import ToolProcess
from lifeboat.worker.engines.base import DumpSummary, RestoreOptions, RestoreResult
from lifeboat.worker.engines.postgres import PostgresEngine
from lifeboat.worker.engines.postgres import archive as archive_module
from lifeboat.worker.engines.postgres import dump as dump_module
from lifeboat.worker.engines.postgres import restore as restore_module
from lifeboat.worker.engines.postgres import tools as tools_module
from lifeboat.worker.errors import (
    AuthenticationFailed,
    ChecksumMismatch,
    DatabaseNotFound,
    DatabaseUnreachable,
    DumpFailed,
    IncompatibleServer,
    RestoreError,
    VerificationFailed,
)
from lifeboat.worker.manifest import Manifest, TableManifest
from lifeboat.worker.progress import Progress
from tests.support.manifests import manifest_for_raw_dump
from tests.support.postgres import (
    SAMPLE_ROW_COUNTS,
    PgDatabase,
    PgDatabaseFactory,
    seed_sample_schema,
)


@dataclass
class Backup:
    data: bytes
    summary: DumpSummary
    manifest: Manifest
    items_done: list[str]


def engine_for(db: PgDatabase, **env: str) -> PostgresEngine:
    return PostgresEngine(db.database_url(**env))


class RecordingProgress(Progress):
    """A real Progress that also remembers which items the engine reported, in order."""

    def __init__(self, operation: str) -> None:
        super().__init__(operation)
        self.done: list[str] = []
        self.started: list[str] = []

    def item_done(self, name: str) -> None:
        self.done.append(name)
        super().item_done(name)

    def start_item(self, name: str) -> None:
        self.started.append(name)
        super().start_item(name)


def take_backup(db: PgDatabase) -> Backup:
    engine = engine_for(db)
    info = engine.inspect()
    progress = RecordingProgress("backup")
    out = io.BytesIO()
    with engine.dump(progress) as dump:
        while chunk := dump.read(64 * 1024):
            out.write(chunk)
        summary = dump.finish()
    data = out.getvalue()
    return Backup(data, summary, manifest_for(engine, info.version, summary, data), progress.done)


def manifest_for(
    engine: PostgresEngine, version: str, summary: DumpSummary, data: bytes
) -> Manifest:
    return manifest_for_raw_dump(engine, version, summary.row_counts, data, "postgresql.dump")


def with_counts(manifest: Manifest, **changes: int) -> Manifest:
    tables = [
        TableManifest(name=t.name, rows=changes.get(t.name.replace(".", "__"), t.rows))
        for t in manifest.tables
    ]
    return manifest.model_copy(update={"tables": tables})


class Source:
    """The restore's input as the pipeline hands it over: bounded reads, and optionally an error
    after `fail_after` bytes (at the very end it stands for a checksum mismatch)."""

    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        self._data = data
        self._pos = 0
        self._fail_after = fail_after
        self.finished = False

    @property
    def position(self) -> int:
        """Bytes handed out so far."""
        return self._pos

    def read(self, n: int = -1, /) -> bytes:
        limit = len(self._data) if self._fail_after is None else self._fail_after
        if self._pos >= limit:
            if self._fail_after is not None:
                raise ChecksumMismatch("test: the artifact is corrupt")
            self.finished = True
            return b""
        size = 64 * 1024 if n < 0 else min(n, 64 * 1024)
        chunk = self._data[self._pos : min(self._pos + size, limit)]
        self._pos += len(chunk)
        return chunk


def restore(
    db: PgDatabase, backup: Backup, *, keep: bool = False, manifest: Manifest | None = None
) -> RestoreResult:
    source = Source(backup.data)
    result = engine_for(db).restore(
        source,
        manifest or backup.manifest,
        RecordingProgress("restore"),
        RestoreOptions(keep_extra_objects=keep),
    )
    assert source.finished, "the engine must read the source to its end"
    return result


def damage(db: PgDatabase) -> None:
    """Changes made after the backup: rows and objects, in old and new schemas."""
    db.execute(
        """
        DELETE FROM shop."order lines";
        UPDATE shop.customers SET note = 'changed' WHERE id = 2;
        INSERT INTO public.events VALUES (99, NULL, NULL);
        DROP VIEW shop.customer_totals;
        SELECT setval('shop.invoice_numbers', 5000);
        CREATE TABLE public.late_table (id int);
        INSERT INTO public.late_table VALUES (1), (2);
        CREATE VIEW public.late_view AS SELECT id FROM public.late_table;
        CREATE FUNCTION public.late_function() RETURNS int LANGUAGE sql AS 'SELECT 1';
        CREATE TABLE shop.late_in_old_schema (x text);
        CREATE SCHEMA late_schema;
        CREATE TABLE late_schema.stuff AS SELECT 1 AS one;
        """
    )


@pytest.fixture
def source_db(pg_database_factory: PgDatabaseFactory) -> PgDatabase:
    db = pg_database_factory(prefix="src")
    seed_sample_schema(db)
    return db


@pytest.fixture
def backup(source_db: PgDatabase) -> Backup:
    return take_backup(source_db)


@pytest.fixture
def target_db(source_db: PgDatabase, pg_database_factory: PgDatabaseFactory) -> PgDatabase:
    """Another database of the source's owner: its backups restore there as they are."""
    return pg_database_factory(owner=source_db.role)


def test_inspect_reads_version_tables_and_sizes(source_db: PgDatabase) -> None:
    info = engine_for(source_db).inspect()

    assert info.version.startswith(str(source_db.scalar("SHOW server_version")).split()[0])
    assert info.tables == sorted(SAMPLE_ROW_COUNTS)
    assert info.estimated_bytes > 0


def test_dump_counts_match_the_database_and_every_table_is_reported_done(
    source_db: PgDatabase, backup: Backup
) -> None:
    assert dict(backup.summary.row_counts) == SAMPLE_ROW_COUNTS == source_db.row_counts()
    assert sorted(backup.items_done) == sorted(SAMPLE_ROW_COUNTS)
    assert backup.data.startswith(b"PGDMP")


def test_inspect_sizes_each_table_under_the_name_progress_reports_it_by(
    source_db: PgDatabase, backup: Backup
) -> None:
    info = engine_for(source_db).inspect()

    assert sorted(info.table_bytes) == sorted(backup.items_done) == sorted(SAMPLE_ROW_COUNTS)
    assert sum(info.table_bytes.values()) == info.estimated_bytes
    assert info.table_bytes["shop.orders"] > 0


def test_the_dump_names_its_roles_and_objects(source_db: PgDatabase, backup: Backup) -> None:
    assert backup.summary.roles == [source_db.user]
    assert {
        "schema public",
        "schema shop",
        "table shop.order lines",
        "view shop.customer_totals",
        "function shop.order_total(integer)",
        "sequence shop.invoice_numbers",
        "sequence shop.orders_id_seq",
        "large objects",
    } <= set(backup.summary.objects)
    assert len(backup.summary.objects) == len(set(backup.summary.objects))


LATE_OBJECTS = {
    "schema late_schema",
    "table late_schema.stuff",
    "table public.late_table",
    "view public.late_view",
    "function public.late_function()",
    "table shop.late_in_old_schema",
}


def with_objects(backup: Backup) -> Manifest:
    """The manifest as the pipeline writes it: with the dump's roles and objects."""
    return backup.manifest.model_copy(
        update={"roles": backup.summary.roles, "objects": backup.summary.objects}
    )


def test_plan_restore_sorts_the_targets_objects_and_changes_nothing(
    source_db: PgDatabase, backup: Backup
) -> None:
    damage(source_db)
    before = source_db.fingerprint()
    manifest = with_objects(backup)

    plan = engine_for(source_db).plan_restore(manifest, RestoreOptions())
    kept = engine_for(source_db).plan_restore(manifest, RestoreOptions(keep_extra_objects=True))

    assert source_db.fingerprint() == before
    assert plan.database_exists is True
    assert plan.database == source_db.url
    assert set(plan.dropped) == LATE_OBJECTS
    assert {"schema shop", "table shop.orders", "large objects"} <= set(plan.replaced)
    assert "view shop.customer_totals" not in plan.replaced  # damage() dropped it
    assert plan.kept == []
    assert (set(kept.kept), kept.dropped, kept.replaced) == (LATE_OBJECTS, [], plan.replaced)
    assert [(c.name, c.detail) for c in plan.checks] == [
        ("connect", f"PostgreSQL {plan.server_version.split()[0]} at "
         f"127.0.0.1:{source_db.server.port}, logged in as {source_db.user}"),
        ("server version", f"the backup from PostgreSQL {plan.server_version.split()[0]} loads "
         f"into PostgreSQL {plan.server_version.split()[0]} with pg_restore "
         f"{tools_module.client_version('pg_restore')}"),
        ("privileges", f"{source_db.user} is owner of {source_db.name}: may create schemas and "
         "temporary tables"),
        # schemas public, shop and late_schema, and the large objects: the rest goes with them
        ("privileges", f"{source_db.user} may drop the 4 objects the restore drops or replaces"),
        ("roles", f"the backup's roles exist: {source_db.user}"),
    ]  # fmt: skip


def test_plan_restore_of_a_missing_database_creates_nothing(
    source_db: PgDatabase, backup: Backup, pg_database_factory: PgDatabaseFactory
) -> None:
    # Creating a database needs CREATEDB, for this test only.
    target = pg_database_factory(create=False, owner=source_db.role, createdb=True)

    plan = engine_for(target).plan_restore(with_objects(backup), RestoreOptions())

    assert plan.database_exists is False
    assert (plan.replaced, plan.dropped, plan.kept) == ([], [], [])
    assert f"database {target.name} does not exist: the restore creates it" in plan.notes
    assert not target.exists()


def test_a_dump_from_a_newer_major_version_is_refused_by_the_plan(
    backup: Backup, target_db: PgDatabase
) -> None:
    newer = backup.manifest.model_copy(update={"server_version": "99.1 (Debian 99.1-1)"})
    version = str(target_db.scalar("SHOW server_version")).split()[0]

    with pytest.raises(IncompatibleServer) as caught:
        engine_for(target_db).plan_restore(newer, RestoreOptions())

    assert str(caught.value) == (
        f"the backup is from PostgreSQL 99.1 and 127.0.0.1:{target_db.server.port} runs "
        f"PostgreSQL {version}: a dump does not load into an older major version; restore into "
        "PostgreSQL 99 or newer"
    )


@pytest.fixture
def old_pg_restore_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A pg_restore that says it is 14.11 (as an older worker image's would), first on PATH."""
    tool = tmp_path / "bin" / "pg_restore"
    tool.parent.mkdir()
    tool.write_text("#!/bin/sh\necho 'pg_restore (PostgreSQL) 14.11'\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}:{os.environ['PATH']}")
    tools_module.client_version.cache_clear()
    yield
    tools_module.client_version.cache_clear()


def test_an_archive_newer_than_the_local_pg_restore_is_refused_by_the_plan(
    backup: Backup, target_db: PgDatabase, old_pg_restore_on_path: Any
) -> None:
    dumped = backup.manifest.server_version.split()[0]

    with pytest.raises(IncompatibleServer) as caught:
        engine_for(target_db).plan_restore(backup.manifest, RestoreOptions())

    assert str(caught.value) == (
        f"the backup was written by pg_dump {dumped.split('.')[0]} or newer (from PostgreSQL "
        f"{dumped}), which this worker's pg_restore 14.11 cannot read: use a Lifeboat image with "
        f"PostgreSQL {dumped.split('.')[0]} client tools or newer"
    )


def test_plan_restore_checks_the_password_before_anything_else(
    backup: Backup, target_db: PgDatabase, pg_database_factory: PgDatabaseFactory
) -> None:
    newer = backup.manifest.model_copy(update={"server_version": "99.1"})
    missing = pg_database_factory(create=False, owner=target_db.role)

    for db in (target_db, missing):
        wrong = PostgresEngine(db.database_url(LIFEBOAT_DB_PASSWORD="wrong-password"))
        with pytest.raises(AuthenticationFailed):
            wrong.plan_restore(newer, RestoreOptions())


def test_restore_reports_each_table_done_while_the_data_still_streams(
    pg_database_factory: PgDatabaseFactory,
) -> None:
    """pg_restore's verbose "processing data for table" lines move progress as it goes: the
    small tables are done before the big last one (zz.bulk) has been read."""
    source = pg_database_factory(prefix="src")
    source.execute(
        """
        CREATE SCHEMA a;
        CREATE TABLE a.one (id int); INSERT INTO a.one VALUES (1);
        CREATE TABLE a.two (id int); INSERT INTO a.two VALUES (1), (2);
        CREATE SCHEMA zz;
        CREATE TABLE zz.bulk AS SELECT g AS id, repeat(md5(g::text), 4) AS pad
            FROM generate_series(1, 60000) g;
        """
    )
    backup = take_backup(source)
    target = pg_database_factory(owner=source.role)
    stream = Source(backup.data)
    read_when_done: dict[str, int] = {}

    class WatchingProgress(RecordingProgress):
        def item_done(self, name: str) -> None:
            read_when_done.setdefault(name, stream.position)
            super().item_done(name)

    progress = WatchingProgress("restore")
    engine_for(target).restore(stream, backup.manifest, progress, RestoreOptions())

    assert progress.done == ["a.one", "a.two", "zz.bulk"]
    assert progress.snapshot().items_done == 3
    assert len(backup.data) > 8 * 2**20
    assert read_when_done["a.two"] < len(backup.data) - 4 * 2**20


def test_round_trip_restores_exact_rows_and_drops_objects_made_after_the_backup(
    source_db: PgDatabase, backup: Backup
) -> None:
    original = source_db.fingerprint()
    damage(source_db)
    assert source_db.fingerprint() != original

    result = restore(source_db, backup)

    assert source_db.fingerprint() == original
    assert dict(result.row_counts) == SAMPLE_ROW_COUNTS
    names = source_db.fetch(
        "SELECT c.relname FROM pg_class c WHERE c.relname LIKE 'late%' "
        "UNION ALL SELECT proname FROM pg_proc WHERE proname LIKE 'late%' "
        "UNION ALL SELECT nspname FROM pg_namespace WHERE nspname LIKE 'late%'"
    )
    assert names == []
    # The public schema is back exactly as initdb makes it (owner, privileges, comment).
    assert source_db.fetch(
        "SELECT pg_get_userbyid(nspowner), nspacl::text, obj_description(oid) "
        "FROM pg_namespace WHERE nspname = 'public'"
    ) == [
        (
            "pg_database_owner",
            "{pg_database_owner=UC/pg_database_owner,=U/pg_database_owner}",
            "standard public schema",
        )
    ]


def test_restore_into_another_database_reports_tables_and_counts(
    source_db: PgDatabase, backup: Backup, target_db: PgDatabase
) -> None:
    target_db.execute("CREATE TABLE squatter (id int); INSERT INTO squatter VALUES (1)")
    progress = RecordingProgress("restore")

    result = engine_for(target_db).restore(
        Source(backup.data), backup.manifest, progress, RestoreOptions()
    )

    assert target_db.fingerprint() == source_db.fingerprint()
    assert dict(result.row_counts) == SAMPLE_ROW_COUNTS
    assert sorted(progress.done) == sorted(SAMPLE_ROW_COUNTS)


def test_keep_extra_objects_restores_the_backup_and_keeps_new_objects(
    source_db: PgDatabase, backup: Backup
) -> None:
    original = source_db.fingerprint()
    damage(source_db)

    restore(source_db, backup, keep=True)

    after = source_db.fingerprint()
    for table, rows in original["rows"].items():
        assert after["rows"][table] == rows, table
    assert after["sequences"] == original["sequences"]
    assert "shop.customer_totals" in {f"{s}.{n}" for s, n, _, _ in after["relations"]}
    assert after["rows"]["public.late_table"] == ["(1)", "(2)"]
    assert after["rows"]["shop.late_in_old_schema"] == []
    assert after["rows"]["late_schema.stuff"] == ["(1)"]
    assert ("public", "late_view", "v") in {r[:3] for r in after["relations"]}
    assert ("public", "late_function", "") in {r[:3] for r in after["functions"]}


def test_restore_creates_a_missing_database(
    source_db: PgDatabase, backup: Backup, pg_database_factory: PgDatabaseFactory
) -> None:
    target = pg_database_factory(
        create=False, owner=source_db.role, createdb=True
    )  # needs CREATEDB
    assert not target.exists()

    result = restore(target, backup)

    assert target.exists()
    assert target.fingerprint() == source_db.fingerprint()
    assert any("created database" in note for note in result.notes)


@pytest.fixture
def big_backup(source_db: PgDatabase) -> Backup:
    """A dump of a few MB, so that a failure can hit the load well after the archive's TOC."""
    source_db.execute(
        "CREATE TABLE public.bulk (id int, pad text);"
        "INSERT INTO public.bulk SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 20000) g"
    )
    return take_backup(source_db)


@pytest.mark.parametrize("where", [0.001, 0.5, 1.0], ids=["in-the-toc", "midway", "at-the-end"])
def test_a_source_error_leaves_the_target_exactly_as_it_was(
    source_db: PgDatabase, big_backup: Backup, where: float
) -> None:
    damage(source_db)
    before = source_db.fingerprint()
    progress = RecordingProgress("restore")

    with pytest.raises(ChecksumMismatch):
        engine_for(source_db).restore(
            Source(big_backup.data, fail_after=int(len(big_backup.data) * where)),
            big_backup.manifest,
            progress,
            RestoreOptions(),
        )

    assert source_db.fingerprint() == before
    if where >= 0.5:  # the failure came while the data was being loaded, not before
        assert "public.bulk" in progress.started


def test_a_source_error_leaves_no_created_database_behind(
    source_db: PgDatabase, big_backup: Backup, pg_database_factory: PgDatabaseFactory
) -> None:
    # Creating a database needs CREATEDB, for this test only.
    target = pg_database_factory(create=False, owner=source_db.role, createdb=True)

    with pytest.raises(ChecksumMismatch):
        engine_for(target).restore(
            Source(big_backup.data, fail_after=len(big_backup.data)),
            big_backup.manifest,
            Progress("restore"),
            RestoreOptions(),
        )

    assert not target.exists()


def test_a_truncated_archive_fails_with_a_clear_error_and_changes_nothing(
    source_db: PgDatabase, backup: Backup
) -> None:
    damage(source_db)
    before = source_db.fingerprint()
    truncated = Backup(backup.data[:-200], backup.summary, backup.manifest, [])

    with pytest.raises(RestoreError, match="pg_restore failed") as caught:
        restore(source_db, truncated)

    assert "target was not changed" in str(caught.value)
    assert source_db.fingerprint() == before


def test_garbage_is_refused_before_anything_is_touched(
    backup: Backup, pg_database_factory: PgDatabaseFactory
) -> None:
    target = pg_database_factory(create=False)
    garbage = Backup(b"not a dump at all" * 100, backup.summary, backup.manifest, [])

    with pytest.raises(RestoreError, match="not a readable pg_dump archive"):
        restore(target, garbage)

    assert not target.exists()


def test_sql_failing_late_rolls_everything_back(pg_database_factory: PgDatabaseFactory) -> None:
    """An index built after all data fails only in the target (its function lies about being
    immutable): the whole restore, data included, must roll back."""
    source = pg_database_factory(prefix="src")
    seed_sample_schema(source)
    source.execute(
        f"""
        CREATE FUNCTION public.lying(i int) RETURNS int IMMUTABLE LANGUAGE sql
            AS $$ SELECT CASE WHEN current_database() = '{source.name}' THEN i ELSE 0 END $$;
        CREATE TABLE public.zz_last (id int);
        INSERT INTO public.zz_last VALUES (1), (2);
        CREATE UNIQUE INDEX zz_last_lying ON public.zz_last (public.lying(id));
        """
    )
    backup = take_backup(source)
    target = pg_database_factory(owner=source.role)
    seed_sample_schema(target)
    damage(target)
    before = target.fingerprint()

    with pytest.raises(RestoreError, match="could not create unique index") as caught:
        restore(target, backup)

    assert "rolled back" in str(caught.value)
    assert target.fingerprint() == before


def test_a_wrong_row_count_fails_verification_and_changes_nothing(
    source_db: PgDatabase, backup: Backup
) -> None:
    damage(source_db)
    before = source_db.fingerprint()
    wrong = with_counts(backup.manifest, shop__orders=41)

    with pytest.raises(
        VerificationFailed, match=r"table shop\.orders has 40 rows, the backup has 41"
    ) as info:
        restore(source_db, backup, manifest=wrong)

    assert info.value.mismatches == ["table shop.orders has 40 rows, the backup has 41"]
    assert source_db.fingerprint() == before


def test_a_commit_inside_the_stream_cannot_publish_an_unverified_restore(
    source_db: PgDatabase, backup: Backup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If pg_restore's own COMMIT got through (a bug, a future pg_restore), the commit gate
    refuses it: the counts below are wrong, so publishing anything would be a lie."""
    monkeypatch.setattr(restore_module, "split_final_commit", lambda tail: tail)
    damage(source_db)
    before = source_db.fingerprint()
    wrong = with_counts(backup.manifest, shop__orders=41)

    with pytest.raises(RestoreError, match="refusing to commit a restore"):
        restore(source_db, backup, manifest=wrong)

    assert source_db.fingerprint() == before


def test_a_manifest_table_missing_from_the_dump_fails_verification(
    source_db: PgDatabase, backup: Backup, target_db: PgDatabase
) -> None:
    tables = [*backup.manifest.tables, TableManifest(name="shop.ghost", rows=3)]
    wrong = backup.manifest.model_copy(update={"tables": tables})

    with pytest.raises(VerificationFailed, match=r"table shop\.ghost is missing"):
        restore(target_db, backup, manifest=wrong)

    assert target_db.fingerprint()["relations"] == []


def test_odd_identifiers_and_extensions_round_trip(pg_database_factory: PgDatabaseFactory) -> None:
    source = pg_database_factory(prefix="src")
    odd = '"Odd Schema"."odd.name ""q"""'
    source.execute(
        f"""
        CREATE SCHEMA "Odd Schema";
        CREATE TABLE {odd} ("Col" text);
        INSERT INTO {odd} VALUES ('a'), (NULL), (E'\\\\.');
        CREATE EXTENSION pg_trgm SCHEMA public;
        CREATE TABLE public.words (w text);
        CREATE INDEX words_trgm ON public.words USING gin (w gin_trgm_ops);
        INSERT INTO public.words SELECT 'word ' || g FROM generate_series(1, 10) g;
        """
    )
    backup = take_backup(source)
    assert backup.summary.row_counts == {'Odd Schema.odd.name "q"': 3, "public.words": 10}
    target = pg_database_factory(owner=source.role)
    target.execute("CREATE EXTENSION pg_trgm; CREATE EXTENSION citext")

    restore(target, backup)

    assert target.fingerprint() == source.fingerprint()
    assert target.fetch("SELECT extname FROM pg_extension ORDER BY 1") == [
        ("pg_trgm",),
        ("plpgsql",),
    ]


def test_rows_written_during_the_dump_are_neither_in_the_dump_nor_in_its_counts(
    pg_database: PgDatabase, pg_database_factory: PgDatabaseFactory
) -> None:
    pg_database.execute(
        "CREATE TABLE busy (id bigserial PRIMARY KEY, pad text);"
        "INSERT INTO busy (pad) SELECT repeat('x', 200) FROM generate_series(1, 20000);"
        "CREATE TABLE calm (id int); INSERT INTO calm VALUES (1)"
    )
    engine = engine_for(pg_database)
    info = engine.inspect()
    stop = threading.Event()
    written = threading.Semaphore(0)

    def keep_writing() -> None:
        with pg_database.connect() as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO busy (pad) VALUES ('late'); INSERT INTO calm VALUES (2)")
                written.release()

    out = io.BytesIO()
    writer = threading.Thread(target=keep_writing)
    writer.start()  # commits before, during and after the snapshot is taken
    try:
        assert written.acquire(timeout=10)
        with engine.dump(Progress("backup")) as dump:
            # The snapshot exists once dump() returned: these rows are after it, for certain.
            with pg_database.connect() as conn:
                conn.execute("INSERT INTO busy (pad) SELECT 'mid' FROM generate_series(1, 500)")
            while chunk := dump.read(16 * 1024):
                out.write(chunk)
            summary = dump.finish()
    finally:
        stop.set()
        writer.join()

    late = summary.row_counts["public.busy"] - 20000
    assert late > 0
    assert summary.row_counts == {"public.busy": 20000 + late, "public.calm": 1 + late}
    assert pg_database.row_counts()["public.busy"] > 20000 + 500 + late
    data = out.getvalue()
    target = pg_database_factory(owner=pg_database.role)
    result = restore(
        target, Backup(data, summary, manifest_for(engine, info.version, summary, data), [])
    )
    assert result.row_counts == summary.row_counts
    assert target.row_counts() == summary.row_counts
    assert target.scalar("SELECT count(*) FROM busy WHERE pad = 'mid'") == 0


def test_leaving_the_dump_early_stops_pg_dump(source_db: PgDatabase) -> None:
    engine = engine_for(source_db)

    def upload_fails() -> None:
        with engine.dump(Progress("b")) as dump:
            assert dump.read(100)
            raise RuntimeError("upload failed")

    with pytest.raises(RuntimeError, match="upload failed"):
        upload_fails()

    with source_db.connect() as conn:
        for _ in range(100):  # the server notices the closed sockets within milliseconds
            sessions = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name LIKE 'lifeboat%%'",
                (source_db.name,),
            ).fetchone()
            if sessions == (0,):
                break
            conn.execute("SELECT pg_sleep(0.05)")
        assert sessions == (0,)


def tool_of(argv: list[str]) -> str:
    """The tool an argv runs, past coreutils' `stdbuf` (which block-buffers a dump's output)."""
    if Path(argv[0]).name == "stdbuf":
        argv = [arg for arg in argv[1:] if not arg.startswith("-")]
    return Path(argv[0]).name


def test_passwords_travel_in_the_environment_never_in_argv(
    source_db: PgDatabase, monkeypatch: pytest.MonkeyPatch, target_db: PgDatabase
) -> None:
    seen: list[tuple[list[str], dict[str, str]]] = []
    real = ToolProcess

    def recording(argv: list[str], **kwargs: Any) -> Any:
        seen.append((list(argv), dict(kwargs.get("env") or {})))
        return real(argv, **kwargs)

    for module in (dump_module, restore_module, archive_module):
        monkeypatch.setattr(module, "ToolProcess", recording)
    backup = take_backup(source_db)
    restore(target_db, backup)

    tools = {tool_of(argv) for argv, _ in seen}
    assert {"pg_dump", "pg_restore", "psql"} <= tools
    for argv, env in seen:
        assert not any(source_db.password in arg for arg in argv), argv
        if tool_of(argv) in ("pg_dump", "psql"):
            assert env == {"PGPASSWORD": source_db.password}


def test_a_wrong_password_is_authentication_failed(source_db: PgDatabase) -> None:
    engine = engine_for(source_db, LIFEBOAT_DB_PASSWORD="definitely-wrong-pw")

    with pytest.raises(AuthenticationFailed) as caught:
        engine.inspect()

    message = str(caught.value)
    assert message == (
        f"user '{source_db.user}' was refused by 127.0.0.1:{source_db.server.port}: "
        "check LIFEBOAT_DB_PASSWORD / the secret"
    )
    assert "definitely-wrong-pw" not in message
    with pytest.raises(AuthenticationFailed), engine.dump(Progress("b")):
        pass


def test_a_closed_port_is_unreachable(pg_database: PgDatabase) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = pg_database.url.replace(f":{pg_database.server.port}/", f":{port}/")
    from lifeboat.worker.database_url import parse_database_url

    engine = PostgresEngine(parse_database_url(url, pg_database.env))

    with pytest.raises(DatabaseUnreachable, match=f"cannot reach PostgreSQL at 127.0.0.1:{port}"):
        engine.inspect()


def test_a_missing_database_is_refused_for_backups(
    pg_database_factory: PgDatabaseFactory,
) -> None:
    missing = pg_database_factory(create=False)

    with pytest.raises(DatabaseNotFound, match=f"database '{missing.name}' does not exist"):
        engine_for(missing).preflight_backup()
    with pytest.raises(DatabaseNotFound):
        engine_for(missing).inspect()


_KILLED_WORKER = """
import os, sys, threading
from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.engines.base import RestoreOptions
from lifeboat.worker.engines.postgres import PostgresEngine
from lifeboat.worker.manifest import Manifest
from lifeboat.worker.progress import Progress

data = open(sys.argv[1], "rb").read()
manifest = Manifest.model_validate_json(open(sys.argv[2]).read())

class HangsHalfway:
    pos = 0
    def read(self, n=-1):
        if self.pos >= len(data) // 2:
            print("halfway", flush=True)
            threading.Event().wait()
        chunk = data[self.pos : self.pos + min(n, 65536)]
        self.pos += len(chunk)
        return chunk

engine = PostgresEngine(parse_database_url(os.environ["DATABASE_URL"]))
engine.restore(HangsHalfway(), manifest, Progress("restore"), RestoreOptions())
"""


def test_a_worker_killed_mid_restore_commits_nothing(
    source_db: PgDatabase, big_backup: Backup, tmp_path: Path
) -> None:
    """SIGKILL closes psql's stdin: psql must not take that end of input as a reason to commit."""
    damage(source_db)
    before = source_db.fingerprint()
    (tmp_path / "dump").write_bytes(big_backup.data)
    (tmp_path / "manifest.json").write_text(big_backup.manifest.model_dump_json())
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLED_WORKER,
            str(tmp_path / "dump"),
            str(tmp_path / "manifest.json"),
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, **source_db.env, "DATABASE_URL": source_db.url, "TMPDIR": str(tmp_path)},
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == b"halfway\n"
        assert wait_until_no_sessions(source_db, "lifeboat-restore", expect_some_first=True)
    finally:
        worker.kill()
        worker.wait()

    assert wait_until_no_sessions(source_db, "lifeboat-restore")
    assert source_db.fingerprint() == before


@pytest.mark.parametrize("keep", [False, True], ids=["replace", "keep-extra-objects"])
def test_psql_input_ending_at_a_statement_boundary_commits_nothing(
    source_db: PgDatabase, keep: bool
) -> None:
    """The killed-worker case at its worst: psql's input ends cleanly after complete
    statements (no broken row to make it fail). That must roll back, not commit."""
    before = source_db.fingerprint()
    psql = restore_module.SingleTransactionRestore(engine_for(source_db).connector).start_psql()
    psql.stdin.write(restore_module.restore_preamble(keep_extra_objects=keep))
    psql.stdin.write(b"CREATE TABLE public.half_restored (x int);\n")
    psql.stdin.write(b"INSERT INTO public.half_restored VALUES (1);\n")
    psql.stdin.close()
    psql.wait()

    assert psql.error_lines() == []  # every statement succeeded: nothing forced a rollback
    assert source_db.fingerprint() == before


def wait_until_no_sessions(
    db: PgDatabase, application: str, *, expect_some_first: bool = False
) -> bool:
    """Poll pg_stat_activity (bounded): with expect_some_first, True once such a session has
    run a statement; otherwise True once none is left."""
    with db.admin() as conn:
        for _ in range(200):
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE xact_start IS NOT NULL) "
                "FROM pg_stat_activity WHERE datname = %s AND application_name = %s",
                (db.name, application),
            ).fetchone()
            assert row is not None
            if (expect_some_first and row[1] > 0) or (not expect_some_first and row[0] == 0):
                return True
            conn.execute("SELECT pg_sleep(0.05)")
    return False


def test_ddl_queued_between_the_snapshot_and_pg_dump_fails_the_dump_instead_of_hanging(
    source_db: PgDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ALTER TABLE waiting for the snapshot session's lock makes pg_dump's lock request wait
    behind it: a cycle through the worker that the server cannot see. pg_dump's lock wait
    timeout must turn it into DumpFailed."""
    monkeypatch.setattr(dump_module, "LOCK_WAIT_TIMEOUT", "1s")
    real_open_snapshot = dump_module.open_snapshot
    alter_done = threading.Event()

    def alter_orders() -> None:
        with source_db.connect() as conn:
            conn.execute("ALTER TABLE shop.orders ADD COLUMN late int")
        alter_done.set()

    def open_snapshot_then_queue_ddl(conn: Any) -> Any:
        result = real_open_snapshot(conn)
        threading.Thread(target=alter_orders, daemon=True).start()
        with source_db.connect() as probe:
            for _ in range(200):
                waiting = probe.execute(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted "
                    "AND relation = 'shop.orders'::regclass"
                ).fetchone()
                if waiting != (0,):
                    break
                probe.execute("SELECT pg_sleep(0.02)")
        assert waiting != (0,)
        return result

    monkeypatch.setattr(dump_module, "open_snapshot", open_snapshot_then_queue_ddl)

    with pytest.raises(DumpFailed, match="could not lock every table within 1s"):
        take_backup(source_db)

    assert alter_done.wait(timeout=10)  # and the DDL went ahead once the dump gave up


@pytest.mark.parametrize(
    ("libpq_message", "error_type", "expected"),
    [
        (
            'connection failed: connection to server at "db.shop", port 5432 failed: '
            "Connection refused\n\tIs the server running on that host and accepting TCP/IP?",
            DatabaseUnreachable,
            "cannot reach PostgreSQL at db.shop:5432: Connection refused",
        ),
        (
            "failed to resolve host 'db.shop': [Errno -2] Name or service not known",
            DatabaseUnreachable,
            "cannot reach PostgreSQL at db.shop:5432: failed to resolve host 'db.shop': "
            "[Errno -2] Name or service not known",
        ),
        (
            "connection timeout expired",
            DatabaseUnreachable,
            "cannot reach PostgreSQL at db.shop:5432: connection timeout expired",
        ),
        (
            'connection failed: connection to server at "db.shop", port 5432 failed: '
            'FATAL:  password authentication failed for user "app"',
            AuthenticationFailed,
            "user 'app' was refused by db.shop:5432: check LIFEBOAT_DB_PASSWORD / the secret",
        ),
        (
            'connection failed: connection to server at "db.shop", port 5432 failed: '
            'FATAL:  no pg_hba.conf entry for host "10.0.0.7", user "app", database "shop"',
            AuthenticationFailed,
            "user 'app' was refused by db.shop:5432: no pg_hba.conf entry for host \"10.0.0.7\", "
            'user "app", database "shop"',
        ),
        (
            'connection failed: connection to server at "db.shop", port 5432 failed: '
            'FATAL:  database "shop" does not exist',
            DatabaseNotFound,
            "database 'shop' does not exist on db.shop:5432",
        ),
    ],
)
def test_connection_failures_become_one_clear_line(
    libpq_message: str, error_type: type[Exception], expected: str
) -> None:
    from lifeboat.worker.database_url import parse_database_url

    engine = PostgresEngine(
        parse_database_url("postgresql://app@db.shop/shop", {"LIFEBOAT_DB_PASSWORD": "s3cret"})
    )

    error = engine.connector.connection_error(psycopg.OperationalError(libpq_message), "shop")

    assert type(error) is error_type
    assert str(error) == expected


def test_the_archives_sql_names_owners_grantees_and_extensions() -> None:
    """What pg_restore writes for a TOC, read line by line as pg_dump lays it out."""
    script = "\n".join(
        [
            "CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA public;",
            'CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public;',
            "ALTER SCHEMA shop OWNER TO app;",
            'ALTER TABLE shop."order lines" OWNER TO "App Owner";',
            "ALTER FUNCTION shop.total(customer integer) OWNER TO app;",
            "ALTER LARGE OBJECT 16400 OWNER TO blobs;",
            'CREATE POLICY mine ON shop.orders TO reader, "Auditor" USING ((mine = CURRENT_USER));',
            "GRANT SELECT ON TABLE shop.orders TO reader;",
            "GRANT ALL ON SCHEMA public TO PUBLIC;",
            "REVOKE ALL ON TABLE shop.secrets FROM analyst;",
            "ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA shop GRANT SELECT ON TABLES  TO bi;",
            "SET SESSION AUTHORIZATION delegate;",
            "GRANT SELECT ON TABLE shop.orders TO third WITH GRANT OPTION;",
            "RESET SESSION AUTHORIZATION;",
            "    SELECT 'ALTER TABLE x OWNER TO nobody;';",  # inside a body: not at a line start
        ]
    )

    needs = archive_module.parse_needs(script)

    assert needs.owners == {"app", "App Owner", "blobs"}
    assert needs.grantees == {"reader", "Auditor", "analyst", "bi", "third"}
    assert needs.grantors == {"delegate"}
    assert needs.extensions == ["pgcrypto", "uuid-ossp"]
