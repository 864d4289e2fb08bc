"""The MySQL/MariaDB engine against a real mariadbd: dumps, restores, failures, progress."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.engines.base import RestoreOptions, RestoreResult
from lifeboat.worker.engines.mysql import MariaDBEngine, MySQLEngine, held_objects
from lifeboat.worker.errors import (
    AuthenticationFailed,
    ChecksumMismatch,
    DatabaseNotFound,
    DatabaseUnreachable,
    IncompatibleServer,
    InsufficientPrivilege,
    RestoreError,
    UsageError,
    VerificationFailed,
)
from lifeboat.worker.manifest import Manifest, TableManifest
from lifeboat.worker.progress import Progress
from tests.support.manifests import manifest_for_raw_dump
from tests.support.mariadb import (
    ODD_TABLE,
    PASSWORD,
    TRICKY_BINARY,
    TRICKY_STRINGS,
    MariaDBDatabase,
    MariaDBDatabases,
    MariaDBUser,
    fingerprint,
    quote,
    seed_sample_schema,
)


class RecordingProgress(Progress):
    """A real Progress that also remembers which items the engine reported, in order."""

    def __init__(self, operation: str) -> None:
        super().__init__(operation)
        self.started: list[str] = []
        self.done: list[str] = []
        self.first_item = threading.Event()

    def start_item(self, name: str) -> None:
        self.started.append(name)
        self.first_item.set()
        super().start_item(name)

    def item_done(self, name: str) -> None:
        self.done.append(name)
        super().item_done(name)


class FailingSource:
    """A restore source that raises after `limit` bytes, as a corrupt artifact's reader does."""

    def __init__(self, data: bytes, limit: int) -> None:
        self._data = io.BytesIO(data)
        self._left = limit

    def read(self, n: int = -1, /) -> bytes:
        if self._left <= 0:
            raise ChecksumMismatch("test: the artifact's SHA-256 differs from the manifest")
        chunk = self._data.read(min(n, self._left) if n >= 0 else self._left)
        self._left -= len(chunk)
        return chunk


def engine_for(
    db: MariaDBDatabase, scheme: str = "mariadb", user: MariaDBUser | None = None
) -> MySQLEngine:
    """The engine for `db`, logged in as its own user (ALL on it alone) unless `user`."""
    login = user or db.user
    url = parse_database_url(db.url_for(scheme, login), environ=login.env)
    return MariaDBEngine(url) if url.engine == "mariadb" else MySQLEngine(url)


def take_backup(engine: MySQLEngine, progress: Progress | None = None) -> tuple[bytes, Manifest]:
    """What the pipeline does, minus compression and storage: the raw dump and its manifest."""
    engine.preflight_backup()
    info = engine.inspect()
    chunks = []
    with engine.dump(progress or Progress("backup")) as dump:
        while chunk := dump.read(64 * 1024):
            chunks.append(chunk)
        summary = dump.finish()
    raw = b"".join(chunks)
    manifest = manifest_for_raw_dump(engine, info.version, summary.row_counts, raw, "dump.sql")
    return raw, manifest.model_copy(update={"roles": summary.roles, "objects": summary.objects})


def restore(
    engine: MySQLEngine,
    raw: bytes,
    manifest: Manifest,
    *,
    keep: bool = False,
    progress: Progress | None = None,
) -> RestoreResult:
    return engine.restore(
        io.BytesIO(raw),
        manifest,
        progress or Progress("restore"),
        RestoreOptions(keep_extra_objects=keep),
    )


def damage(db: MariaDBDatabase) -> None:
    """Change data and every kind of object the backup has."""
    db.execute(
        "SET FOREIGN_KEY_CHECKS = 0",
        "DELETE FROM customers WHERE id % 2 = 0",
        "UPDATE customers SET name = 'changed'",
        "DELETE FROM bulk_rows WHERE id > 10",
        "UPDATE attachments SET body = NULL",
        "INSERT INTO empty_things VALUES (1, 'x')",
        f"DROP TABLE {quote(ODD_TABLE)}",
        "CREATE OR REPLACE VIEW big_customers AS SELECT 1 AS id, 'changed' AS name",
        "DROP FUNCTION shout",
        "DROP TRIGGER orders_audit",
        "DROP EVENT nightly_cleanup",
    )


