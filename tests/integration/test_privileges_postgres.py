"""The least a PostgreSQL role needs, proven on a real server: one test per row of the PostgreSQL
table in docs/privileges.md.

Every role here is made with exactly the grants its row lists and logs in with a password over
TCP, as the worker does. None has SUPERUSER, CREATEROLE or (unless the row says so) CREATEDB.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

from lifeboat.worker.engines.base import DumpSummary, RestoreOptions, RestorePlan, RestoreResult
from lifeboat.worker.engines.postgres import PostgresEngine
from lifeboat.worker.errors import InsufficientPrivilege, RoleMissing
from lifeboat.worker.manifest import Manifest
from lifeboat.worker.progress import Progress
from tests.support.manifests import manifest_for_raw_dump
from tests.support.postgres import (
    SAMPLE_ROW_COUNTS,
    PgDatabase,
    PgDatabaseFactory,
    PgRole,
    PgRoleFactory,
    seed_sample_schema,
)


class Source:
    """The artifact as the pipeline hands it to the engine; remembers whether it was read."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)
        self.bytes_read = 0

    def read(self, n: int = -1, /) -> bytes:
        chunk = self._stream.read(min(n, 64 * 1024) if n > 0 else 64 * 1024)
        self.bytes_read += len(chunk)
        return chunk


class Backup:
    def __init__(self, data: bytes, summary: DumpSummary, manifest: Manifest) -> None:
        self.data = data
        self.summary = summary
        self.manifest = manifest


def engine(db: PgDatabase) -> PostgresEngine:
    return PostgresEngine(db.database_url())


def back_up(db: PgDatabase) -> Backup:
    """What the pipeline does for a backup: preflight, inspect, dump; the manifest it writes."""
    worker = engine(db)
    worker.preflight_backup()
    info = worker.inspect()
    out = io.BytesIO()
    with worker.dump(Progress("backup")) as dump:
        while chunk := dump.read(64 * 1024):
            out.write(chunk)
        summary = dump.finish()
    data = out.getvalue()
    manifest = manifest_for_raw_dump(worker, info.version, summary.row_counts, data, "pg.dump")
    manifest = manifest.model_copy(
        update={"roles": sorted(set(summary.roles)), "objects": sorted(set(summary.objects))}
    )
    return Backup(data, summary, manifest)


def restore(
    db: PgDatabase, backup: Backup, options: RestoreOptions | None = None
) -> tuple[RestorePlan, RestoreResult]:
    """What the pipeline does for a restore: the plan first (before a byte is read), then the
    restore, which reads the artifact to its end."""
    worker = engine(db)
    options = options or RestoreOptions()
    plan = worker.plan_restore(backup.manifest, options)
    source = Source(backup.data)
    result = worker.restore(source, backup.manifest, Progress("restore"), options)
    assert source.bytes_read == len(backup.data)
    return plan, result


def owners_of_restored_objects(db: PgDatabase) -> set[str]:
    """Owners of every schema, relation, function and large object outside the system."""
    rows = db.fetch(
        """
        SELECT pg_get_userbyid(nspowner) FROM pg_namespace
        WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public') AND nspname !~ '^pg_'
        UNION SELECT pg_get_userbyid(c.relowner) FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
          AND c.relkind IN ('r', 'v', 'S', 'm', 'p')
        UNION SELECT pg_get_userbyid(p.proowner) FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
        UNION SELECT pg_get_userbyid(lomowner) FROM pg_largeobject_metadata
        """
    )
    return {str(r[0]) for r in rows}


def grantees_of(db: PgDatabase, table: str) -> set[str]:
    rows = db.fetch(
        "SELECT grantee FROM information_schema.role_table_grants "
        "WHERE table_schema || '.' || table_name = %s",
        (table,),
    )
    return {str(r[0]) for r in rows}


def data_fingerprint(db: PgDatabase) -> dict[str, Any]:
    """The fingerprint without schema owners (a --no-owner restore changes them on purpose)."""
    return {k: v for k, v in db.fingerprint().items() if k != "schemas"}


