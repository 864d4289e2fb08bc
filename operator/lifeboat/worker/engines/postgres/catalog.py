"""What the PostgreSQL catalog says about a database: its user tables, every object as a plan
label, the roles a dump of it names, and server versions as comparable majors.

The same queries describe the source (in the dump's snapshot) and the target (in a restore plan),
so the labels of the two compare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg

USER_SCHEMAS = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'"


def not_extension_member(catalog: str, oid: str) -> str:
    """SQL: the object `oid` of `catalog` was not created by CREATE EXTENSION (those objects are
    recreated by the extension, not restored one by one)."""
    return (
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d "
        f"WHERE d.classid = 'pg_catalog.{catalog}'::pg_catalog.regclass "
        f"AND d.objid = {oid} AND d.deptype = 'e')"
    )


# Ordinary tables (partitions included) that pg_dump dumps data for: not in system schemas and
# not members of an extension.
_USER_TABLES_FROM = f"""
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND {USER_SCHEMAS} AND {not_extension_member("pg_class", "c.oid")}
ORDER BY 1, 2
"""
USER_TABLES_SQL = "SELECT n.nspname, c.relname" + _USER_TABLES_FROM
# pg_table_size locks each table; only inspect() asks for it, never the snapshot session.
USER_TABLE_SIZES_SQL = (
    "SELECT n.nspname, c.relname, coalesce(pg_catalog.pg_table_size(c.oid), 0)" + _USER_TABLES_FROM
)

# Every object a restore creates or drops as a whole, labelled '<kind> <schema>.<name>' (names
# unquoted, as the manifest names tables). Objects inside tables (indexes, constraints,
# triggers, policies) go with their table. Per object: its name as SQL writes it, its owner, and
# whether emptying the database drops it by name (DROP checks that the role owns it) or with its
# schema (DROP SCHEMA ... CASCADE checks the schema only). Large objects are one group per owner.
_OBJECTS_SQL = f"""
SELECT 'schema ' || n.nspname, 'schema', pg_catalog.quote_ident(n.nspname), n.nspowner, true, 1
FROM pg_catalog.pg_namespace n
WHERE {USER_SCHEMAS} AND {not_extension_member("pg_namespace", "n.oid")}
UNION ALL
SELECT k.kind || ' ' || n.nspname || '.' || c.relname, k.kind,
       pg_catalog.format('%I.%I', n.nspname, c.relname), c.relowner, false, 1
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN (VALUES ('r', 'table'), ('p', 'table'), ('v', 'view'), ('m', 'materialized view'),
             ('S', 'sequence'), ('f', 'foreign table')) AS k (relkind, kind)
  ON k.relkind = c.relkind::text
WHERE {USER_SCHEMAS} AND {not_extension_member("pg_class", "c.oid")}
UNION ALL
SELECT k.kind || ' ' || n.nspname || '.' || p.proname
         || '(' || pg_catalog.oidvectortypes(p.proargtypes) || ')', k.kind,
       pg_catalog.format('%I.%I(%s)', n.nspname, p.proname,
                         pg_catalog.oidvectortypes(p.proargtypes)), p.proowner, false, 1
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
JOIN (VALUES ('f', 'function'), ('w', 'function'), ('p', 'procedure'), ('a', 'aggregate'))
  AS k (prokind, kind) ON k.prokind = p.prokind::text
WHERE {USER_SCHEMAS} AND {not_extension_member("pg_proc", "p.oid")}
UNION ALL
SELECT k.kind || ' ' || n.nspname || '.' || t.typname, k.kind,
       pg_catalog.format('%I.%I', n.nspname, t.typname), t.typowner, false, 1
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
JOIN (VALUES ('e', 'type'), ('r', 'type'), ('c', 'type'), ('d', 'domain'))
  AS k (typtype, kind) ON k.typtype = t.typtype::text
WHERE {USER_SCHEMAS} AND {not_extension_member("pg_type", "t.oid")}
  AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_catalog.pg_class c
                            WHERE c.oid = t.typrelid) = 'c')
UNION ALL
SELECT 'extension ' || x.extname, 'extension', pg_catalog.quote_ident(x.extname), x.extowner,
       NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n
                   WHERE n.oid = x.extnamespace AND {USER_SCHEMAS}), 1
