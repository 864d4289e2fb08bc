"""What a login may do, from the server's own `SHOW GRANTS`, and the privileges each operation
needs (docs/privileges.md, proven by tests/integration/test_privileges_mysql.py).

`SHOW GRANTS` is read rather than information_schema because on MariaDB only it includes the
privileges of the login's enabled roles. Database-level grants are patterns (`app\\_%`.*), matched
as the server matches them; table- and column-level grants are not counted: the operations need
privileges on the whole database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lifeboat.worker.engines.mysql.connection import Account, Session, quote
from lifeboat.worker.errors import InsufficientPrivilege

BACKUP_PRIVILEGES = ("SELECT", "SHOW VIEW", "TRIGGER", "EVENT")
"""mariadb-dump --single-transaction takes no table locks: LOCK TABLES is not needed. Without
TRIGGER it silently leaves triggers out; without SHOW VIEW or EVENT it fails."""

RESTORE_PRIVILEGES = (
    "SELECT",
    "INSERT",
    "CREATE",
    "DROP",
    "ALTER",
    "LOCK TABLES",
    "CREATE VIEW",
    "SHOW VIEW",
    "CREATE ROUTINE",
    "ALTER ROUTINE",
    "EVENT",
    "TRIGGER",
)
"""Staging tables in the target database, loading them, one RENAME, re-creating views, routines,
triggers and events: all of it on the target database alone (ALL PRIVILEGES ON db.* has it)."""

DATABASE_PRIVILEGES = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "CREATE",
        "DROP",
        "REFERENCES",
        "INDEX",
        "ALTER",
        "CREATE TEMPORARY TABLES",
        "LOCK TABLES",
        "EXECUTE",
        "CREATE VIEW",
        "SHOW VIEW",
        "CREATE ROUTINE",
        "ALTER ROUTINE",
        "EVENT",
        "TRIGGER",
        "DELETE HISTORY",
        "SHOW CREATE ROUTINE",
    }
)
"""What `ALL PRIVILEGES ON db.*` stands for."""

DEFINER_PRIVILEGES = ("SUPER", "SET USER", "SET_USER_ID", "SET_ANY_DEFINER")
"""Any one lets a login create objects whose DEFINER is another account (MariaDB: SET USER since
10.5, SUPER before; MySQL: SET_USER_ID in 8.0, SET_ANY_DEFINER since 8.2)."""

_GRANT = re.compile(
    r"^GRANT (?P<privileges>.+?) ON (?P<scope>\*\.\*|`(?P<db>(?:[^`]|``)*)`\.\*) TO ",
    re.DOTALL,
)


def _pattern(grant_database: str) -> re.Pattern[str]:
    """A database name in a grant is a LIKE pattern: `_` one character, `%` any, `\\` escapes."""
    out: list[str] = []
    escaped = False
    for char in grant_database:
        if escaped:
            out.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "_":
            out.append(".")
        elif char == "%":
            out.append(".*")
        else:
            out.append(re.escape(char))
    return re.compile("".join(out), re.DOTALL)


@dataclass
class Grants:
    """The login's global and database-level privileges (its own and its enabled roles')."""

    account: Account
    global_privileges: set[str] = field(default_factory=set)
    database_privileges: list[tuple[re.Pattern[str], set[str]]] = field(default_factory=list)

    @classmethod
    def parse(cls, account: Account, lines: Iterable[str]) -> Grants:
        grants = cls(account)
        for line in lines:
            match = _GRANT.match(line)
            if match is None:
                continue  # roles granted, table/column/routine grants, PROXY
            is_global = match.group("scope") == "*.*"
            privileges = _privileges(match.group("privileges"), is_global=is_global)
            if is_global:
                grants.global_privileges |= privileges
            else:
                name = match.group("db").replace("``", "`")
                grants.database_privileges.append((_pattern(name), privileges))
        return grants

    def on_database(self, database: str) -> set[str]:
        held = set(self.global_privileges)
        for pattern, privileges in self.database_privileges:
            if pattern.fullmatch(database):
                held |= privileges
        return held

    def missing(self, database: str, needed: Sequence[str]) -> list[str]:
        held = self.on_database(database)
        return [p for p in needed if p not in held]

    def may_set_definer(self) -> bool:
        return any(p in self.global_privileges for p in DEFINER_PRIVILEGES)

    def require(self, database: str, needed: Sequence[str], *, why: str = "") -> None:
        """Raise InsufficientPrivilege naming every missing privilege and the GRANT that fixes
        it, in one line."""
        missing = self.missing(database, needed)
        if missing:
            because = f" ({why})" if why else ""
            raise InsufficientPrivilege(
                f"user {self.account.sql()} lacks {', '.join(missing)} on {database}{because}: "
                f"{grant_statement(missing, database, self.account)}"
            )


def _privileges(text: str, *, is_global: bool) -> set[str]:
    names = {p.strip().upper() for p in text.split(",")}
    if "ALL PRIVILEGES" in names or "ALL" in names:
        names |= DATABASE_PRIVILEGES
        if is_global:
            names |= {"SUPER", "SET USER"}
    return names


def grant_statement(privileges: Sequence[str], database: str, account: Account) -> str:
    return f"GRANT {', '.join(privileges)} ON {quote(database)}.* TO {account.sql()}"


def read_grants(session: Session) -> Grants:
    account = session.current_account()
    lines = [str(row[0]) for row in session.query("SHOW GRANTS")]
    return Grants.parse(account, lines)
