"""Before a byte moves: can this login do this backup or this restore, on this server?

Every check reads the catalog and changes nothing. A failed check raises the typed error with one
line that names the privilege, the object and the statement that fixes it; the checks that
passed are returned, so a dry run can show them.

Backup: the login reads every table, sequence and large object the dump reads, past row-level
security, with a pg_dump that can dump this server. Restore: the login owns the target database
(or may create it), may drop what emptying it drops, and the server and the local pg_restore can
take the dump; the roles the backup names exist. What only the archive can tell (the roles and
extensions its SQL names) is checked by `archive.check_archive_needs` once the TOC has been read,
still before the target changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from lifeboat.worker.engines.base import Check, RestoreOptions, RestorePlan, sort_objects
from lifeboat.worker.engines.postgres import catalog
from lifeboat.worker.engines.postgres.catalog import (
    USER_SCHEMAS,
    OwnedObject,
    not_extension_member,
    quote_ident,
)
from lifeboat.worker.engines.postgres.connection import (
    Connector,
    Login,
    catalog_error,
    existing_roles,
    login,
)
from lifeboat.worker.engines.postgres.tools import client_major, client_version
from lifeboat.worker.errors import (
    DatabaseNotFound,
    IncompatibleServer,
    InsufficientPrivilege,
    RoleMissing,
)
from lifeboat.worker.manifest import Manifest

# -- backup ----------------------------------------------------------------------------------

_BACKUP_UNREADABLE_SQL = f"""
SELECT 'schema', pg_catalog.quote_ident(n.nspname), NULL::text
FROM pg_catalog.pg_namespace n
WHERE {USER_SCHEMAS} AND NOT pg_catalog.has_schema_privilege(n.oid, 'USAGE')
  AND EXISTS (SELECT 1 FROM pg_catalog.pg_class c
              WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'S')
                AND {not_extension_member("pg_class", "c.oid")})
UNION ALL
SELECT CASE WHEN c.relkind = 'S' THEN 'sequence' ELSE 'table' END,
       pg_catalog.format('%I.%I', n.nspname, c.relname), pg_catalog.quote_ident(n.nspname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S') AND {USER_SCHEMAS}
  AND {not_extension_member("pg_class", "c.oid")}
  AND NOT pg_catalog.has_table_privilege(c.oid, 'SELECT')
UNION ALL
SELECT 'row security', pg_catalog.format('%I.%I', n.nspname, c.relname), NULL
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMAS} AND c.relrowsecurity
  AND {not_extension_member("pg_class", "c.oid")}
  AND NOT (SELECT r.rolsuper OR r.rolbypassrls FROM pg_catalog.pg_roles r
           WHERE r.rolname = current_user)
  AND (c.relforcerowsecurity OR NOT pg_catalog.pg_has_role(c.relowner, 'USAGE'))
UNION ALL
SELECT 'large object', m.oid::text, NULL
FROM pg_catalog.pg_largeobject_metadata m
WHERE pg_catalog.current_setting('lo_compat_privileges')::bool IS NOT TRUE
  AND NOT pg_catalog.pg_has_role(m.lomowner, 'USAGE')
  AND NOT EXISTS (
    SELECT 1 FROM pg_catalog.aclexplode(m.lomacl) a
    WHERE a.privilege_type = 'SELECT'
      AND CASE WHEN a.grantee = 0 THEN true ELSE pg_catalog.pg_has_role(a.grantee, 'USAGE') END)
"""

_BACKUP_COUNTS_SQL = f"""
SELECT count(*) FILTER (WHERE c.relkind IN ('r', 'p')), count(*) FILTER (WHERE c.relkind = 'S'),
       (SELECT count(*) FROM pg_catalog.pg_largeobject_metadata)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S') AND {USER_SCHEMAS}
  AND {not_extension_member("pg_class", "c.oid")}
