"""The swap: the staged backup becomes the target database's content in one RENAME TABLE, with a
journal that undoes every step if a later one fails.

DDL is not transactional in MySQL; RENAME TABLE is the one atomic (and, since MariaDB 10.6,
crash-safe) statement that can replace many tables at once. All of it happens inside the target
database, so a login with privileges on that database alone can restore it.

  1. Target views named like a backup table are dropped (a view and a table cannot share a name).
  2. One `RENAME TABLE t TO <parked t>, ..., <staged t> TO t, ...` parks the target's tables
     (all of them; with keep_extra_objects only those the backup replaces) and gives the backup's
     their real names. Readers see all old or all new tables. Triggers, foreign keys and their
     references move with their tables; InnoDB renames `<table>_ibfk_<n>` constraints with them.
  3. The parked tables' triggers are dropped (their names are per database, and the backup's
     triggers are about to take them), then the backup's triggers, routines, views and events
     are created from the held-back parts of the dump (held_objects). Without
     keep_extra_objects, the target's views, routines and events that the backup does not have
     are dropped.
  4. Commit: the parked tables are dropped; foreign keys that the backup named itself, staged
     under reserved names (InnoDB constraint names are unique per database, and the parked
     tables held the names until now), get their names back by an in-place ALTER.

The journal is written before each step changes anything: its undo (newest first) renames the
tables back, drops the staged tables, and puts the target's views, routines, triggers and events
back exactly as they were read before the swap (catalog.put_back). Windows that are not atomic,
milliseconds each: after the RENAME, the new tables have no triggers until step 3 creates them,
and views, routines and events still have their old definitions (views resolve tables by name,
so they already read the new tables); until step 4, the backup's own foreign keys carry their
staged names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pymysql

from lifeboat.worker.engines.base import RestoreOptions
from lifeboat.worker.engines.mysql.catalog import Catalog, SchemaObject, drop_object, put_back
from lifeboat.worker.engines.mysql.connection import Session, quote
from lifeboat.worker.engines.mysql.held_objects import EVENTS, ROUTINES, TRIGGERS
from lifeboat.worker.engines.mysql.reserved_names import PARKED, reserved_name, reserved_role
from lifeboat.worker.engines.mysql.staging import StagedBackup, drop_tables
from lifeboat.worker.errors import DatabaseError, LifeboatError, RestoreError


def tables_to_park(
    current: Sequence[str], incoming_tables: set[str], incoming_views: set[str], *, keep: bool
) -> list[str]:
    """The target's tables the swap moves out: all of them, or with keep_extra_objects those
    whose names the backup's tables or views take."""
    if not keep:
        return list(current)
    return [t for t in current if t in incoming_tables or t in incoming_views]


class Journal:
    """Undo steps recorded as the swap goes; replayed in reverse when a later step fails."""

    def __init__(self) -> None:
        self._steps: list[tuple[str, Callable[..., object], tuple[object, ...]]] = []

    def add(self, what: str, fn: Callable[..., object], *args: object) -> None:
        self._steps.append((what, fn, args))

    def undo(self) -> str | None:
        """Run every undo step, newest first; the first failure stops it and is returned."""
        while self._steps:
            what, fn, args = self._steps.pop()
            try:
                fn(*args)
            except (LifeboatError, pymysql.MySQLError, OSError) as exc:
                return f"{what}: {exc}"
        return None


