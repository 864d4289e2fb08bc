"""docs/privileges.md, MySQL and MariaDB: each row of its table, proven against a real mariadbd.

Every test logs in as a user made with exactly the grants its row lists (never a superuser), runs
the operation, and fails if Lifeboat needs one privilege more; a missing privilege must be refused
before any data moves, with one line naming the privilege, the object and the GRANT that fixes it.
"""

from __future__ import annotations

import io

import pytest

from lifeboat.worker.engines.base import RestoreOptions
from lifeboat.worker.engines.mysql.connection import Account
from lifeboat.worker.engines.mysql.privileges import (
    BACKUP_PRIVILEGES,
    RESTORE_PRIVILEGES,
    Grants,
)
from lifeboat.worker.errors import (
    DumpFailed,
    InsufficientPrivilege,
    RoleMissing,
)
from lifeboat.worker.progress import Progress
from tests.integration.test_mysql_engine import (
    add_later_objects,
    damage,
    engine_for,
    restore,
    take_backup,
)
from tests.support.mariadb import (
    MariaDBDatabase,
    MariaDBDatabases,
    MariaDBUser,
    fingerprint,
    quote,
    seed_sample_schema,
)


@pytest.fixture
def shop(mariadb_database: MariaDBDatabase) -> MariaDBDatabase:
    """The sample schema, made by the database's own user (ALL on it alone): it is the DEFINER
    of the views, routines, triggers and events."""
    seed_sample_schema(mariadb_database, bulk_rows=200)
    return mariadb_database


def grants_of(db: MariaDBDatabase, user: MariaDBUser) -> list[str]:
    with db.server.root() as conn, conn.cursor() as cur:
        cur.execute(f"SHOW GRANTS FOR {user.account}")
        return [str(r[0]).split(" IDENTIFIED BY")[0] for r in cur.fetchall()]


def dump_summary_objects(db: MariaDBDatabase, user: MariaDBUser) -> list[str]:
    with engine_for(db, user=user).dump(Progress("backup")) as dump:
        while dump.read(65536):
            pass
        return list(dump.finish().objects)


# -- backups ---------------------------------------------------------------------------------------


