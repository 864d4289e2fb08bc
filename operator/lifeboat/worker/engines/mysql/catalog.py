"""What a database holds, from the server's catalog: tables, and views, routines, triggers and
events with their exact definitions (SHOW CREATE and the session settings they were made with),
so that a failed swap can put every one of them back exactly.

Tables with reserved names (`__lifeboat_...`, see reserved_names) are not the database's own:
they are left by an interrupted restore and listed apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pymysql

from lifeboat.worker.engines.mysql.connection import Session, quote
from lifeboat.worker.engines.mysql.reserved_names import reserved_role
from lifeboat.worker.errors import DatabaseError, InsufficientPrivilege

COUNTED_TYPES = ("BASE TABLE", "SYSTEM VERSIONED")
"""Table types that hold rows we count; MariaDB sequences are tables too, and move like them."""
SEQUENCE = "SEQUENCE"


@dataclass(frozen=True)
class SchemaObject:
    """A view, trigger, routine or event as SHOW CREATE gives it, with its session settings."""

    kind: str
    name: str
    create: str
    character_set_client: str
    collation_connection: str
    sql_mode: str = ""
    time_zone: str | None = None
    table: str | None = None
    definer: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    @property
    def label(self) -> str:
        return f"{self.kind.lower()} {self.name}"


@dataclass
class Catalog:
    """One database's objects, read before a swap so every undo is prepared in advance."""

    tables: list[str] = field(default_factory=list)
    """Base tables, system-versioned tables and sequences: what RENAME moves."""
    counted: list[str] = field(default_factory=list)
    sequences: list[str] = field(default_factory=list)
    views: dict[str, SchemaObject] = field(default_factory=dict)
    triggers: list[SchemaObject] = field(default_factory=list)
    routines: dict[tuple[str, str], SchemaObject] = field(default_factory=dict)
    events: dict[str, SchemaObject] = field(default_factory=dict)
    reserved: dict[str, str] = field(default_factory=dict)
    """Tables with reserved names (left by an interrupted restore) -> their role."""

    def labels(self) -> list[str]:
        """Every object as '<kind> <name>', like a dump's objects."""
        labels = [f"table {t}" for t in self.tables if t not in self.sequences]
        labels += [f"sequence {s}" for s in self.sequences]
        labels += [v.label for v in self.views.values()]
        labels += [r.label for r in self.routines.values()]
        labels += [t.label for t in self.triggers]
        labels += [e.label for e in self.events.values()]
        return labels


def read_catalog(
    session: Session, database: str, *, definitions: bool = True, strict: bool = True
) -> Catalog:
    """Read `database`'s objects. With `definitions`, also every SHOW CREATE (the undo needs
    them): a routine whose body the login may not read is an InsufficientPrivilege, or, not
    `strict`, an object with an empty definition (equal to no definition that can be read)."""
    catalog = Catalog()
    for name, kind in session.query(
        "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
        (database,),
    ):
        name = str(name)
        role = reserved_role(name)
        if role is not None:
            catalog.reserved[name] = role
        elif kind in (*COUNTED_TYPES, SEQUENCE):
            catalog.tables.append(name)
            if kind == SEQUENCE:
                catalog.sequences.append(name)
            else:
                catalog.counted.append(name)
        elif kind == "VIEW":
            catalog.views[name] = SchemaObject("VIEW", name, "", "", "")
    if definitions and catalog.views:
        # SHOW CREATE VIEW leaves names of the current database unqualified: portable SQL.
        session.conn.select_db(database)
        for name in list(catalog.views):
            row = _show(session, "VIEW", name, f"SHOW CREATE VIEW {quote(name)}", database)
            catalog.views[name] = SchemaObject(
                "VIEW",
                name,
                str(row["Create View"]),
                str(row["character_set_client"]),
                str(row["collation_connection"]),
            )
    for name, table, definer in session.query(
        "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE, DEFINER FROM information_schema.TRIGGERS "
        "WHERE TRIGGER_SCHEMA = %s "
        "ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
        (database,),
    ):
        if reserved_role(str(table)) is not None:
            continue
        if not definitions:
            catalog.triggers.append(SchemaObject("TRIGGER", str(name), "", "", "", table=table))
            continue
        sql = f"SHOW CREATE TRIGGER {quote(database)}.{quote(name)}"
        row = _show(session, "TRIGGER", name, sql, database)
        catalog.triggers.append(
            _object("TRIGGER", name, row, "SQL Original Statement", table=table, definer=definer)
        )
    for name, kind, definer, body in session.query(
        "SELECT ROUTINE_NAME, ROUTINE_TYPE, DEFINER, ROUTINE_DEFINITION "
        "FROM information_schema.ROUTINES "
        "WHERE ROUTINE_SCHEMA = %s AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION') "
        "ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
        (database,),
    ):
        key = (str(kind), str(name))
        if not definitions or (body is None and not strict):
            catalog.routines[key] = SchemaObject(str(kind), str(name), "", "", "")
            continue
        if body is None:
            raise unreadable_routine(session, database, str(kind), str(name), str(definer))
        sql = f"SHOW CREATE {kind} {quote(database)}.{quote(name)}"
        row = _show(session, kind, name, sql, database)
        routine = _object(kind, name, row, f"Create {str(kind).title()}", definer=definer)
        catalog.routines[routine.key] = routine
    for name, definer in session.query(
        "SELECT EVENT_NAME, DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s "
        "ORDER BY EVENT_NAME",
        (database,),
    ):
        if not definitions:
            catalog.events[str(name)] = SchemaObject("EVENT", str(name), "", "", "")
            continue
        sql = f"SHOW CREATE EVENT {quote(database)}.{quote(name)}"
        row = _show(session, "EVENT", name, sql, database)
        catalog.events[str(name)] = _object("EVENT", name, row, "Create Event", definer=definer)
    return catalog


