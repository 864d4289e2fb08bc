"""Names a restore reserves inside the target database, and the map from the backup's tables to
the staged tables that carry them until the swap.

Every reserved name starts with `__lifeboat_<token>_` (the token is random per restore) followed
by its role: `s` a staged table (the backup's, not yet swapped in), `p` a parked table (the
target's, swapped out, dropped once the restore succeeded), `f` a foreign key constraint of a
staged table (InnoDB constraint names are unique per database). Names stay at most 40
characters, so `<name>_ibfk_<n>` constraint names fit MySQL's 64, and end with the original
name's letters so that a person who finds one knows what it holds.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

RESERVED_PREFIX = "__lifeboat_"
STAGED, PARKED, CONSTRAINT = "s", "p", "f"
_MAX_LENGTH = 40
_MAX_IDENTIFIER = 64
_RESERVED = re.compile(r"__lifeboat_(?P<token>[0-9a-f]{6})_(?P<role>[spf])(?P<index>\d+)(?:_|$)")
_IBFK = "_ibfk_"


def new_token() -> str:
    return secrets.token_hex(3)


def reserved_name(token: str, role: str, index: int, hint: str = "") -> str:
    base = f"{RESERVED_PREFIX}{token}_{role}{index}"
    letters = re.sub(r"[^0-9A-Za-z_]", "", hint)
    room = _MAX_LENGTH - len(base) - 1
    return f"{base}_{letters[:room]}" if letters and room > 0 else base


def reserved_role(name: str) -> str | None:
    """STAGED, PARKED or CONSTRAINT for a reserved name, None for any other name."""
    match = _RESERVED.match(name)
    return match.group("role") if match else None


@dataclass(frozen=True)
class ConstraintRename:
    """A foreign key the backup names itself: staged under a reserved name, renamed back once
    the parked tables (which still hold the name) are gone."""

    table: str
    staged: str
    original: str
    definition: str
    """`FOREIGN KEY (...) REFERENCES ... [ON ...]`, as the dump wrote it."""


@dataclass
class StagingNames:
    """The backup's tables (and sequences) and the staged names they are loaded under."""

    token: str
    dumped: set[str]
    """The backup's tables (the manifest's): references to them are staged too."""
    staged: dict[str, str] = field(default_factory=dict)
    constraints: list[ConstraintRename] = field(default_factory=list)

    @classmethod
    def for_tables(cls, token: str, tables: Iterable[str]) -> StagingNames:
        names = cls(token, set(tables))
        for table in sorted(names.dumped):
            names.table(table)
        return names

    def table(self, name: str) -> str:
        """The staged name of `name`, assigned at first use."""
        staged = self.staged.get(name)
        if staged is None:
            staged = reserved_name(self.token, STAGED, len(self.staged), name)
            self.staged[name] = staged
        return staged

    def referenced(self, name: str) -> str:
        """A table a foreign key references: the staged one if the backup has it."""
        return self.table(name) if name in self.dumped or name in self.staged else name

    def constraint(self, table: str, name: str, definition: str) -> str:
        """The name a foreign key of staged `table` gets.

        InnoDB renames constraints called `<table>_ibfk_<n>` with their table, so those become
        `<staged>_ibfk_<n>` and come back by themselves in the RENAME; others get a reserved name
        and are renamed after the swap."""
        staged_table = self.table(table)
        if name.startswith(table + _IBFK):
            candidate = staged_table + name[len(table) :]
            if len(candidate) <= _MAX_IDENTIFIER:
                return candidate
        staged = reserved_name(self.token, CONSTRAINT, len(self.constraints))
        self.constraints.append(ConstraintRename(table, staged, name, definition))
        return staged
