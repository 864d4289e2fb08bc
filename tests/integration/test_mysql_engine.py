"""The MySQL/MariaDB engine against a real mariadbd: dumps, restores, failures, progress."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time
from collections.abc import Callable, Iterator

import psutil
import pytest

from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.engines import mysql as mysql_engine
from lifeboat.worker.engines.base import RestoreOptions, RestoreResult
from lifeboat.worker.engines.mysql import MariaDBEngine, MySQLEngine
from lifeboat.worker.errors import (
    AuthenticationFailed,
    ChecksumMismatch,
    DatabaseError,
    DatabaseUnreachable,
    DumpFailed,
    RestoreError,
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


def engine_for(db: MariaDBDatabase, scheme: str = "mariadb") -> MySQLEngine:
    url = parse_database_url(db.url_for(scheme), environ=db.env)
    return MariaDBEngine(url) if url.engine == "mariadb" else MySQLEngine(url)


def take_backup(engine: MySQLEngine, progress: Progress | None = None) -> tuple[bytes, Manifest]:
    """What the pipeline does, minus compression and storage: the raw dump and its manifest."""
    info = engine.inspect()
    chunks = []
    with engine.dump(progress or Progress("backup")) as dump:
        while chunk := dump.read(64 * 1024):
            chunks.append(chunk)
        summary = dump.finish()
    raw = b"".join(chunks)
    manifest = manifest_for_raw_dump(engine, info.version, summary.row_counts, raw, "dump.sql")
    return raw, manifest


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

    copy = mariadb_databases.create("copy")
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
    target = mariadb_databases.reserve("new")
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
    target = mariadb_databases.reserve("new")
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
    broken = raw + b"INSERT INTO no_such_table VALUES (1);\n"

    with pytest.raises(RestoreError, match=r"no_such_table.*doesn't exist") as caught:
        restore(engine, broken, manifest)

    assert "target was not touched" in str(caught.value)
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

    def events_fail(self: object, database: str, sql: bytes) -> None:
        raise RestoreError("test: creating the events failed")

    monkeypatch.setattr(mysql_engine._Restore, "_replay", events_fail)
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
    copy = mariadb_databases.reserve("copy")

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

    restore(engine_for(mariadb_databases.reserve("copy")), raw, manifest, progress=restoring)

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
    assert "'lifeboat'" in message
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
    with pytest.raises(DatabaseError, match=f"database '{missing.name}' does not exist"):
        engine_for(missing).inspect()


def test_a_failing_dump_reports_the_tools_error(mariadb_databases: MariaDBDatabases) -> None:
    missing = mariadb_databases.reserve("missing")
    with engine_for(missing).dump(Progress("backup")) as dump:
        while dump.read(65536):
            pass
        with pytest.raises(DumpFailed, match=r"mariadb-dump failed: .*Unknown database"):
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