FROM pg_catalog.pg_extension x WHERE x.extname <> 'plpgsql'
UNION ALL
SELECT 'large objects', 'large object', pg_catalog.min(oid::bigint)::text, lomowner, true,
       pg_catalog.count(*)
FROM pg_catalog.pg_largeobject_metadata GROUP BY lomowner
UNION ALL
SELECT 'publication ' || pubname, 'publication', pg_catalog.quote_ident(pubname), pubowner,
       true, 1
FROM pg_catalog.pg_publication
UNION ALL
SELECT 'event trigger ' || evtname, 'event trigger', pg_catalog.quote_ident(evtname), evtowner,
       true, 1
FROM pg_catalog.pg_event_trigger e
WHERE {not_extension_member("pg_event_trigger", "e.oid")}
UNION ALL
SELECT 'foreign server ' || srvname, 'server', pg_catalog.quote_ident(srvname), srvowner,
       true, 1
FROM pg_catalog.pg_foreign_server s
WHERE {not_extension_member("pg_foreign_server", "s.oid")}
UNION ALL
SELECT 'foreign-data wrapper ' || fdwname, 'foreign data wrapper',
       pg_catalog.quote_ident(fdwname), fdwowner, true, 1
FROM pg_catalog.pg_foreign_data_wrapper w
WHERE {not_extension_member("pg_foreign_data_wrapper", "w.oid")}
"""
_OWNED_OBJECTS_SQL = f"""
SELECT o.label, o.kind, o.sql_name, pg_catalog.pg_get_userbyid(o.owner),
       pg_catalog.pg_has_role(o.owner, 'USAGE'), o.by_name, o.count
FROM ({_OBJECTS_SQL}) AS o (label, kind, sql_name, owner, by_name, count)
ORDER BY 1, 4
"""


@dataclass(frozen=True)
class OwnedObject:
    """An object of the target, as a restore plan sees it."""

    label: str
    """'table shop.orders': the plan's label."""
    kind: str
    """As ALTER names it: table, view, function, schema, extension, large object..."""
    sql_name: str
    """As SQL writes it ('shop."order lines"', 'shop.total(integer)'; the first large object's
    OID for a group of large objects)."""
    owner: str
    may_drop: bool
    """The login has its owner's privileges (is the owner, a member of it, or a superuser)."""
    dropped_by_name: bool
    """Emptying the database drops it by name, not with its schema."""
    count: int = 1


_TEMPORARY = "~ '^pg_(toast_)?temp_'"

# Roles a dump of this database names: owners, grantees and policy roles recorded in
# pg_shdepend for this database, except the owners of extensions and of their members (CREATE
# EXTENSION makes the restoring role the owner), subscriptions (never restored) and other
# sessions' temporary objects. pg_shdepend leaves out pinned roles, so owners that are the
# bootstrap superuser (RDS's rdsadmin, a self-managed cluster's postgres) are added from the
# catalogs themselves.
# Built-in roles (pg_database_owner, pg_read_all_data...) exist on every server that can load
# the dump and are left out.
_NAMED_ROLES_SQL = f"""
WITH this AS (
  SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()
), named AS (
  SELECT s.refobjid AS role
  FROM pg_catalog.pg_shdepend s
  WHERE s.dbid = (SELECT oid FROM this)
    AND s.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
    AND s.deptype IN ('o', 'a', 'r')
    AND s.classid NOT IN ('pg_catalog.pg_extension'::pg_catalog.regclass,
                          'pg_catalog.pg_subscription'::pg_catalog.regclass)
    AND NOT (s.deptype = 'o' AND EXISTS (
      SELECT 1 FROM pg_catalog.pg_depend d
      WHERE d.classid = s.classid AND d.objid = s.objid AND d.deptype = 'e'))
    AND NOT (s.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND EXISTS (
      SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n
        ON n.oid = c.relnamespace WHERE c.oid = s.objid AND n.nspname {_TEMPORARY}))
    AND NOT (s.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND EXISTS (
      SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n
        ON n.oid = p.pronamespace WHERE p.oid = s.objid AND n.nspname {_TEMPORARY}))
    AND NOT (s.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND EXISTS (
      SELECT 1 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n
        ON n.oid = t.typnamespace WHERE t.oid = s.objid AND n.nspname {_TEMPORARY}))
  UNION
  SELECT n.nspowner FROM pg_catalog.pg_namespace n
  WHERE {USER_SCHEMAS} AND n.nspname <> 'public'
  UNION
  SELECT c.relowner FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE {USER_SCHEMAS} AND {not_extension_member("pg_class", "c.oid")}
  UNION
  SELECT p.proowner FROM pg_catalog.pg_proc p
  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
  WHERE {USER_SCHEMAS} AND {not_extension_member("pg_proc", "p.oid")}
  UNION
  SELECT lomowner FROM pg_catalog.pg_largeobject_metadata
)
SELECT r.rolname FROM pg_catalog.pg_roles r
WHERE r.oid IN (SELECT role FROM named) AND r.rolname !~ '^pg_'
ORDER BY 1
"""