@pytest.fixture
def shop(pg_database_factory: PgDatabaseFactory) -> PgDatabase:
    """A managed database as a cloud hands it over, filled by its owner: `CREATE ROLE app LOGIN;
    CREATE DATABASE shop OWNER app;` then, as app, the sample schema, a large object and pgcrypto
    (trusted since PostgreSQL 13, so the owner may create it)."""
    db = pg_database_factory(prefix="shop")
    seed_sample_schema(db)
    db.execute(
        """
        CREATE EXTENSION pgcrypto;
        CREATE TABLE shop.tokens (id int PRIMARY KEY, digest bytea NOT NULL);
        INSERT INTO shop.tokens SELECT g, digest('token ' || g, 'sha256')
            FROM generate_series(1, 7) g;
        """
    )
    return db


SHOP_ROWS = {**SAMPLE_ROW_COUNTS, "shop.tokens": 7}


def large_object_of(db: PgDatabase) -> int:
    return int(db.scalar("SELECT min(oid) FROM pg_largeobject_metadata"))


# -- backups ---------------------------------------------------------------------------------


def test_backup_as_a_reader_with_pg_read_all_data(
    shop: PgDatabase, pg_role_factory: PgRoleFactory, pg_database_factory: PgDatabaseFactory
) -> None:
    reader = pg_role_factory(
        "reader",
        grants=["pg_read_all_data", f"SELECT ON LARGE OBJECT {large_object_of(shop)}"],
        database=shop,
    )

    checks = engine(shop.as_role(reader)).preflight_backup()
    backup = back_up(shop.as_role(reader))

    assert [c.name for c in checks] == ["connect", "server version", "privileges"]
    assert f"logged in as {reader.name}" in checks[0].detail
    assert dict(backup.summary.row_counts) == SHOP_ROWS
    assert backup.summary.roles == sorted([shop.user, reader.name])  # the grantee of the LO
    # The reader's backup is the whole database: its owner restores it into a copy.
    copy = pg_database_factory(owner=shop.role)
    restore(copy, backup)
    assert copy.fingerprint() == shop.fingerprint()


def test_backup_as_the_database_owner(
    shop: PgDatabase, pg_database_factory: PgDatabaseFactory
) -> None:
    checks = engine(shop).preflight_backup()
    backup = back_up(shop)

    assert checks[-1].detail == (
        f"{shop.user} can read all 6 tables, 3 sequences and 1 large object of {shop.name}"
    )
    assert backup.summary.roles == [shop.user]
    assert {"table shop.orders", "extension pgcrypto", "large objects"} <= set(
        backup.summary.objects
    )
    copy = pg_database_factory(owner=shop.role)
    restore(copy, backup)
    assert copy.fingerprint() == shop.fingerprint()


def test_backup_of_tables_with_row_level_security_needs_bypassrls(
    shop: PgDatabase, pg_role_factory: PgRoleFactory
) -> None:
    shop.execute(
        "ALTER TABLE shop.orders ENABLE ROW LEVEL SECURITY;"
        "CREATE POLICY small_orders ON shop.orders USING (amount < 10)"
    )
    grants = ["pg_read_all_data", f"SELECT ON LARGE OBJECT {large_object_of(shop)}"]
    reader = pg_role_factory("reader", grants=grants, database=shop)
    bypasser = pg_role_factory("bypasser", grants=grants, attributes=["BYPASSRLS"], database=shop)

    with pytest.raises(InsufficientPrivilege) as caught:
        engine(shop.as_role(reader)).preflight_backup()
    backup = back_up(shop.as_role(bypasser))

    assert str(caught.value) == (
        f"role '{reader.name}' cannot read every row of table shop.orders: row-level security "
        f"applies to it; ALTER ROLE {reader.name} BYPASSRLS (or back up as the table's owner)"
    )
    assert backup.summary.row_counts["shop.orders"] == 40


def test_backup_without_select_on_a_table_names_the_grant(
    shop: PgDatabase, pg_role_factory: PgRoleFactory
) -> None:
    reader = pg_role_factory(
        "reader",
        grants=[
            "USAGE ON SCHEMA shop",
            "SELECT ON ALL TABLES IN SCHEMA public",
            "SELECT ON ALL SEQUENCES IN SCHEMA shop",
            'SELECT ON shop.customers, shop.empty_table, shop."order lines", shop.tokens',
            f"SELECT ON LARGE OBJECT {large_object_of(shop)}",
        ],
        database=shop,
    )

    with pytest.raises(InsufficientPrivilege) as caught:
        engine(shop.as_role(reader)).preflight_backup()

    assert str(caught.value) == (
        f"role '{reader.name}' cannot read table shop.orders: GRANT SELECT ON shop.orders TO "
        f"{reader.name} (or GRANT pg_read_all_data TO {reader.name})"
    )
    assert caught.value.exit_code == 7