def test_backup_with_select_show_view_trigger_and_event(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    backup = mariadb_databases.create_user(
        None, f"{', '.join(BACKUP_PRIVILEGES)} ON {quote(shop.name)}.*"
    )
    assert grants_of(shop, backup) == [
        f"GRANT USAGE ON *.* TO `{backup.name}`@`%`",
        f"GRANT SELECT, SHOW VIEW, EVENT, TRIGGER ON `{shop.name}`.* TO `{backup.name}`@`%`",
    ]
    # On MariaDB 10.11 a login reads a routine's body only if it is its DEFINER.
    shop.root_execute(
        "DROP PROCEDURE add_order",
        f"CREATE DEFINER = {backup.account} PROCEDURE add_order(IN cid INT)"
        " INSERT INTO orders (customer_id, amount) VALUES (cid, 1.00)",
        "DROP FUNCTION shout",
        f"CREATE DEFINER = {backup.account} FUNCTION shout(s VARCHAR(100)) RETURNS VARCHAR(110)"
        " DETERMINISTIC RETURN CONCAT(UPPER(s), '!')",
    )
    engine = engine_for(shop, user=backup)

    checks = engine.preflight_backup()
    raw, manifest = take_backup(engine)

    assert [c.name for c in checks] == ["connect", "privileges", "routines", "database"]
    assert checks[2].detail == f"2 routines readable by {backup.label}"
    assert manifest.row_counts == shop.row_counts()
    assert set(manifest.objects or ()) == {
        *(f"table {t}" for t in shop.row_counts()),
        "view customer_totals",
        "view big_customers",
        "procedure add_order",
        "function shout",
        "trigger orders_audit",
        "event nightly_cleanup",
    }
    assert b"CREATE DEFINER=`%s`@`%%` PROCEDURE `add_order`" % backup.name.encode() in raw
    assert sorted(manifest.roles or ()) == sorted([backup.label, shop.user.label])


@pytest.mark.parametrize("missing", BACKUP_PRIVILEGES)
def test_backup_without_a_privilege_names_it_and_the_grant(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases, missing: str
) -> None:
    others = [p for p in BACKUP_PRIVILEGES if p != missing]
    login = mariadb_databases.create_user(None, f"{', '.join(others)} ON {quote(shop.name)}.*")
    engine = engine_for(shop, user=login)

    with pytest.raises(InsufficientPrivilege) as caught:
        engine.preflight_backup()

    assert str(caught.value) == (
        f"user {login.account} lacks {missing} on {shop.name} (a backup reads them all): "
        f"GRANT {missing} ON `{shop.name}`.* TO {login.account}"
    )
    # Each of them is needed: without it mariadb-dump fails, or silently leaves triggers out.
    if missing == "TRIGGER":
        objects = dump_summary_objects(shop, login)
        assert "table orders" in objects
        assert "trigger orders_audit" not in objects
    else:
        with pytest.raises((DumpFailed, InsufficientPrivilege), match=f"{missing}|denied"):
            dump_summary_objects(shop, login)


def test_backup_by_a_login_without_privileges_on_the_database(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    login = mariadb_databases.create_user()
    with pytest.raises(InsufficientPrivilege) as caught:
        engine_for(shop, user=login).preflight_backup()
    assert str(caught.value) == (
        f"user {login.account} has no privileges on database {shop.name} (or it does not "
        f"exist): GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `{shop.name}`.* TO {login.account}"
    )


def test_routines_of_another_definer_need_select_on_mysql_proc(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    on_shop = f"{', '.join(BACKUP_PRIVILEGES)} ON {quote(shop.name)}.*"
    # With the four grants alone MariaDB 10.11 does not even show the login the routines that
    # another account defines: mariadb-dump leaves them out and nothing can notice (documented).
    blind = mariadb_databases.create_user(None, on_shop)
    checks = engine_for(shop, user=blind).preflight_backup()
    assert checks[2].detail.startswith(f"no routines visible to {blind.label}")
    assert "procedure add_order" not in dump_summary_objects(shop, blind)
    # A login that sees them (EXECUTE) but may not read their bodies is refused before dumping.
    seeing = mariadb_databases.create_user(None, on_shop, f"EXECUTE ON {quote(shop.name)}.*")
    with pytest.raises(InsufficientPrivilege) as caught:
        engine_for(shop, user=seeing).preflight_backup()
    assert str(caught.value) == (
        f"user {seeing.account} cannot read the definition of function {shop.name}.shout (its "
        f"DEFINER is {shop.user.label}; MariaDB before 11.3 shows routine bodies only to their "
        f"definer): GRANT SELECT ON `mysql`.`proc` TO {seeing.account}, or connect as "
        f"{shop.user.label}"
    )
    # SELECT on mysql.proc lets a login read every routine's body.
    reader = mariadb_databases.create_user(None, on_shop, "SELECT ON `mysql`.`proc`")
    engine_for(shop, user=reader).preflight_backup()
    objects = dump_summary_objects(shop, reader)
    assert {"procedure add_order", "function shout"} <= set(objects)


# -- restores --------------------------------------------------------------------------------------


def test_restore_with_all_privileges_on_the_one_database(shop: MariaDBDatabase) -> None:
    assert grants_of(shop, shop.user) == [
        f"GRANT USAGE ON *.* TO `{shop.user.name}`@`%`",
        f"GRANT ALL PRIVILEGES ON `{shop.name}`.* TO `{shop.user.name}`@`%`",
    ]
    engine = engine_for(shop)
    before = fingerprint(shop)
    raw, manifest = take_backup(engine)
    damage(shop)

    databases = shop.server.databases()

    plan = engine.plan_restore(manifest, RestoreOptions())
    restore(engine, raw, manifest)

    assert plan.checks[2].detail == (
        f"{shop.user.label} has {', '.join(RESTORE_PRIVILEGES)} on {shop.name}"
    )
    assert fingerprint(shop) == before
    assert shop.leftovers() == []
    assert shop.server.databases() == databases


def test_restore_keeping_extra_objects_with_all_privileges_on_the_one_database(
    shop: MariaDBDatabase,
) -> None:
    engine = engine_for(shop)
    before = fingerprint(shop)
    raw, manifest = take_backup(engine)
    add_later_objects(shop)
    later = {k: v for k, v in fingerprint(shop).items() if "late_" in k}

    engine.plan_restore(manifest, RestoreOptions(keep_extra_objects=True))
    restore(engine, raw, manifest, keep=True)

    after = fingerprint(shop)
    assert {k: v for k, v in after.items() if "late_" not in k} == before
    assert {k: v for k, v in after.items() if "late_" in k} == later
    assert shop.leftovers() == []


def test_restore_into_a_missing_database_granted_by_name(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    raw, manifest = take_backup(engine_for(shop))
    target = mariadb_databases.reserve("new", user=shop.user)  # GRANT ALL ON `new_...`.*
    assert not target.exists()
    engine = engine_for(target)

    plan = engine.plan_restore(manifest, RestoreOptions())
    restore(engine, raw, manifest)

    assert not plan.database_exists
    assert fingerprint(target) == fingerprint(shop)
    assert target.leftovers() == []


@pytest.mark.parametrize("missing", RESTORE_PRIVILEGES)
def test_restore_without_a_privilege_names_it_and_the_grant(
    shop: MariaDBDatabase, missing: str
) -> None:
    engine = engine_for(shop)
    raw, manifest = take_backup(engine)
    damage(shop)
    before = fingerprint(shop)
    shop.server.root_execute(f"REVOKE {missing} ON {quote(shop.name)}.* FROM {shop.user.account}")

    with pytest.raises(InsufficientPrivilege) as caught:
        engine.plan_restore(manifest, RestoreOptions())

    assert str(caught.value) == (
        f"user {shop.user.account} lacks {missing} on {shop.name} (a restore stages the "
        f"backup's tables in it and swaps them in): GRANT {missing} ON `{shop.name}`.* TO "
        f"{shop.user.account}"
    )
    # Each of them is needed: a restore that went ahead fails, and the target stays as it was.
    with pytest.raises(InsufficientPrivilege):
        engine.restore(io.BytesIO(raw), manifest, Progress("restore"), RestoreOptions())
    assert fingerprint(shop) == before
    assert shop.leftovers() == []


def test_restore_into_a_missing_database_without_a_grant_on_its_name(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    _, manifest = take_backup(engine_for(shop))
    target = mariadb_databases.reserve("new")  # granted to its own user, not to shop's
    with pytest.raises(InsufficientPrivilege) as caught:
        engine_for(target, user=shop.user).plan_restore(manifest, RestoreOptions())
    every = ", ".join(["CREATE", *(p for p in RESTORE_PRIVILEGES if p != "CREATE")])
    assert str(caught.value) == (
        f"user {shop.user.account} lacks {every} on {target.name} (it does not exist (or this "
        f"login cannot see it): the restore creates it): GRANT {every} ON `{target.name}`.* TO "
        f"{shop.user.account}"
    )
    assert not target.exists()


def test_objects_defined_by_another_user_need_set_user(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    raw, manifest = take_backup(engine_for(shop))
    copy = mariadb_databases.reserve("copy")  # its own user: not the backup's DEFINER
    # A DEFINER needs privileges where its objects live (a view reads tables with them).
    shop.server.root_execute(f"GRANT ALL PRIVILEGES ON {quote(copy.name)}.* TO {shop.user.account}")
    engine = engine_for(copy)

    with pytest.raises(InsufficientPrivilege) as caught:
        engine.plan_restore(manifest, RestoreOptions())

    assert str(caught.value) == (
        f"user {copy.user.account} lacks SET USER, needed to create the backup's views, "
        f"routines, triggers or events defined by {shop.user.account} (a login may otherwise "
        f"only name itself as DEFINER): GRANT SET USER ON *.* TO {copy.user.account}, or "
        f"restore as {shop.user.account}"
    )
    shop.server.root_execute(f"GRANT SET USER ON *.* TO {copy.user.account}")
    plan = engine.plan_restore(manifest, RestoreOptions())
    assert any("could not check that" in n for n in plan.notes)
    restore(engine, raw, manifest)
    assert fingerprint(copy) == fingerprint(shop)  # the DEFINERs are the backup's
    assert copy.leftovers() == []


def test_a_definer_that_does_not_exist_is_refused(
    shop: MariaDBDatabase, mariadb_databases: MariaDBDatabases
) -> None:
    shop.root_execute("CREATE DEFINER = 'ghost'@'%' VIEW haunted AS SELECT 1 AS boo")
    _, manifest = take_backup(engine_for(shop))
    assert "ghost@%" in (manifest.roles or [])
    copy = mariadb_databases.reserve("copy")
    shop.server.root_execute(
        f"GRANT SET USER ON *.* TO {copy.user.account}",
        f"GRANT SELECT ON `mysql`.* TO {copy.user.account}",  # to see which users exist
    )
    with pytest.raises(RoleMissing) as caught:
        engine_for(copy).plan_restore(manifest, RestoreOptions())
    assert str(caught.value) == (
        "the backup's views, routines, triggers or events are defined by 'ghost'@'%', which "
        "does not exist on this server (users are server-wide, not in a backup): CREATE USER "
        "'ghost'@'%' first"
    )


def test_privileges_granted_through_a_role_count(mariadb_database: MariaDBDatabase) -> None:
    """SHOW GRANTS includes the login's default role. (MariaDB does not use a DEFINER's roles:
    views and routines defined by a login whose grants come from a role alone cannot be
    created, so this database has tables, a sequence and data only.)"""
    shop = mariadb_database
    shop.execute(
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(20))",
        "CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT,"
        " FOREIGN KEY (customer_id) REFERENCES customers (id))",
        "CREATE SEQUENCE numbers",
        "INSERT INTO customers VALUES (1, 'a'), (2, 'b')",
        "INSERT INTO orders VALUES (1, 1), (2, 2)",
    )
    role = f"r_{shop.name}"
    login = shop.user
    shop.server.root_execute(
        f"CREATE ROLE {quote(role)}",
        f"GRANT ALL PRIVILEGES ON {quote(shop.name)}.* TO {quote(role)}",
        f"REVOKE ALL PRIVILEGES ON {quote(shop.name)}.* FROM {login.account}",
        f"GRANT {quote(role)} TO {login.account}",
        f"SET DEFAULT ROLE {quote(role)} FOR {login.account}",
    )
    try:
        engine = engine_for(shop)
        before = fingerprint(shop)
        raw, manifest = take_backup(engine)
        assert grants_of(shop, login)[0] == f"GRANT `{role}` TO `{login.name}`@`%`"
        shop.execute("DELETE FROM orders", "DROP SEQUENCE numbers")
        plan = engine.plan_restore(manifest, RestoreOptions())
        restore(engine, raw, manifest)
        assert "CREATE" in plan.checks[2].detail
        assert fingerprint(shop) == before
    finally:
        shop.server.root_execute(f"DROP ROLE IF EXISTS {quote(role)}")


# -- reading grants ------------------------------------------------------------------------------


def test_grants_are_read_as_the_server_applies_them() -> None:
    account = Account("app", "%")
    grants = Grants.parse(
        account,
        [
            "GRANT USAGE ON *.* TO `app`@`%` IDENTIFIED BY PASSWORD '*AB'",
            "GRANT SELECT, SHOW VIEW ON `shop\\_eu`.* TO `app`@`%`",
            "GRANT TRIGGER ON `tenant_%`.* TO `app`@`%`",
            "GRANT ALL PRIVILEGES ON `a``b`.* TO `app`@`%` WITH GRANT OPTION",
            "GRANT SELECT ON `mysql`.`proc` TO `app`@`%`",
            "GRANT `reporting` TO `app`@`%`",
            "GRANT EVENT ON `shop\\_eu`.* TO `reporting`",
        ],
    )
    assert grants.on_database("shop_eu") == {"USAGE", "SELECT", "SHOW VIEW", "EVENT"}
    assert "SELECT" not in grants.on_database("shopXeu")  # an escaped _ is itself
    assert grants.on_database("tenant_42") == {"USAGE", "TRIGGER"}
    assert "TRIGGER" in grants.on_database("tenantX")  # an unescaped _ is any character
    assert {"CREATE", "DROP", "SHOW VIEW"} <= grants.on_database("a`b")
    assert not grants.may_set_definer()
    assert grants.missing("shop_eu", BACKUP_PRIVILEGES) == ["TRIGGER"]
    assert Grants.parse(account, ["GRANT ALL PRIVILEGES ON *.* TO `app`@`%`"]).may_set_definer()
    assert Account.parse("o'brien@10.0.%").sql() == "'o\\'brien'@'10.0.%'"