@pytest.fixture
def shop(mariadb_database: MariaDBDatabase) -> MariaDBDatabase:
    seed_sample_schema(mariadb_database)
    return mariadb_database


@pytest.mark.parametrize("scheme", ["mariadb", "mysql"])
def test_round_trip_restores_every_row_and_object(shop: MariaDBDatabase, scheme: str) -> None:
    shop.execute(
        "CREATE SEQUENCE invoice_numbers START WITH 1000",
        "SELECT NEXTVAL(invoice_numbers)",
        "CREATE TABLE history (x INT) WITH SYSTEM VERSIONING",
        "INSERT INTO history VALUES (1), (2)",
    )
    engine = engine_for(shop, scheme)
    assert engine.name == scheme
    before = fingerprint(shop)
    raw, manifest = take_backup(engine)
    damage(shop)
    assert fingerprint(shop) != before

    result = restore(engine, raw, manifest)

    assert fingerprint(shop) == before
    assert dict(result.row_counts) == manifest.row_counts == shop.row_counts() | {"history": 2}
    assert shop.leftovers() == []
    names = {r[0] for r in shop.fetchall("SELECT name FROM customers")}
    assert names == set(TRICKY_STRINGS)
    bodies = {r[0] for r in shop.fetchall("SELECT body FROM attachments")}
    assert bodies == {*TRICKY_BINARY, None}
    # The objects work, not only exist: the trigger fires, the routines and views answer.
    shop.execute("INSERT INTO orders (customer_id, amount, status) VALUES (1, 5, 'paid')")
    assert shop.scalar("SELECT audit FROM orders ORDER BY id DESC LIMIT 1") == (
        "by trigger, status paid"
    )
    assert shop.scalar("SELECT shout('hi')") == "HI!"
    shop.execute("CALL add_order(2)")
    assert shop.scalar("SELECT COUNT(*) FROM big_customers") >= 0
    assert shop.scalar("SELECT NEXTVAL(invoice_numbers)") >= 1001


def test_rows_are_counted_from_the_dump_stream_exactly(shop: MariaDBDatabase) -> None:
    _, manifest = take_backup(engine_for(shop))
    assert manifest.row_counts == shop.row_counts()
    assert manifest.row_counts["empty_things"] == 0
    assert manifest.row_counts[ODD_TABLE] == 2
    assert manifest.row_counts["customers"] == len(TRICKY_STRINGS)