def test_backup_without_usage_on_a_schema_names_the_grant(
    shop: PgDatabase, pg_role_factory: PgRoleFactory
) -> None:
    reader = pg_role_factory(
        "reader",
        grants=["SELECT ON ALL TABLES IN SCHEMA public, shop"],
        database=shop,
    )

    with pytest.raises(InsufficientPrivilege) as caught:
        engine(shop.as_role(reader)).preflight_backup()

    assert str(caught.value) == (
        f"role '{reader.name}' cannot use schema shop: GRANT USAGE ON SCHEMA shop TO "
        f"{reader.name} (or GRANT pg_read_all_data TO {reader.name})"
    )


def test_backup_without_select_on_a_large_object_names_the_grant(
    shop: PgDatabase, pg_role_factory: PgRoleFactory
) -> None:
    reader = pg_role_factory("reader", grants=["pg_read_all_data"], database=shop)
    oid = large_object_of(shop)

    with pytest.raises(InsufficientPrivilege) as caught:
        engine(shop.as_role(reader)).preflight_backup()

    assert str(caught.value) == (
        f"role '{reader.name}' cannot read large object {oid}: GRANT SELECT ON LARGE OBJECT "
        f"{oid} TO {reader.name} (for each; pg_read_all_data does not cover large objects, "
        "their owner reads them)"
    )


# -- restores --------------------------------------------------------------------------------


def test_restore_in_place_as_the_database_owner(
    shop: PgDatabase, pg_role_factory: PgRoleFactory
) -> None:
    reader = pg_role_factory("reader")
    shop.execute(f"GRANT SELECT ON shop.orders TO {reader.name}")
    backup = back_up(shop)
    original = shop.fingerprint()
    shop.execute(
        """
        DROP EXTENSION pgcrypto CASCADE;
        DELETE FROM shop.orders WHERE id > 5;
        CREATE SCHEMA late;
        CREATE TABLE late.t (x int);
        CREATE EXTENSION citext;
        SELECT lo_from_bytea(0, '\\x07'::bytea);
        """
    )

    plan, result = restore(shop, backup)

    assert shop.fingerprint() == original
    assert dict(result.row_counts) == SHOP_ROWS
    assert shop.fetch(
        "SELECT extname, pg_get_userbyid(extowner) FROM pg_extension WHERE extname <> 'plpgsql'"
    ) == [("pgcrypto", shop.user)]
    assert owners_of_restored_objects(shop) == {shop.user}
    assert grantees_of(shop, "shop.orders") == {shop.user, reader.name}
    assert [c.name for c in plan.checks] == [
        "connect",
        "server version",
        "privileges",
        "privileges",
        "roles",
    ]
    assert {"schema late", "table late.t", "extension citext"} <= set(plan.dropped)
    assert "table shop.orders" in plan.replaced


@pytest.mark.parametrize(
    "options",
    [
        RestoreOptions(no_owner=True, no_privileges=True),
        RestoreOptions(no_owner=True),
    ],
    ids=["no-owner-no-privileges", "no-owner"],
)
def test_restore_with_no_owner_into_a_database_owned_by_another_role(
    shop: PgDatabase,
    pg_database_factory: PgDatabaseFactory,
    pg_role_factory: PgRoleFactory,
    options: RestoreOptions,
) -> None:
    reader = pg_role_factory("reader")
    shop.execute(f"GRANT SELECT ON shop.orders TO {reader.name}")
    backup = back_up(shop)
    target = pg_database_factory(prefix="other")  # owned by its own role, not shop's owner
    target.execute("CREATE TABLE squatter (id int)")
    before = target.fingerprint()

    with pytest.raises(InsufficientPrivilege) as refused:
        restore(target, backup)  # the backup's objects belong to a role target's owner is not
    assert target.fingerprint() == before
    plan, result = restore(target, backup, options)

    assert str(refused.value) == (
        f"role '{target.user}' cannot give the backup's objects to role {shop.user} (it is not "
        f"a member of it): GRANT {shop.user} TO {target.user} (or restore with --no-owner, so "
        f"that they belong to '{target.user}'); nothing was restored"
    )
    assert data_fingerprint(target) == data_fingerprint(shop)
    assert dict(result.row_counts) == SHOP_ROWS
    assert owners_of_restored_objects(target) == {target.user}
    expected_grantees = {target.user} | (set() if options.no_privileges else {reader.name})
    assert grantees_of(target, "shop.orders") == expected_grantees
    assert f"restored objects will belong to role '{target.user}' (--no-owner)" in plan.notes