"""

_ALSO_READ_ALL = "(or GRANT pg_read_all_data TO {user})"


def backup_checks(connector: Connector) -> list[Check]:
    """Connect, check pg_dump against the server, and prove the login can read everything the
    dump reads. Changes nothing."""
    with connector.connect() as conn:
        me = login(conn)
        checks = [Check("connect", me.describe(connector.where))]
        dump_major = client_major("pg_dump")
        if me.major > dump_major:
            raise IncompatibleServer(
                f"pg_dump {client_version('pg_dump')} cannot dump PostgreSQL "
                f"{me.version.split()[0]} at {connector.where} (pg_dump refuses servers newer "
                f"than itself): use a Lifeboat image with PostgreSQL "
                f"{catalog.show_major(me.major)} client tools or newer"
            )
        checks.append(
            Check(
                "server version",
                f"pg_dump {client_version('pg_dump')} can dump PostgreSQL {me.version.split()[0]}",
            )
        )
        try:
            problems = conn.execute(_BACKUP_UNREADABLE_SQL).fetchall()
            counts = conn.execute(_BACKUP_COUNTS_SQL).fetchone()
        except psycopg.Error as exc:
            raise catalog_error(connector, exc) from None
    if problems:
        raise _unreadable(me, problems)
    tables, sequences, large_objects = counts or (0, 0, 0)
    checks.append(
        Check(
            "privileges",
            f"{me.user} can read all {_count(tables, 'table')}, "
            f"{_count(sequences, 'sequence')} and {_count(large_objects, 'large object')} of "
            f"{connector.url.database}",
        )
    )
    return checks


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _unreadable(me: Login, problems: Sequence[tuple[Any, ...]]) -> InsufficientPrivilege:
    """The first thing the login cannot read, in the order that fixes them best (a schema's
    USAGE before its tables), as one line with the GRANT."""
    order = ["schema", "table", "sequence", "row security", "large object"]
    by_kind: dict[str, list[tuple[str, str | None]]] = {}
    for kind, name, schema in problems:
        by_kind.setdefault(str(kind), []).append((str(name), schema))
    kind = next(k for k in order if k in by_kind)
    found = by_kind[kind]
    name, schema = found[0]
    user = me.sql_user
    also = _ALSO_READ_ALL.format(user=user)
    plural = {"row security": "tables"}.get(kind, f"{kind}s")
    more = f" and {len(found) - 1} more {plural}" if len(found) > 1 else ""
    who = f"role '{me.user}'"
    if kind == "schema":
        return InsufficientPrivilege(
            f"{who} cannot use schema {name}{more}: GRANT USAGE ON SCHEMA {name} TO {user} {also}"
        )
    if kind in ("table", "sequence"):
        schemas = {s for _, s in found}
        if len(found) > 1 and len(schemas) == 1:
            grant = f"GRANT SELECT ON ALL {plural.upper()} IN SCHEMA {schema} TO {user}"
        else:
            target = name if kind == "table" else f"SEQUENCE {name}"
            grant = f"GRANT SELECT ON {target} TO {user}"
        return InsufficientPrivilege(f"{who} cannot read {kind} {name}{more}: {grant} {also}")
    if kind == "row security":
        return InsufficientPrivilege(
            f"{who} cannot read every row of table {name}{more}: row-level security applies "
            f"to it; ALTER ROLE {user} BYPASSRLS (or back up as the table's owner)"
        )
    return InsufficientPrivilege(
        f"{who} cannot read large object {name}{more}: GRANT SELECT ON LARGE OBJECT {name} "
        f"TO {user} (for each; pg_read_all_data does not cover large objects, their owner "
        "reads them)"
    )


# -- restore plan ----------------------------------------------------------------------------


def plan_restore(connector: Connector, manifest: Manifest, options: RestoreOptions) -> RestorePlan:
    """Connect to the target (or the maintenance database, when the target does not exist)
    and check, in order: the login, the versions, the privileges, the roles. Changes nothing."""
    database = connector.url.database
    try:
        conn = connector.connect()
        exists = True
    except DatabaseNotFound:
        conn = connector.connect_maintenance()
        exists = False
    notes: list[str] = []
    with conn:
        me = login(conn)
        checks = [Check("connect", me.describe(connector.where))]
        checks.append(_check_versions(connector, manifest, me))
        try:
            if exists:
                checks += _check_database_privileges(conn, me, database)
                objects = catalog.owned_objects(conn)
                checks.append(_check_droppable(me, objects, manifest, options))
            else:
                checks.append(_check_createdb(connector, me))
                notes.append(f"database {database} does not exist: the restore creates it")
                objects = []
            checks.append(_check_manifest_roles(conn, connector, me, manifest, options, notes))
        except psycopg.Error as exc:
            raise catalog_error(connector, exc) from None
    if options.no_owner:
        notes.append(f"restored objects will belong to role '{me.user}' (--no-owner)")
    if options.no_privileges:
        notes.append("the backup's GRANTs and REVOKEs will not be restored (--no-privileges)")
    plan = RestorePlan(
        database=connector.url.redacted(),
        server_version=me.version,
        database_exists=exists,
        checks=checks,
        notes=notes,
    )
    sort_objects(
        plan,
        sorted({o.label for o in objects}),
        manifest,
        keep_extra_objects=options.keep_extra_objects,
    )
    return plan


def _check_versions(connector: Connector, manifest: Manifest, me: Login) -> Check:
    """A dump loads into the same or a newer major version, and only a pg_restore at least as
    new as the pg_dump that wrote it can read it (pg_dump is never older than its server)."""
    dumped = manifest.server_version.split()[0] if manifest.server_version else "?"
    dump_major = catalog.major_version(manifest.server_version)
    restorer = client_version("pg_restore")
    if dump_major is None:
        return Check(
            "server version",
            f"the backup's server version {manifest.server_version!r} was not compared; target "
            f"runs PostgreSQL {me.version.split()[0]}",
        )
    if dump_major > me.major:
        raise IncompatibleServer(
            f"the backup is from PostgreSQL {dumped} and {connector.where} runs PostgreSQL "
            f"{me.version.split()[0]}: a dump does not load into an older major version; "
            f"restore into PostgreSQL {catalog.show_major(dump_major)} or newer"
        )
    if dump_major > client_major("pg_restore"):
        raise IncompatibleServer(
            f"the backup was written by pg_dump {catalog.show_major(dump_major)} or newer (from "
            f"PostgreSQL {dumped}), which this worker's pg_restore {restorer} cannot read: use a "
            f"Lifeboat image with PostgreSQL {catalog.show_major(dump_major)} client tools or "
            "newer"
        )
    return Check(
        "server version",
        f"the backup from PostgreSQL {dumped} loads into PostgreSQL {me.version.split()[0]} "
        f"with pg_restore {restorer}",
    )


def _check_database_privileges(
    conn: psycopg.Connection[Any], me: Login, database: str
) -> list[Check]:
    """The login owns the target database (or has its owner's privileges), and may create
    schemas and temporary tables (the commit gate) in it."""
    row = conn.execute(
        "SELECT pg_catalog.pg_get_userbyid(d.datdba), pg_catalog.pg_has_role(d.datdba, 'USAGE'), "
        "pg_catalog.has_database_privilege(d.oid, 'CREATE'), "
        "pg_catalog.has_database_privilege(d.oid, 'TEMPORARY') "
        "FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()"
    ).fetchone()
    assert row is not None
    owner, has_owner_privileges, may_create, may_temp = row
    db, user = quote_ident(database), me.sql_user
    if not has_owner_privileges:
        raise InsufficientPrivilege(
            f"role '{me.user}' does not own database {database} (its owner is {owner}), and "
            f"the restore replaces what is in it: ALTER DATABASE {db} OWNER TO {user} (or GRANT "
            f"{quote_ident(str(owner))} TO {user})"
        )
    if not may_create:
        raise InsufficientPrivilege(
            f"role '{me.user}' cannot create schemas in database {database}: "
            f"GRANT CREATE ON DATABASE {db} TO {user}"
        )
    if not may_temp:
        raise InsufficientPrivilege(
            f"role '{me.user}' cannot create temporary tables in database {database}, which "
            f"the restore's commit check uses: GRANT TEMPORARY ON DATABASE {db} TO {user}"
        )
    how = (
        "superuser"
        if me.superuser
        else (
            f"owner of {database}"
            if owner == me.user
            else f"member of {owner}, owner of {database}"
        )
    )
    return [Check("privileges", f"{me.user} is {how}: may create schemas and temporary tables")]


def _check_createdb(connector: Connector, me: Login) -> Check:
    if not (me.superuser or me.createdb):
        raise cannot_create_database(connector)
    return Check(
        "privileges",
        f"{me.user} may create database {connector.url.database} "
        f"({'superuser' if me.superuser else 'CREATEDB'})",
    )


def cannot_create_database(connector: Connector) -> InsufficientPrivilege:
    database, user = connector.url.database, quote_ident(connector.user)
    return InsufficientPrivilege(
        f"database '{database}' does not exist on {connector.where} and role "
        f"'{connector.user}' may not create it: ALTER ROLE {user} CREATEDB (or create it "
        f"first: CREATE DATABASE {quote_ident(database)} OWNER {user})"
    )


def _check_droppable(
    me: Login, objects: list[OwnedObject], manifest: Manifest, options: RestoreOptions
) -> Check:
    """Everything the restore drops by name, the login may drop: by default, what emptying the
    database drops (schemas with all inside them, extensions outside them, large objects,
    publications...); with keep_extra_objects, the target's objects that the backup also has
    (pg_restore --clean drops and recreates them)."""
    incoming = (
        set(manifest.objects)
        if manifest.objects is not None
        else {f"table {name}" for name in manifest.row_counts}
    )
    if options.keep_extra_objects:
        # Existing schemas are kept as they are; large objects clash only by OID.
        dropped = [
            o for o in objects if o.label in incoming and o.kind not in ("schema", "large object")
        ]
    else:
        dropped = [o for o in objects if o.dropped_by_name]
    refused = [o for o in dropped if not o.may_drop]
    if refused:
        raise _cannot_drop(me, refused[0], in_backup=refused[0].label in incoming, options=options)
    what = "replaces" if options.keep_extra_objects else "drops or replaces"
    return Check(
        "privileges", f"{me.user} may drop the {_count(len(dropped), 'object')} the restore {what}"
    )


def _cannot_drop(
    me: Login, obj: OwnedObject, *, in_backup: bool, options: RestoreOptions
) -> InsufficientPrivilege:
    user = me.sql_user
    why = "which the restore replaces" if in_backup else "which the restore drops (it is not in "
    why += "" if in_backup else "the backup)"
    if obj.kind == "large object":
        subject = (
            f"large object {obj.sql_name}"
            if obj.count == 1
            else f"{obj.count} large objects (the first is {obj.sql_name})"
        )
        fix = f"ALTER LARGE OBJECT {obj.sql_name} OWNER TO {user}" + (
            " (for each)" if obj.count > 1 else ""
        )
    else:
        subject = f"{obj.kind} {obj.sql_name}"
        if obj.kind in ("event trigger", "foreign data wrapper"):
            fix = (
                f"only a superuser may own it: have a superuser DROP {obj.kind.upper()} "
                f"{obj.sql_name} first, or restore as a superuser"
            )
        elif obj.kind == "extension":
            fix = f"have {obj.owner} DROP EXTENSION {obj.sql_name} first, or restore as {obj.owner}"
        else:
            fix = f"ALTER {obj.kind.upper()} {obj.sql_name} OWNER TO {user}"
    if not in_backup and not options.keep_extra_objects:
        fix += " (or restore with --keep-extra-objects, which leaves it in place)"
    return InsufficientPrivilege(
        f"role '{me.user}' cannot drop {subject} (owned by {obj.owner}), {why}: {fix}"
    )


def _check_manifest_roles(
    conn: psycopg.Connection[Any],
    connector: Connector,
    me: Login,
    manifest: Manifest,
    options: RestoreOptions,
    notes: list[str],
) -> Check:
    """The roles the manifest lists exist (owners unless no_owner, grantees unless
    no_privileges). The manifest does not say which role is which: with only --no-owner,
    missing roles are noted, and the archive's own SQL is checked before anything changes."""
    if options.no_owner and options.no_privileges:
        return Check("roles", "not needed: --no-owner --no-privileges")
    if manifest.roles is None:
        notes.append(
            "the manifest does not list the backup's roles (written by an older Lifeboat): the "
            "restore checks them in the archive before it changes anything"
        )
        return Check("roles", "to be checked in the archive before the target changes")
    existing = existing_roles(conn, manifest.roles)
    missing = sorted(set(manifest.roles) - set(existing))
    if missing and not options.no_owner:
        raise RoleMissing(
            f"the backup names roles that do not exist on {connector.where}: "
            f"{', '.join(missing)}; create them first (roles belong to the server, not to a "
            f"database backup), or restore with --no-owner --no-privileges so that the restored "
            f"objects belong to '{me.user}' and no GRANT names them"
        )
    if missing:
        notes.append(
            f"roles {', '.join(missing)} named by the backup do not exist on {connector.where}: "
            "with --no-owner that is fine for owners; if the backup GRANTs to them, the restore "
            "stops before changing anything (add --no-privileges)"
        )
    found = sorted(existing)
    if not manifest.roles:
        return Check("roles", "the backup names no roles")
    detail = f"the backup's roles exist: {', '.join(found)}" if found else ""
    if missing:
        detail += ("; " if detail else "") + f"missing, as owners not needed: {', '.join(missing)}"
    return Check("roles", detail)