def test_rows_written_during_the_dump_are_not_in_it_nor_in_its_counts(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    engine = engine_for(shop)
    counts_at_start = shop.row_counts()
    progress = RecordingProgress("backup")
    chunks = []
    with engine.dump(progress) as dump:
        chunks.append(dump.read(1))
        # The first "Sending SELECT query" comes after mariadb-dump opened its snapshot.
        assert progress.first_item.wait(timeout=30)
        shop.execute(
            "INSERT INTO bulk_rows (id, payload) SELECT id + 100000, payload FROM bulk_rows",
            "INSERT INTO orders (customer_id, amount) VALUES (1, 1), (2, 2)",
        )
        while chunk := dump.read(64 * 1024):
            chunks.append(chunk)
        summary = dump.finish()
    assert shop.row_counts()["bulk_rows"] == 2 * counts_at_start["bulk_rows"]
    assert dict(summary.row_counts) == counts_at_start

    copy = mariadb_databases.create("copy", user=shop.user)
    raw = b"".join(chunks)
    _, manifest = take_backup(engine_for(shop))  # a valid manifest shape...
    manifest = manifest.model_copy(
        update={"tables": [TableManifest(name=t, rows=n) for t, n in summary.row_counts.items()]}
    )
    result = restore(engine_for(copy), raw, manifest)  # ...verified against the stream's counts
    assert dict(result.row_counts) == counts_at_start


def test_objects_created_after_the_backup_are_dropped(shop: MariaDBDatabase) -> None:
    engine = engine_for(shop)
    before = fingerprint(shop)
    raw, manifest = take_backup(engine)
    add_later_objects(shop)

    restore(engine, raw, manifest)

    assert fingerprint(shop) == before
    assert shop.leftovers() == []


def add_later_objects(db: MariaDBDatabase) -> None:
    db.execute(
        "CREATE TABLE late_table (id INT PRIMARY KEY)",
        "INSERT INTO late_table VALUES (1), (2), (3)",
        "CREATE VIEW late_view AS SELECT id FROM late_table",
        "CREATE PROCEDURE late_procedure() SELECT 1",
        "CREATE FUNCTION late_function() RETURNS INT DETERMINISTIC RETURN 1",
        "CREATE EVENT late_event ON SCHEDULE EVERY 1 HOUR DISABLE DO SELECT 1",
        "CREATE TRIGGER late_trigger BEFORE UPDATE ON late_table FOR EACH ROW SET NEW.id = 1",
        "SET FOREIGN_KEY_CHECKS = 0",
        "DELETE FROM customers WHERE id > 3",
    )


def test_keep_extra_objects_keeps_what_the_backup_does_not_have(shop: MariaDBDatabase) -> None:
    engine = engine_for(shop)
    before = fingerprint(shop)
    raw, manifest = take_backup(engine)
    add_later_objects(shop)
    later = {k: v for k, v in fingerprint(shop).items() if "late_" in k}
    assert len(later) == 7  # table, rows, view, procedure, function, event, trigger

    restore(engine, raw, manifest, keep=True)

    after = fingerprint(shop)
    assert {k: v for k, v in after.items() if "late_" not in k} == before
    assert {k: v for k, v in after.items() if "late_" in k} == later
    assert shop.leftovers() == []


def test_restore_into_a_missing_database_creates_it(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    raw, manifest = take_backup(engine_for(shop))
    target = mariadb_databases.reserve("new", user=shop.user)
    assert not target.exists()

    result = restore(engine_for(target), raw, manifest)

    assert target.exists()
    assert fingerprint(target) == fingerprint(shop)
    assert dict(result.row_counts) == manifest.row_counts
    assert target.leftovers() == []


@pytest.mark.parametrize("where", ["middle", "end"])
def test_a_source_that_fails_leaves_the_target_untouched(shop: MariaDBDatabase, where: str) -> None:
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    damage(shop)
    before = fingerprint(shop)
    # "end": every byte was loaded into the shadow, then the checksum turned out wrong.
    limit = len(raw) // 2 if where == "middle" else len(raw)

    with pytest.raises(ChecksumMismatch):
        engine.restore(FailingSource(raw, limit), manifest, Progress("restore"), RestoreOptions())

    assert fingerprint(shop) == before
    assert shop.leftovers() == []


def test_a_source_that_fails_leaves_a_missing_target_missing(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    raw, manifest = take_backup(engine_for(shop))
    target = mariadb_databases.reserve("new", user=shop.user)
    engine = engine_for(target)
    with pytest.raises(ChecksumMismatch):
        engine.restore(FailingSource(raw, len(raw)), manifest, Progress("r"), RestoreOptions())
    assert not target.exists()
    assert target.leftovers() == []


def test_sql_that_fails_late_leaves_the_target_untouched(shop: MariaDBDatabase) -> None:
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    damage(shop)
    before = fingerprint(shop)
    # The last table's INSERT twice: the client fails on a duplicate key at the end of the data.
    start = raw.rindex(b"INSERT INTO ", 0, raw.rindex(b"UNLOCK TABLES;"))
    end = raw.index(b";\n", start) + 2
    broken = raw[:end] + raw[start:end] + raw[end:]

    with pytest.raises(RestoreError, match=r"Duplicate entry") as caught:
        restore(engine, broken, manifest)

    assert "target was not touched" in str(caught.value)
    assert fingerprint(shop) == before
    assert shop.leftovers() == []


def test_a_statement_outside_any_table_is_never_run(shop: MariaDBDatabase) -> None:
    """Statements in the staged stream run against the target database itself: only what
    mariadb-dump writes there (session settings) may pass."""
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    before = fingerprint(shop)
    hostile = raw + b"DROP TABLE customers;\n"

    with pytest.raises(RestoreError, match=r"unexpected statement.*DROP TABLE customers"):
        restore(engine, hostile, manifest)

    assert fingerprint(shop) == before
    assert shop.leftovers() == []


def test_a_truncated_dump_is_refused(shop: MariaDBDatabase) -> None:
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    before = fingerprint(shop)
    cut = raw[: raw.index(b"-- Dumping routines")]
    with pytest.raises(RestoreError, match="truncated"):
        restore(engine, cut, manifest)
    assert fingerprint(shop) == before
    assert shop.leftovers() == []


def test_a_wrong_row_count_in_the_manifest_fails_verification(shop: MariaDBDatabase) -> None:
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    damage(shop)
    before = fingerprint(shop)
    tables = [
        TableManifest(name=t.name, rows=t.rows + 1 if t.name == "orders" else t.rows)
        for t in manifest.tables
    ]
    lying = manifest.model_copy(update={"tables": tables})

    with pytest.raises(
        VerificationFailed, match="table orders: backup has 41 rows, loaded 40"
    ) as info:
        restore(engine, raw, lying)
    assert info.value.mismatches == ["table orders: backup has 41 rows, loaded 40"]

    assert fingerprint(shop) == before
    assert shop.leftovers() == []


def test_a_failure_after_the_swap_is_rolled_back(
    shop: MariaDBDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    damage(shop)
    shop.execute(
        "CREATE TRIGGER orders_other BEFORE UPDATE ON orders FOR EACH ROW SET NEW.audit = 'u'",
        "CREATE OR REPLACE PROCEDURE add_order(IN cid INT) SELECT cid",
        "CREATE TABLE late_table (id INT)",
        "CREATE EVENT late_event ON SCHEDULE EVERY 1 HOUR DISABLE DO SELECT 1",
    )
    before = fingerprint(shop)

    run = held_objects.HeldObjects.run

    def events_fail(
        self: held_objects.HeldObjects,
        session: object,
        section: held_objects.HeldSection,
        *,
        mariadb_server: bool,
    ) -> None:
        if section.kind == held_objects.EVENTS:
            raise RestoreError("test: creating the events failed")
        run(self, session, section, mariadb_server=mariadb_server)  # type: ignore[arg-type]

    monkeypatch.setattr(held_objects.HeldObjects, "run", events_fail)
    with pytest.raises(RestoreError, match="creating the events failed; rolled back"):
        restore(engine, raw, manifest)

    assert fingerprint(shop) == before
    assert shop.leftovers() == []


def test_keeping_a_table_whose_foreign_key_points_at_a_replaced_table_is_refused(
    shop: MariaDBDatabase,
) -> None:
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    shop.execute(
        "CREATE TABLE reviews (id INT PRIMARY KEY, customer_id INT,"
        " CONSTRAINT reviews_customer FOREIGN KEY (customer_id) REFERENCES customers (id))"
    )
    before = fingerprint(shop)
    with pytest.raises(RestoreError, match=r"reviews_customer of .*reviews points at table cust"):
        restore(engine, raw, manifest, keep=True)
    assert fingerprint(shop) == before
    assert shop.leftovers() == []


def test_triggers_named_with_their_database_stay_inside_the_restored_one(
    mariadb_databases: MariaDBDatabases,
) -> None:
    source = mariadb_databases.create("src")
    source.execute(
        "CREATE TABLE t (id INT, note VARCHAR(20))",
        f"CREATE TRIGGER {quote(source.name)}.stamp BEFORE INSERT ON {quote(source.name)}.t"
        " FOR EACH ROW SET NEW.note = 'stamped'",
    )
    raw, manifest = take_backup(engine_for(source))
    assert f"TRIGGER {quote(source.name)}.stamp".encode() in raw  # mariadb-dump keeps it
    source_before = fingerprint(source)
    copy = mariadb_databases.reserve("copy", user=source.user)

    restore(engine_for(copy), raw, manifest)
    restore(engine_for(source), raw, manifest)

    copy.execute("INSERT INTO t (id) VALUES (1)")
    assert copy.fetchall("SELECT note FROM t") == [("stamped",)]
    assert fingerprint(source) == source_before


def test_progress_reports_every_table_on_dump_and_restore(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    engine = engine_for(shop)
    tables = engine.inspect().tables
    assert sorted(tables) == sorted(shop.row_counts())
    dumping = RecordingProgress("backup")
    raw, manifest = take_backup(engine, dumping)
    restoring = RecordingProgress("restore")

    copy = mariadb_databases.reserve("copy", user=shop.user)
    restore(engine_for(copy), raw, manifest, progress=restoring)

    assert sorted(dumping.done) == sorted(tables)
    assert sorted(dumping.started) == sorted(tables)
    assert restoring.done == dumping.done
    assert restoring.snapshot().items_done == len(tables)


def test_inspect_reads_version_tables_and_size(shop: MariaDBDatabase) -> None:
    shop.execute("ANALYZE TABLE bulk_rows")  # InnoDB updates its size statistics lazily
    info = engine_for(shop).inspect()
    assert "MariaDB" in info.version
    assert "customer_totals" not in info.tables  # views are not tables
    assert info.estimated_bytes > 1_000_000  # bulk_rows alone holds more than a megabyte


def test_a_wrong_password_is_an_authentication_failure(mariadb_database: MariaDBDatabase) -> None:
    url = parse_database_url(mariadb_database.url, environ={"LIFEBOAT_DB_PASSWORD": "wrong"})
    with pytest.raises(AuthenticationFailed) as caught:
        MariaDBEngine(url).inspect()
    message = str(caught.value)
    assert f"'{mariadb_database.user.name}'" in message
    assert "LIFEBOAT_DB_PASSWORD" in message
    assert "wrong" not in message.replace("(wrong password?)", "")
    assert PASSWORD not in message


def test_a_closed_port_is_unreachable(mariadb_database: MariaDBDatabase) -> None:
    with closed_port() as port:
        url = parse_database_url(
            f"mariadb://lifeboat@127.0.0.1:{port}/x", environ=mariadb_database.env
        )
        with pytest.raises(DatabaseUnreachable, match=f"127.0.0.1:{port}"):
            MariaDBEngine(url).inspect()


def test_an_unknown_database_is_a_database_error(mariadb_databases: MariaDBDatabases) -> None:
    missing = mariadb_databases.reserve("missing")
    with pytest.raises(DatabaseNotFound, match=f"database '{missing.name}' does not exist"):
        engine_for(missing).inspect()


def test_a_refusal_names_the_database_the_server_refused(
    mariadb_databases: MariaDBDatabases,
) -> None:
    mine = mariadb_databases.create("mine")
    theirs = mariadb_databases.create("theirs")
    with pytest.raises(InsufficientPrivilege) as caught:
        engine_for(theirs, user=mine.user).inspect()
    message = str(caught.value)
    assert f"refused user '{mine.user.name}' on database '{theirs.name}'" in message
    assert f"database '{mine.name}'" not in message


def test_a_failing_dump_reports_the_tools_error(mariadb_databases: MariaDBDatabases) -> None:
    missing = mariadb_databases.reserve("missing")
    with engine_for(missing).dump(Progress("backup")) as dump:
        while dump.read(65536):
            pass
        with pytest.raises(
            DatabaseNotFound, match=f"mariadb-dump failed: database '{missing.name}' does not"
        ):
            dump.finish()


def test_leaving_the_dump_early_kills_the_tool(shop: MariaDBDatabase) -> None:
    def dump_tools() -> list[psutil.Process]:
        return [p for p in psutil.Process().children(recursive=True) if "dump" in p.name()]

    def fail_while_dumping() -> None:
        with engine_for(shop).dump(Progress("backup")) as dump:
            assert dump.read(100)
            assert len(dump_tools()) == 1
            raise KeyError("the pipeline failed")

    with pytest.raises(KeyError):
        fail_while_dumping()
    assert wait_until(lambda: not dump_tools())


def test_the_password_never_reaches_argv(shop: MariaDBDatabase) -> None:
    with engine_for(shop).dump(Progress("backup")) as dump:
        assert dump.read(100)
        (tool,) = [p for p in psutil.Process().children(recursive=True) if "dump" in p.name()]
        assert PASSWORD not in " ".join(tool.cmdline())
        while dump.read(65536):
            pass
        dump.finish()


def test_foreign_keys_keep_their_names_whoever_named_them(shop: MariaDBDatabase) -> None:
    """InnoDB constraint names are unique per database: the staged tables carry names of their
    own until the swap, and every foreign key ends up named as in the backup."""
    shop.execute(
        "CREATE TABLE order_notes (id INT PRIMARY KEY, order_id INT, note_of INT,"
        " FOREIGN KEY (order_id) REFERENCES orders (id) ON DELETE CASCADE,"
        " CONSTRAINT notes_self FOREIGN KEY (note_of) REFERENCES order_notes (id))",
        "INSERT INTO order_notes VALUES (1, 1, NULL), (2, 1, 1)",
    )
    engine = engine_for(shop)
    before = fingerprint(shop)
    assert "CONSTRAINT `order_notes_ibfk_1`" in before["table order_notes"]
    raw, manifest = take_backup(engine)
    damage(shop)

    restore(engine, raw, manifest)

    assert fingerprint(shop) == before
    assert shop.leftovers() == []
    with pytest.raises(Exception, match="foreign key constraint fails"):
        shop.execute("INSERT INTO order_notes VALUES (3, 999, NULL)")


def test_a_kept_table_holding_a_foreign_key_name_the_backup_needs_is_refused(
    shop: MariaDBDatabase,
) -> None:
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    shop.execute(
        "SET FOREIGN_KEY_CHECKS = 0",
        "ALTER TABLE orders DROP FOREIGN KEY orders_customer",
        "CREATE TABLE reviews (id INT PRIMARY KEY, order_id INT,"
        " CONSTRAINT orders_customer FOREIGN KEY (order_id) REFERENCES reviews (id))",
    )
    before = fingerprint(shop)
    with pytest.raises(RestoreError, match="table reviews, which the restore keeps, has a foreign"):
        restore(engine, raw, manifest, keep=True)
    assert fingerprint(shop) == before
    assert shop.leftovers() == []


def test_plan_restore_says_what_a_restore_would_do_and_does_nothing(
    shop: MariaDBDatabase,
) -> None:
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    add_later_objects(shop)
    before = fingerprint(shop)
    late = {
        "table late_table",
        "view late_view",
        "procedure late_procedure",
        "function late_function",
        "event late_event",
        "trigger late_trigger",
    }
    backup_objects = {
        "table customers",
        "table orders",
        "table attachments",
        "table empty_things",
        f"table {ODD_TABLE}",
        "table bulk_rows",
        "view customer_totals",
        "view big_customers",
        "procedure add_order",
        "function shout",
        "trigger orders_audit",
        "event nightly_cleanup",
    }
    assert set(manifest.objects or ()) == backup_objects

    plan = engine.plan_restore(manifest, RestoreOptions())
    kept = engine.plan_restore(manifest, RestoreOptions(keep_extra_objects=True))

    assert fingerprint(shop) == before
    assert plan.database == shop.name
    assert plan.database_exists
    assert "MariaDB" in plan.server_version
    assert set(plan.replaced) == backup_objects == set(kept.replaced)
    assert set(plan.dropped) == late
    assert plan.kept == []
    assert set(kept.kept) == late
    assert kept.dropped == []
    assert [c.name for c in plan.checks] == [
        "connect",
        "server version",
        "privileges",
        "definers",
        "objects",
    ]
    assert f"logged in as {shop.user.label}" in plan.checks[0].detail
    # What the plans promised is what the restores do.
    restore(engine, raw, manifest, keep=True)
    assert {k for k in fingerprint(shop) if "late_" in k} == late | {"rows late_table"}
    restore(engine, raw, manifest)
    assert not [k for k in fingerprint(shop) if "late_" in k]


def test_plan_restore_of_a_missing_database_creates_nothing(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    _, manifest = take_backup(engine_for(shop))
    target = mariadb_databases.reserve("new", user=shop.user)

    plan = engine_for(target).plan_restore(manifest, RestoreOptions())

    assert not plan.database_exists
    assert not target.exists()
    assert plan.replaced == plan.dropped == plan.kept == []
    assert f"database {target.name} does not exist: the restore creates it" in plan.notes
    assert f"may create {target.name}" in plan.checks[2].detail


@pytest.mark.parametrize(
    ("backup_version", "refused"),
    [
        ("8.0.36", "cannot load a MySQL 8 dump"),
        ("8.4.2-log", "cannot load a MySQL 8 dump"),
        ("11.4.2-MariaDB-ubu2404", "newer than the target's MariaDB 10.11"),
        ("5.5.5-11.8.1-MariaDB", "newer than the target's MariaDB 10.11"),
        ("10.6.18-MariaDB-0+deb12u1", None),
        ("10.11.2-MariaDB", None),
        ("5.7.44-log", None),
    ],
)
def test_plan_restore_refuses_a_backup_the_server_cannot_load(
    shop: MariaDBDatabase, backup_version: str, refused: str | None
) -> None:
    engine = engine_for(shop)
    _, manifest = take_backup(engine)
    claimed = manifest.model_copy(update={"server_version": backup_version})
    if refused is None:
        plan = engine.plan_restore(claimed, RestoreOptions())
        assert plan.checks[1].name == "server version"
        return
    with pytest.raises(IncompatibleServer, match=refused) as caught:
        engine.plan_restore(claimed, RestoreOptions())
    assert backup_version in str(caught.value)


@pytest.mark.parametrize("option", ["no_owner", "no_privileges"])
def test_postgresql_options_are_refused(shop: MariaDBDatabase, option: str) -> None:
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    options = RestoreOptions(**{option: True})
    flag = "--" + option.replace("_", "-")
    with pytest.raises(UsageError, match=f"{flag}.*PostgreSQL options"):
        engine.plan_restore(manifest, options)
    with pytest.raises(UsageError, match=f"{flag}.*PostgreSQL options"):
        engine.restore(io.BytesIO(raw), manifest, Progress("restore"), options)


def test_the_dump_names_its_objects_and_their_definers(shop: MariaDBDatabase) -> None:
    shop.root_execute("CREATE DEFINER = 'someone'@'10.0.%' VIEW by_someone AS SELECT 1 AS one")
    engine = engine_for(shop)
    with engine.dump(Progress("backup")) as dump:
        while dump.read(65536):
            pass
        summary = dump.finish()
    assert summary.roles == sorted([shop.user.label, "someone@10.0.%"])
    assert "view by_someone" in summary.objects
    assert {"trigger orders_audit", "event nightly_cleanup", "function shout"} <= set(
        summary.objects
    )


def test_inspect_estimates_every_table_under_its_progress_name(shop: MariaDBDatabase) -> None:
    shop.execute("ANALYZE TABLE bulk_rows")
    engine = engine_for(shop)
    info = engine.inspect()
    dumping = RecordingProgress("backup")
    take_backup(engine, dumping)
    assert set(info.table_bytes) == set(dumping.done) == set(info.tables)
    assert sum(info.table_bytes.values()) == info.estimated_bytes
    assert info.table_bytes[ODD_TABLE] > 0
    assert info.table_bytes["bulk_rows"] > 1_000_000


def quote_b(name: str) -> bytes:
    return quote(name).encode()


class PositionedSource:
    """A source that knows how many bytes were read, to see when progress moved."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    @property
    def position(self) -> int:
        return self._data.tell()

    def read(self, n: int = -1, /) -> bytes:
        return self._data.read(min(n, 64 * 1024) if n >= 0 else 64 * 1024)


def test_restore_progress_counts_each_table_as_its_data_goes_by(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    raw, manifest = take_backup(engine_for(shop))
    source = PositionedSource(raw)
    seen: list[tuple[str, int, int]] = []

    class Watching(Progress):
        def item_done(self, name: str) -> None:
            super().item_done(name)
            seen.append((name, source.position, self.snapshot().items_done))

    progress = Watching("restore")
    progress.set_totals(items_total=len(manifest.tables))
    target = mariadb_databases.reserve("copy", user=shop.user)
    target_engine = engine_for(target)
    target_engine.restore(source, manifest, progress, RestoreOptions())

    in_dump_order = sorted(
        manifest.row_counts, key=lambda t: raw.index(b"-- Dumping data for table " + quote_b(t))
    )
    assert [name for name, _, _ in seen] == in_dump_order
    assert [done for _, _, done in seen] == list(range(1, len(manifest.tables) + 1))
    positions = [position for _, position, _ in seen]
    assert positions == sorted(positions)
    assert positions[0] < len(raw) // 2  # the first table was done long before the end


RESTORE_WORKER = """
import os, sys
from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.engines.base import RestoreOptions
from lifeboat.worker.engines.mysql import MariaDBEngine
from lifeboat.worker.manifest import Manifest
from lifeboat.worker.progress import Progress

engine = MariaDBEngine(parse_database_url(sys.argv[1], environ=os.environ))
manifest = Manifest.model_validate_json(sys.argv[2])
engine.restore(sys.stdin.buffer, manifest, Progress("restore"), RestoreOptions())
"""


def staged_tables(db: MariaDBDatabase) -> list[str]:
    return [entry for entry in db.leftovers() if entry.startswith("table __lifeboat_")]


def test_staged_tables_of_a_killed_restore_are_removed_by_the_next_one(
    shop: MariaDBDatabase,
) -> None:
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    damage(shop)
    before = fingerprint(shop)
    worker = subprocess.Popen(
        [sys.executable, "-c", RESTORE_WORKER, shop.url, manifest.model_dump_json()],
        stdin=subprocess.PIPE,
        env={**os.environ, **shop.env},
        start_new_session=True,
    )
    assert worker.stdin is not None
    try:
        # Everything up to the data of `customers`: attachments and bulk_rows are staged by then.
        worker.stdin.write(raw[: raw.index(b"-- Dumping data for table `customers`")])
        worker.stdin.flush()
        assert wait_until(lambda: any("bulk_rows" in t for t in staged_tables(shop)), 60)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)  # the worker dies as its Pod would
        worker.wait(timeout=60)
        worker.stdin.close()
    assert wait_until(lambda: not sessions_of(shop), 60), "the killed restore's client lingers"

    assert fingerprint(shop) == before  # the target's own tables were never touched
    left = staged_tables(shop)
    assert left
    plan = engine.plan_restore(manifest, RestoreOptions())
    assert any("staged tables of an interrupted restore" in n for n in plan.notes)

    result = restore(engine, raw, manifest)

    assert shop.leftovers() == []
    assert any("removed the staged tables an interrupted restore left" in n for n in result.notes)
    assert shop.row_counts() == manifest.row_counts


def test_parked_tables_of_an_interrupted_swap_are_kept_and_reported(
    shop: MariaDBDatabase,
) -> None:
    """A restore killed after its RENAME leaves the target's previous tables parked: they may
    hold data someone needs, so later restores report them and never drop them."""
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    parked = "__lifeboat_0badc0_p3_orders"
    shop.execute(
        f"CREATE TABLE {quote(parked)} (id INT PRIMARY KEY, amount DECIMAL(12,2))",
        f"INSERT INTO {quote(parked)} VALUES (1, 9.99), (2, 19.99)",
    )
    before = fingerprint(shop)

    plan = engine.plan_restore(manifest, RestoreOptions())
    result = restore(engine, raw, manifest)

    for notes in (plan.notes, result.notes):
        (note,) = [n for n in notes if parked in n]
        assert "are kept" in note
        assert f"DROP TABLE {quote(parked)}" in note
    assert f"table {parked}" not in plan.dropped
    assert shop.leftovers() == [f"table {parked}"]
    assert str(shop.scalar(f"SELECT SUM(amount) FROM {quote(parked)}")) == "29.98"
    assert fingerprint(shop) == before


def sessions_of(db: MariaDBDatabase) -> int:
    with contextlib.closing(db.server.root()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s",
            (db.user.name,),
        )
        row = cur.fetchone()
    return int(row[0]) if row else 0


# -- helpers -------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.02)
    return True


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port nothing listens on: bound (so nobody else takes it) but never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])