def test_restore_with_no_owner_when_the_backups_roles_do_not_exist(
    pg_database_factory: PgDatabaseFactory, pg_role_factory: PgRoleFactory
) -> None:
    """A cluster without the backup's roles: made here by dropping them after the backup."""
    owner = pg_role_factory("gone_owner")
    grantee = pg_role_factory("gone_reader")
    source = pg_database_factory(prefix="gone", owner=owner)
    seed_sample_schema(source)
    source.execute(f"GRANT SELECT ON shop.orders TO {grantee.name}")
    backup = back_up(source)
    original = data_fingerprint(source)
    drop_database_and_roles(source, owner, grantee)
    target = pg_database_factory(prefix="other")
    old_manifest = Backup(
        backup.data, backup.summary, backup.manifest.model_copy(update={"roles": None})
    )

    with pytest.raises(RoleMissing) as missing:
        engine(target).plan_restore(backup.manifest, RestoreOptions())
    with pytest.raises(RoleMissing) as missing_in_archive:
        restore(target, old_manifest)  # older manifests list no roles: the archive is checked
    no_owner_only = engine(target).plan_restore(backup.manifest, RestoreOptions(no_owner=True))
    with pytest.raises(RoleMissing) as grantee_missing:
        restore(target, backup, RestoreOptions(no_owner=True))  # the GRANT still names one
    assert target.fingerprint()["relations"] == []
    plan, result = restore(target, backup, RestoreOptions(no_owner=True, no_privileges=True))

    assert str(missing.value) == (
        f"the backup names roles that do not exist on 127.0.0.1:{target.server.port}: "
        f"{owner.name}, {grantee.name}; create them first (roles belong to the server, not to a "
        "database backup), or restore with --no-owner --no-privileges so that the restored "
        f"objects belong to '{target.user}' and no GRANT names them"
    )
    assert f"{owner.name}, {grantee.name}" in str(missing_in_archive.value)
    assert "--no-owner --no-privileges; nothing was restored" in str(missing_in_archive.value)
    assert any(
        f"{owner.name}, {grantee.name} named by the backup" in n for n in no_owner_only.notes
    )
    assert str(grantee_missing.value) == (
        f"the backup names roles that do not exist on 127.0.0.1:{target.server.port}: "
        f"{grantee.name}; create them first (roles belong to the server, not to a database "
        "backup), or restore with --no-privileges; nothing was restored"
    )
    assert data_fingerprint(target) == original
    assert dict(result.row_counts) == SAMPLE_ROW_COUNTS
    assert owners_of_restored_objects(target) == {target.user}
    assert [c.detail for c in plan.checks if c.name == "roles"] == [
        "not needed: --no-owner --no-privileges"
    ]


def drop_database_and_roles(db: PgDatabase, *roles: PgRole) -> None:
    db.server.drop_database(db.name)
    with db.server.connect() as conn:
        for role in roles:
            conn.execute(f'DROP ROLE "{role.name}"')


def test_restore_creates_the_database_with_createdb(
    shop: PgDatabase, pg_database_factory: PgDatabaseFactory
) -> None:
    backup = back_up(shop)
    # The restore creates the database: its role needs CREATEDB, in this test only.
    target = pg_database_factory(create=False, owner=shop.role, createdb=True)

    plan, result = restore(target, backup)

    assert plan.database_exists is False
    assert [c.detail for c in plan.checks if c.name == "privileges"] == [
        f"{shop.user} may create database {target.name} (CREATEDB)"
    ]
    assert target.owner() == shop.user
    assert target.fingerprint() == shop.fingerprint()
    assert f"created database {target.name}" in result.notes