def user_tables(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str]]:
    """(schema, table, 'schema.table' as the manifest names it) for every user table."""
    return [(s, t, f"{s}.{t}") for s, t in conn.execute(USER_TABLES_SQL).fetchall()]


def object_labels(conn: psycopg.Connection[Any]) -> list[str]:
    """Every object of the database that a restore creates or drops, as plan labels."""
    return sorted({str(row[0]) for row in conn.execute(_OBJECTS_SQL).fetchall()})


def owned_objects(conn: psycopg.Connection[Any]) -> list[OwnedObject]:
    """Every object of the database that a restore creates or drops, with its owner and whether
    the login may drop it."""
    return [
        OwnedObject(
            label=str(label),
            kind=str(kind),
            sql_name=str(sql_name),
            owner=str(owner),
            may_drop=bool(may_drop),
            dropped_by_name=bool(by_name),
            count=int(count),
        )
        for label, kind, sql_name, owner, may_drop, by_name, count in conn.execute(
            _OWNED_OBJECTS_SQL
        ).fetchall()
    ]


def named_roles(conn: psycopg.Connection[Any]) -> list[str]:
    """The roles a dump of the connected database names (owners, grantees, policy roles)."""
    return [str(row[0]) for row in conn.execute(_NAMED_ROLES_SQL).fetchall()]


def major_version(version: str) -> tuple[int, ...] | None:
    """The major version of a PostgreSQL version string ('15.8 (Debian...)' -> (15,),
    '9.6.24' -> (9, 6), '17beta1' -> (17,)), or None when it is not one."""
    match = re.match(r"\s*(\d+)(?:\.(\d+))?", version)
    if match is None:
        return None
    first = int(match.group(1))
    if first < 10:
        return (first, int(match.group(2) or 0))
    return (first,)


def major_of_number(server_version_num: int) -> tuple[int, ...]:
    """The major version of libpq's numeric server version (150008 -> (15,), 90624 -> (9, 6))."""
    if server_version_num >= 100000:
        return (server_version_num // 10000,)
    return (server_version_num // 10000, server_version_num // 100 % 100)


def show_major(major: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in major)


# Reserved keywords (and those that cannot name a type or function) of PostgreSQL 15: a name
# that is one of them must be quoted even when it is plain lowercase.
_RESERVED_WORDS = """
    all analyse analyze and any array as asc asymmetric authorization binary both case cast
    check collate collation column concurrently constraint create cross current_catalog
    current_date current_role current_schema current_time current_timestamp current_user default
    deferrable desc distinct do else end except false fetch for foreign freeze from full grant
    group having ilike in initially inner intersect into is isnull join lateral leading left like
    limit localtime localtimestamp natural not notnull null offset on only or order outer
    overlaps placing primary references returning right select session_user similar some
    symmetric table tablesample then to trailing true union unique user using variadic verbose
    when where window with"""
_RESERVED = frozenset(_RESERVED_WORDS.split())


def quote_ident(name: str) -> str:
    """`name` as SQL writes it, for the GRANTs our messages suggest: bare when it can be."""
    if re.fullmatch(r"[a-z_][a-z0-9_$]*", name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"
