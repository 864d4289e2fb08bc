"""Checks before any data moves: a backup's login can read everything the dump reads; a restore's
login can do everything the staging and the swap do, on a server that can load the dump, with
the DEFINERs the backup names. Each check that passes becomes a `Check`; the first that fails
raises its typed error with one line naming what is missing and the statement that fixes it.

`plan_restore` is also the dry run: it reads the target's catalog and says what a restore would
replace, drop and keep, from the manifest's objects alone (the artifact is not read). It changes
nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pymysql

from lifeboat.worker.engines.base import Check, RestoreOptions, RestorePlan, incoming_objects
from lifeboat.worker.engines.mysql.catalog import Catalog, read_catalog, unreadable_routine
from lifeboat.worker.engines.mysql.connection import Account, Connector, Session
from lifeboat.worker.engines.mysql.privileges import (
    BACKUP_PRIVILEGES,
    RESTORE_PRIVILEGES,
    Grants,
    grant_statement,
    read_grants,
)
from lifeboat.worker.engines.mysql.staging import find_leftovers
from lifeboat.worker.engines.mysql.swap import tables_to_park
from lifeboat.worker.errors import (
    DatabaseNotFound,
    IncompatibleServer,
    InsufficientPrivilege,
    RoleMissing,
    UsageError,
)
from lifeboat.worker.manifest import Manifest

_VERSION = re.compile(r"(?:5\.5\.5-)?(\d+)\.(\d+)\.(\d+)")
_NO_SUCH_GRANT = 1141


def refuse_postgres_options(options: RestoreOptions) -> None:
    flags = (("--no-owner", options.no_owner), ("--no-privileges", options.no_privileges))
    named = [name for name, value in flags if value]
    if named:
        raise UsageError(
            f"{' and '.join(named)} (noOwner/noPrivileges) are PostgreSQL options: a MySQL or "
            "MariaDB backup has no owners or GRANTs to leave out (its DEFINERs must exist)"
        )


@dataclass(frozen=True)
class ServerVersion:
    product: str
    """MariaDB or MySQL."""
    series: tuple[int, int]
    """(11, 4), (10, 11), (8, 0): MariaDB and MySQL number their major releases so."""
    text: str

    @classmethod
    def parse(cls, text: str) -> ServerVersion | None:
        match = _VERSION.search(text)
        if match is None:
            return None
        product = "MariaDB" if "mariadb" in text.lower() else "MySQL"
        return cls(product, (int(match.group(1)), int(match.group(2))), text)

    def __str__(self) -> str:
        return f"{self.product} {self.series[0]}.{self.series[1]}"


def check_versions(backup: str, target: str) -> tuple[Check, list[str]]:
    """Refuse a dump the target server cannot load: MySQL 8 into MariaDB, or a newer major
    release into an older one of the same product."""
    source, server = ServerVersion.parse(backup), ServerVersion.parse(target)
    if source is None or server is None:
        return Check("server version", f"backup of {backup}, target {target}"), [
            "could not compare the server versions: the restore tries, and a failure leaves "
            "the target as it was"
        ]
    notes: list[str] = []
    if source.product == "MySQL" and server.product == "MariaDB" and source.series >= (8, 0):
        raise IncompatibleServer(
            f"the backup is of {source} ({backup}); {server} ({target}) cannot load a MySQL 8 "
            "dump (collations such as utf8mb4_0900_ai_ci, MySQL-only syntax): restore it into "
            f"MySQL {source.series[0]}.{source.series[1]} or newer"
        )
    if source.product == server.product and source.series > server.series:
        raise IncompatibleServer(
            f"the backup is of {source} ({backup}), newer than the target's {server} "
            f"({target}): an older major release cannot load what a newer one writes; restore "
            f"it into {source} or newer"
        )
    if source.product == "MariaDB" and server.product == "MySQL":
        notes.append(
            f"a {source} backup into {server}: it loads only if it uses no MariaDB-only "
            "features (sequences, system versioning); a failure leaves the target as it was"
        )
    return Check("server version", f"a backup of {source} loads into {server} ({target})"), notes


# -- backup ----------------------------------------------------------------------------------------


def preflight_backup(connector: Connector) -> list[Check]:
    """The login reaches the database and may read all of it: tables, view definitions, triggers,
    events and routine bodies (on MariaDB 10.11, only their DEFINER or a login with SELECT on
    mysql.proc may read a routine's body)."""
    database = connector.url.database
    with connector.session(None) as session:
        version = session.version()
        grants = read_grants(session)
        account = grants.account
        checks = [Check("connect", f"{version} at {connector.where}, logged in as {account}")]
        _require_database(session, grants, database, BACKUP_PRIVILEGES)
        grants.require(database, BACKUP_PRIVILEGES, why="a backup reads them all")
        checks.append(
            Check("privileges", f"{account} has {', '.join(BACKUP_PRIVILEGES)} on {database}")
        )
        routines = session.query(
            "SELECT ROUTINE_TYPE, ROUTINE_NAME, DEFINER, ROUTINE_DEFINITION IS NULL "
            "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
            "ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
            (database,),
        )
        for kind, name, definer, hidden in routines:
            if hidden:
                raise unreadable_routine(session, database, str(kind), str(name), str(definer))
        checks.append(
            Check(
                "routines",
                f"{len(routines)} routines readable by {account}"
                if routines
                else f"no routines visible to {account} (MariaDB 10.11 shows a login only the "
                "routines it defines, may execute or alter; others are not in the backup)",
            )
        )
        catalog = read_catalog(session, database, definitions=False)
        checks.append(Check("database", f"{database}: {_summary(catalog)}"))
    return checks


def _require_database(
    session: Session, grants: Grants, database: str, needed: tuple[str, ...]
) -> None:
    if session.database_exists(database):
        return
    if grants.on_database(database) - {"USAGE"}:
        raise DatabaseNotFound(f"database '{database}' does not exist on {session.connector.where}")
    raise InsufficientPrivilege(
        f"user {grants.account.sql()} has no privileges on database {database} (or it does not "
        f"exist): {grant_statement(needed, database, grants.account)}"
    )


def _summary(catalog: Catalog) -> str:
    parts = [
        (len(catalog.counted), "tables"),
        (len(catalog.sequences), "sequences"),
        (len(catalog.views), "views"),
        (len(catalog.routines), "routines"),
        (len(catalog.triggers), "triggers"),
        (len(catalog.events), "events"),
    ]
    return ", ".join(f"{n} {what if n != 1 else what[:-1]}" for n, what in parts)


# -- restore ---------------------------------------------------------------------------------------


def plan_restore(connector: Connector, manifest: Manifest, options: RestoreOptions) -> RestorePlan:
    refuse_postgres_options(options)
    database = connector.url.database
    with connector.session(None) as session:
        version = session.version()
        grants = read_grants(session)
        account = grants.account
        checks = [Check("connect", f"{version} at {connector.where}, logged in as {account}")]
        version_check, notes = check_versions(manifest.server_version, version)
        checks.append(version_check)
        exists = session.database_exists(database)
        if exists:
            grants.require(
                database,
                RESTORE_PRIVILEGES,
                why="a restore stages the backup's tables in it and swaps them in",
            )
            checks.append(
                Check("privileges", f"{account} has {', '.join(RESTORE_PRIVILEGES)} on {database}")
            )
        else:
            grants.require(
                database,
                ("CREATE", *(p for p in RESTORE_PRIVILEGES if p != "CREATE")),
                why="it does not exist (or this login cannot see it): the restore creates it",
            )
            checks.append(
                Check(
                    "privileges",
                    f"{account} may create {database} and has "
                    f"{', '.join(RESTORE_PRIVILEGES)} on it",
                )
            )
        checks.append(_check_definers(session, grants, manifest, notes, version))
        plan = RestorePlan(
            database=database,
            server_version=version,
            database_exists=exists,
            checks=checks,
            notes=notes,
        )
        if not exists:
            notes.append(f"database {database} does not exist: the restore creates it")
            return plan
        catalog = read_catalog(session, database)
        checks.append(
            Check(
                "objects",
                f"{database}: {_summary(catalog)}; every definition readable, so a failed swap "
                "can put them back",
            )
        )
        notes.extend(find_leftovers(session, database).notes(database))
    _sort(plan, catalog, manifest, keep=options.keep_extra_objects)
    return plan


def _check_definers(
    session: Session, grants: Grants, manifest: Manifest, notes: list[str], version: str
) -> Check:
    """The backup's DEFINERs: the login itself, or accounts it may name (SET USER) that exist."""
    account = grants.account
    if manifest.roles is None:
        notes.append(
            "the manifest does not list the backup's DEFINERs (written by an older Lifeboat): "
            "they are checked only when the views, routines, triggers and events are created"
        )
        return Check("definers", "not listed in the manifest")
    others = sorted({Account.parse(r) for r in manifest.roles} - {account}, key=str)
    if not others:
        if manifest.roles:
            return Check("definers", f"every object of the backup is defined by {account}")
        return Check("definers", "the backup has no views, routines, triggers or events")
    named = ", ".join(a.sql() for a in others)
    if not grants.may_set_definer():
        privilege = "SET USER" if "mariadb" in version.lower() else "SET_USER_ID"
        raise InsufficientPrivilege(
            f"user {account.sql()} lacks {privilege}, needed to create the backup's views, "
            f"routines, triggers or events defined by {named} (a login may otherwise only name "
            f"itself as DEFINER): GRANT {privilege} ON *.* TO {account.sql()}, or restore as "
            f"{others[0].sql()}"
        )
    unknown: list[str] = []
    for other in others:
        try:
            session.query(f"SHOW GRANTS FOR {other.sql()}")
        except pymysql.MySQLError as exc:
            if exc.args and exc.args[0] == _NO_SUCH_GRANT:
                raise RoleMissing(
                    f"the backup's views, routines, triggers or events are defined by "
                    f"{other.sql()}, which does not exist on this server (users are server-wide, "
                    f"not in a backup): CREATE USER {other.sql()} first"
                ) from None
            unknown.append(other.sql())
    if unknown:
        notes.append(
            f"could not check that {', '.join(unknown)} exist(s) (that needs SELECT on the "
            "mysql database); objects defined by a missing user fail when used"
        )
    return Check("definers", f"{account} may create objects defined by {named}")


def _sort(plan: RestorePlan, catalog: Catalog, manifest: Manifest, *, keep: bool) -> None:
    """What the swap would do to each of the target's objects (swap.py decides the same way)."""
    incoming = incoming_objects(manifest, plan)

    def named(*kinds: str) -> set[str]:
        return {label.split(" ", 1)[1] for label in incoming if label.split(" ", 1)[0] in kinds}

    incoming_tables = named("table", "sequence")
    parked = set(tables_to_park(catalog.tables, incoming_tables, named("view"), keep=keep))
    for table in catalog.tables:
        label = f"{'sequence' if table in catalog.sequences else 'table'} {table}"
        if table in incoming_tables:
            plan.replaced.append(label)
        elif table in parked:
            plan.dropped.append(label)
        else:
            plan.kept.append(label)
    for view in catalog.views.values():
        if view.name in incoming_tables:
            plan.dropped.append(view.label)
        else:
            _place(plan, view.label, incoming, keep)
    for trigger in catalog.triggers:
        if trigger.label in incoming:
            plan.replaced.append(trigger.label)
        elif trigger.table in parked:
            plan.dropped.append(trigger.label)
        else:
            _place(plan, trigger.label, incoming, keep)
    for obj in [*catalog.routines.values(), *catalog.events.values()]:
        _place(plan, obj.label, incoming, keep)


def _place(plan: RestorePlan, label: str, incoming: set[str], keep: bool) -> None:
    if label in incoming:
        plan.replaced.append(label)
    elif keep:
        plan.kept.append(label)
    else:
        plan.dropped.append(label)