def test_restore_of_a_missing_database_without_createdb_names_the_grant(
    shop: PgDatabase, pg_database_factory: PgDatabaseFactory
) -> None:
    backup = back_up(shop)
    target = pg_database_factory(create=False, owner=shop.role)

    with pytest.raises(InsufficientPrivilege) as caught:
        engine(target).plan_restore(backup.manifest, RestoreOptions())
    with pytest.raises(InsufficientPrivilege, match="may not create it: ALTER ROLE"):
        engine(target).restore(
            Source(backup.data), backup.manifest, Progress("restore"), RestoreOptions()
        )

    assert str(caught.value) == (
        f"database '{target.name}' does not exist on 127.0.0.1:{target.server.port} and role "
        f"'{shop.user}' may not create it: ALTER ROLE {shop.user} CREATEDB (or create it first: "
        f"CREATE DATABASE {target.name} OWNER {shop.user})"
    )
    assert not target.exists()


def test_restore_into_a_database_the_login_does_not_own_names_the_owner(
    shop: PgDatabase, pg_role_factory: PgRoleFactory
) -> None:
    backup = back_up(shop)
    writer = pg_role_factory(
        "writer", grants=["USAGE, CREATE ON SCHEMA shop", "ALL ON ALL TABLES IN SCHEMA shop"],
        database=shop,
    )  # fmt: skip
    before = shop.fingerprint()

    with pytest.raises(InsufficientPrivilege) as caught:
        engine(shop.as_role(writer)).plan_restore(backup.manifest, RestoreOptions())

    assert str(caught.value) == (
        f"role '{writer.name}' does not own database {shop.name} (its owner is {shop.user}), and "
        f"the restore replaces what is in it: ALTER DATABASE {shop.name} OWNER TO {writer.name} "
        f"(or GRANT {shop.user} TO {writer.name})"
    )
    assert shop.fingerprint() == before


def test_restore_over_an_object_owned_by_another_role_names_it(shop: PgDatabase) -> None:
    backup = back_up(shop)
    with shop.admin() as admin:  # what a DBA (or an extension's installer) left behind
        admin.execute("CREATE SCHEMA audit; CREATE TABLE audit.log (line text)")
    before = shop.fingerprint()

    with pytest.raises(InsufficientPrivilege) as caught:
        engine(shop).plan_restore(backup.manifest, RestoreOptions())
    assert shop.fingerprint() == before
    plan, _ = restore(shop, backup, RestoreOptions(keep_extra_objects=True))

    assert str(caught.value) == (
        f"role '{shop.user}' cannot drop schema audit (owned by lifeboat), which the restore "
        f"drops (it is not in the backup): ALTER SCHEMA audit OWNER TO {shop.user} (or restore "
        "with --keep-extra-objects, which leaves it in place)"
    )
    assert {"schema audit", "table audit.log"} <= set(plan.kept)
    with shop.admin() as admin:
        assert admin.execute("SELECT count(*) FROM audit.log").fetchone() == (0,)
    assert shop.row_counts()["shop.orders"] == 40


def test_restore_of_an_untrusted_extension_needs_a_superuser(shop: PgDatabase) -> None:
    with shop.admin() as admin:  # only a superuser may create an untrusted extension
        admin.execute("CREATE EXTENSION dblink")
    backup = back_up(shop)
    shop.execute("DELETE FROM shop.orders WHERE id > 10")
    before = shop.fingerprint()

    plan = engine(shop).plan_restore(backup.manifest, RestoreOptions())
    with pytest.raises(InsufficientPrivilege) as caught:
        engine(shop).restore(
            Source(backup.data), backup.manifest, Progress("restore"), RestoreOptions()
        )
    assert shop.fingerprint() == before
    restore(shop.as_role(shop.server.superuser), backup)

    assert "extension dblink" in plan.replaced
    assert str(caught.value) == (
        f"role '{shop.user}' may not create extension dblink, which the backup needs (it is not "
        "a trusted extension): restore as a superuser; nothing was restored"
    )
    assert shop.row_counts()["shop.orders"] == 40
    assert shop.scalar("SELECT count(*) FROM pg_extension WHERE extname = 'dblink'") == 1
