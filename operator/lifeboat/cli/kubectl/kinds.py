"""The kinds the plugin names, and the words people type for them (`backup`, `lbb`, `backups`)."""

from __future__ import annotations

from dataclasses import dataclass

from lifeboat.api import (
    BACKUP_KIND,
    BACKUP_PLURAL,
    RESTORE_KIND,
    RESTORE_PLURAL,
    SCHEDULE_KIND,
    SCHEDULE_PLURAL,
)


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    word: str
    """How the plugin prints it: backup/shop-db."""
    aliases: frozenset[str]


BACKUP = Kind(BACKUP_KIND, BACKUP_PLURAL, "backup", frozenset({"backup", "backups", "lbb"}))
RESTORE = Kind(RESTORE_KIND, RESTORE_PLURAL, "restore", frozenset({"restore", "restores", "lbr"}))
SCHEDULE = Kind(
    SCHEDULE_KIND,
    SCHEDULE_PLURAL,
    "schedule",
    frozenset({"schedule", "schedules", "backupschedule", "backupschedules", "lbs"}),
)
KINDS = (SCHEDULE, BACKUP, RESTORE)
"""In the order `list` prints them."""


class UnknownKind(ValueError):
    pass


def resolve_kind(word: str, allowed: tuple[Kind, ...] = KINDS) -> Kind:
    """The kind a word names (case-insensitive; `backup.lifeboat.dev` too)."""
    text = word.lower().removesuffix(".lifeboat.dev")
    for kind in allowed:
        if text in kind.aliases:
            return kind
    names = ", ".join(kind.word for kind in allowed)
    raise UnknownKind(f"{word!r} is not a kind this command takes; use {names}")


def split_reference(text: str, allowed: tuple[Kind, ...] = KINDS) -> tuple[Kind, str]:
    """`schedule/nightly` -> (SCHEDULE, "nightly")."""
    word, slash, name = text.partition("/")
    if not slash or not name or "/" in name:
        names = " or ".join(f"{kind.word}/NAME" for kind in allowed)
        raise UnknownKind(f"{text!r} is not a reference; write {names}")
    return resolve_kind(word, allowed), name