@dataclass
class Swap:
    """The swap of one verified staged backup into its target database (see the module
    docstring): decided in advance from the catalog read before it, so the undo is known."""

    session: Session
    database: str
    staged: StagedBackup
    current: Catalog
    options: RestoreOptions
    mariadb_server: bool

    def __post_init__(self) -> None:
        incoming_tables = set(self.staged.tables)
        incoming_views = self.staged.names_of("view")
        parked = tables_to_park(
            self.current.tables,
            incoming_tables,
            incoming_views,
            keep=self.options.keep_extra_objects,
        )
        token = self.staged.names.token
        self.parked = {t: reserved_name(token, PARKED, i, t) for i, t in enumerate(parked)}
        self.doomed_views = [v for n, v in self.current.views.items() if n in incoming_tables]
        backup_triggers = set(self.staged.trigger_tables)
        self.doomed_triggers = [
            t for t in self.current.triggers if t.table in self.parked or t.name in backup_triggers
        ]

    # -- before anything changes -------------------------------------------------------------------

    def check(self) -> None:
        """Refuse what RENAME would break: a foreign key into a parked table from a table that
        stays (it would follow the old table into parking), or a foreign key name the backup
        needs that a kept table holds."""
        parked = set(self.parked)
        if parked:
            for schema, table, constraint, referenced in self.session.query(
                "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME "
                "FROM information_schema.REFERENTIAL_CONSTRAINTS "
                "WHERE UNIQUE_CONSTRAINT_SCHEMA = %s",
                (self.database,),
            ):
                stays = schema != self.database or (
                    table not in parked and reserved_role(str(table)) is None
                )
                if referenced in parked and stays:
                    raise RestoreError(
                        f"foreign key {constraint} of {schema}.{table} points at table "
                        f"{referenced}, which the restore replaces; MySQL would leave it pointing "
                        "at the old table. Drop that foreign key first or restore without "
                        "keeping extra objects"
                    )
        wanted = {c.original: c.table for c in self.staged.names.constraints}
        if wanted:
            for table, constraint in self.session.query(
                "SELECT TABLE_NAME, CONSTRAINT_NAME "
                "FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = %s",
                (self.database,),
            ):
                kept = table in self.current.tables and table not in parked
                if kept and constraint in wanted:
                    raise RestoreError(
                        f"table {table}, which the restore keeps, has a foreign key named "
                        f"{constraint}, and so has the backup's table {wanted[constraint]}: "
                        "constraint names are unique per database; rename one first"
                    )

    # -- the swap ----------------------------------------------------------------------------------

    def run(self) -> None:
        """Swap and create the held-back objects; on any failure undo, and say so."""
        s, db = self.session, self.database
        staged_names = list(self.staged.names.staged.values())
        held = self.staged.held
        journal = Journal()
        try:
            journal.add(
                "put back the views, routines, triggers and events",
                lambda: put_back(s, db, self.current, mariadb_server=self.mariadb_server),
            )
            journal.add("drop the staged tables", drop_tables, s, db, staged_names)
            for view in self.doomed_views:
                drop_object(s, db, view)
            moves = list(self.parked.items())
            moves += [(staged, table) for table, staged in self.staged.names.staged.items()]
            if moves:
                s.execute(_rename(db, moves))
                journal.add("rename the tables back", s.execute, _rename(db, _reverse(moves)))
            # The old tables are parked: their triggers go, the backup's take their names.
            for trigger in self.doomed_triggers:
                drop_object(s, db, trigger)
            for section in held.of_kind(TRIGGERS):
                held.run(s, section, mariadb_server=self.mariadb_server)
            for section in held.of_kind(ROUTINES):
                held.run(s, section, mariadb_server=self.mariadb_server)
            held.create_views(s)
            for section in held.of_kind(EVENTS):
                held.run(s, section, mariadb_server=self.mariadb_server)
            if not self.options.keep_extra_objects:
                for obj in self._extras():
                    drop_object(s, db, obj)
        except BaseException as exc:
            failed = journal.undo()
            if failed is not None:
                raise RestoreError(
                    f"the restore failed while swapping ({self._describe(exc)}) and undoing it "
                    f"failed too ({failed}); {self._where_things_are()}"
                ) from exc
            if isinstance(exc, pymysql.MySQLError):
                error = s.connector.error(exc, database=db)
                raise type(error)(f"{error}; rolled back, the target is as it was") from exc
            if isinstance(exc, LifeboatError):
                raise type(exc)(f"{exc}; rolled back, the target is as it was") from exc
            raise

    def _extras(self) -> list[SchemaObject]:
        """The target's views, routines and events that the backup does not have."""
        views = self.staged.names_of("view")
        routines = self.staged.names_of("procedure"), self.staged.names_of("function")
        events = self.staged.names_of("event")
        doomed = {v.name for v in self.doomed_views}
        extras: list[SchemaObject] = [
            v for n, v in self.current.views.items() if n not in views and n not in doomed
        ]
        extras += [
            r
            for (kind, name), r in self.current.routines.items()
            if name not in routines[0 if kind == "PROCEDURE" else 1]
        ]
        extras += [e for n, e in self.current.events.items() if n not in events]
        return extras

    def _describe(self, exc: BaseException) -> str:
        if isinstance(exc, pymysql.MySQLError):
            return str(self.session.connector.error(exc, database=self.database))
        return str(exc)

    def _where_things_are(self) -> str:
        if not self.parked:
            return f"the target database {self.database} may now hold the backup's tables"
        return (
            f"the target database {self.database} may now hold the backup's tables; its previous "
            f"tables are parked in it as {', '.join(self.parked.values())}, kept for you to "
            "inspect"
        )

    # -- commit ------------------------------------------------------------------------------------

    def commit(self) -> list[str]:
        """The swap stands: drop the parked tables, give the backup's foreign keys their names.
        Neither can undo the restore any more: a failure becomes a note."""
        s, db = self.session, self.database
        notes: list[str] = []
        try:
            drop_tables(s, db, list(self.parked.values()))
        except pymysql.MySQLError as exc:
            notes.append(
                f"the restore succeeded, but dropping the parked tables "
                f"{', '.join(self.parked.values())} failed "
                f"({s.connector.error(exc, database=db)}); drop them by hand"
            )
        for fk in self.staged.names.constraints:
            try:
                s.execute(
                    f"ALTER TABLE {quote(db)}.{quote(fk.table)} "
                    f"DROP FOREIGN KEY {quote(fk.staged)}, "
                    f"ADD CONSTRAINT {quote(fk.original)} {fk.definition}, ALGORITHM=INPLACE"
                )
            except pymysql.MySQLError as exc:
                error: DatabaseError = s.connector.error(exc, database=db)
                notes.append(
                    f"the restore succeeded, but foreign key {fk.original} of table {fk.table} "
                    f"kept its staged name {fk.staged} ({error})"
                )
        return notes


def _rename(database: str, moves: Sequence[tuple[str, str]]) -> str:
    db = quote(database)
    return "RENAME TABLE " + ", ".join(f"{db}.{quote(a)} TO {db}.{quote(b)}" for a, b in moves)


def _reverse(moves: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The undo of `moves`: the backup's tables leave their names before the old ones return."""
    return [(b, a) for a, b in reversed(moves)]