def unreadable_routine(
    session: Session, database: str, kind: str, name: str, definer: str
) -> InsufficientPrivilege:
    account = session.current_account()
    return InsufficientPrivilege(
        f"user {account.sql()} cannot read the definition of {kind.lower()} {database}.{name} "
        f"(its DEFINER is {definer}; MariaDB before 11.3 shows routine bodies only to their "
        f"definer): GRANT SELECT ON `mysql`.`proc` TO {account.sql()}, or connect as {definer}"
    )


def _show(session: Session, kind: str, name: str, sql: str, database: str) -> dict[str, Any]:
    try:
        row = session.show(sql)
    except pymysql.MySQLError as exc:
        raise session.connector.error(exc, database=database) from None
    if row is None:
        raise DatabaseError(f"{sql} returned nothing: {kind.lower()} {name} vanished meanwhile")
    return row


def _object(
    kind: str,
    name: str,
    row: Mapping[str, Any],
    column: str,
    *,
    table: str | None = None,
    definer: str | None = None,
) -> SchemaObject:
    create = row.get(column)
    if not create:
        raise InsufficientPrivilege(
            f"cannot read the definition of {kind.lower()} {name}: SHOW CREATE {kind} returned "
            "none (the login is not its definer and may not see its body)"
        )
    return SchemaObject(
        kind,
        str(name),
        str(create),
        str(row["character_set_client"]),
        str(row["collation_connection"]),
        sql_mode=str(row.get("sql_mode") or ""),
        time_zone=str(row["time_zone"]) if row.get("time_zone") else None,
        table=str(table) if table is not None else None,
        definer=str(definer) if definer is not None else None,
    )


# -- changing objects ------------------------------------------------------------------------------


def create_object(
    session: Session, database: str, obj: SchemaObject, *, replace: bool, mariadb_server: bool
) -> None:
    """Create `obj` from its SHOW CREATE text with the session settings it was made with."""
    statement = obj.create
    if replace and (mariadb_server or obj.kind == "VIEW"):
        statement = re.sub(r"^\s*CREATE\s+", "CREATE OR REPLACE ", statement, count=1)
    elif replace:
        drop_object(session, database, obj)
    try:
        session.conn.select_db(database)
        session.execute(
            "SET SESSION sql_mode = %s, character_set_client = %s, collation_connection = %s",
            (obj.sql_mode, obj.character_set_client, obj.collation_connection),
        )
        if obj.time_zone is not None:
            session.execute("SET SESSION time_zone = %s", (obj.time_zone,))
        session.execute(statement)
    finally:
        session.reset()


def drop_object(session: Session, database: str, obj: SchemaObject) -> None:
    session.execute(f"DROP {obj.kind} IF EXISTS {quote(database)}.{quote(obj.name)}")


def put_back(session: Session, database: str, snapshot: Catalog, *, mariadb_server: bool) -> None:
    """Make `database`'s views, routines, triggers and events exactly the snapshot's again:
    drop what is not in it, re-create what is missing or differs (the undo of a swap)."""
    now = read_catalog(session, database, strict=False)
    # Triggers: a table's triggers fire in creation order, so a table whose triggers differ gets
    # all of them back, in the snapshot's order.
    tables = {t.table for t in snapshot.triggers} | {t.table for t in now.triggers}
    for table in sorted(t for t in tables if t is not None):
        before = [t for t in snapshot.triggers if t.table == table]
        after = [t for t in now.triggers if t.table == table]
        if before != after:
            for trigger in after:
                drop_object(session, database, trigger)
            for trigger in before:
                _create_quietly_replacing(session, database, trigger, mariadb_server)
    _sync(session, database, snapshot.routines, now.routines, mariadb_server)
    _sync(session, database, snapshot.events, now.events, mariadb_server)
    for name, view in now.views.items():
        if name not in snapshot.views:
            drop_object(session, database, view)
    create_in_rounds(
        session,
        database,
        [v for n, v in snapshot.views.items() if now.views.get(n) != v],
        mariadb_server=mariadb_server,
    )


def _sync(
    session: Session,
    database: str,
    before: Mapping[Any, SchemaObject],
    after: Mapping[Any, SchemaObject],
    mariadb_server: bool,
) -> None:
    for key, obj in after.items():
        if key not in before:
            drop_object(session, database, obj)
    for key, obj in before.items():
        if after.get(key) != obj:
            create_object(session, database, obj, replace=True, mariadb_server=mariadb_server)


def _create_quietly_replacing(
    session: Session, database: str, obj: SchemaObject, mariadb_server: bool
) -> None:
    drop_object(session, database, obj)
    create_object(session, database, obj, replace=False, mariadb_server=mariadb_server)


def create_in_rounds(
    session: Session, database: str, views: Iterable[SchemaObject], *, mariadb_server: bool
) -> None:
    """Create views in rounds: one that uses another view fails until that one exists."""
    pending = list(views)
    while pending:
        failed: list[tuple[SchemaObject, pymysql.MySQLError]] = []
        for view in pending:
            try:
                create_object(session, database, view, replace=True, mariadb_server=mariadb_server)
            except pymysql.MySQLError as exc:
                failed.append((view, exc))
        if len(failed) == len(pending):
            raise failed[0][1]
        pending = [view for view, _ in failed]
