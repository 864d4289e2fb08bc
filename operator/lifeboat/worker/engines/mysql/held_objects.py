"""Views, routines, triggers and events that a restore holds back from the staging load.

Their names are per database, so they cannot be created beside the target's own while the
backup's tables are staged: the staging load keeps their sections of the dump (`HeldSection`)
and the swap creates them once the backup's tables carry their real names. Each section is run
statement by statement on Lifeboat's own session, with the dump's own session settings
(`SET sql_mode`, `character_set_client`, `time_zone`), so each object is created exactly as the
`mariadb` client would create it, and no client command (`\\!`) can ever run.

On MariaDB, routines and events use `CREATE OR REPLACE` instead of the dump's DROP + CREATE, and
views are always created with `CREATE OR REPLACE` in rounds (a view that uses another view waits
for it) instead of the dump's placeholder views: no object of the target disappears for a moment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pymysql

from lifeboat.worker.engines.mysql.connection import Session
from lifeboat.worker.errors import RestoreError

TRIGGERS, PLACEHOLDER, EVENTS, ROUTINES, VIEW = (
    "triggers",
    "view placeholder",
    "events",
    "routines",
    "view",
)

_CODE, _SINGLE, _DOUBLE, _BACKTICK, _COMMENT = range(5)
_DROP_ROUTINE = re.compile(rb"^/\*!50003 DROP (?:PROCEDURE|FUNCTION) IF EXISTS ")
_CREATE_ROUTINE = re.compile(rb"^CREATE DEFINER=")
_DROP_EVENT = re.compile(rb"^/\*!50106 DROP EVENT IF EXISTS ")
_CREATE_EVENT = re.compile(rb"^/\*!50106 CREATE\*/")
_DROP_VIEW = re.compile(rb"^/\*!50001 DROP VIEW IF EXISTS ")
_CREATE_VIEW = re.compile(rb"^/\*!50001 CREATE ")
# A view whose tables, views or functions do not exist yet: try again in the next round.
_NOT_YET = {1146, 1356, 1305, 1449}
_SESSION_SETTING = re.compile(rb"^/\*!\d{5} SET ")
_SETTING = re.compile(rb"^(?:/\*!\d{5} )?SET [@A-Za-z_]")
# What each held section may hold besides session settings: it runs against the target.
_ALLOWED = {
    TRIGGERS: re.compile(rb"^/\*!50003 CREATE\*/ (?:/\*!50017 DEFINER=.*?\*/ )?/\*!50003 TRIGGER "),
    ROUTINES: re.compile(
        rb"^(?:CREATE DEFINER=\S+ (?:PROCEDURE|FUNCTION) "
        rb"|/\*!50003 DROP (?:PROCEDURE|FUNCTION) IF EXISTS )"
    ),
    EVENTS: re.compile(rb"^/\*!50106 (?:CREATE\*/ |DROP EVENT IF EXISTS )"),
    VIEW: re.compile(rb"^/\*!50001 (?:DROP VIEW IF EXISTS |CREATE )"),
}


@dataclass
class HeldSection:
    """One held-back part of the dump: the triggers of a table, the events, the routines, one
    view (or its placeholder, which is never run)."""

    kind: str
    name: str
    lines: list[bytes] = field(default_factory=list)

    def statements(self) -> list[bytes]:
        return split_statements(self.lines)


def split_statements(lines: Iterable[bytes]) -> list[bytes]:
    """The statements of dump SQL, as the `mariadb` client splits them: `DELIMITER` lines change
    the delimiter, which ends a statement at the end of a line outside quotes and comments.
    Comment-only statements are left out; the delimiter is not part of a statement."""
    delimiter = b";"
    statements: list[bytes] = []
    current: list[bytes] = []
    has_code = False
    state = _CODE
    for raw in lines:
        line = raw.rstrip(b"\r\n")
        if state == _CODE and not has_code and line.startswith(b"DELIMITER "):
            delimiter = line[len(b"DELIMITER ") :].strip() or b";"
            current = []
            continue
        in_code = state == _CODE
        state, code_end, line_has_code = _lex(line, state)
        if in_code and not has_code and not line_has_code and state == _CODE:
            continue  # comment lines between statements
        has_code = has_code or line_has_code
        code = line[:code_end].rstrip()
        if state == _CODE and has_code and code.endswith(delimiter):
            current.append(code[: len(code) - len(delimiter)])
            statement = b"\n".join(current).strip()
            if statement:
                statements.append(statement)
            current = []
            has_code = False
        else:
            current.append(line)
    return statements


def _lex(line: bytes, state: int) -> tuple[int, int, bool]:
    """Scan one line from `state`: the state at its end, where its code ends (a trailing line
    comment excluded) and whether it held any code."""
    i = 0
    n = len(line)
    code_end = 0
    has_code = False
    while i < n:
        c = line[i : i + 1]
        if state == _CODE:
            if c in b" \t":
                i += 1
                continue
            dashes = line.startswith(b"--", i) and line[i + 2 : i + 3] in (b"", b" ", b"\t")
            if c == b"#" or dashes:
                return state, code_end, has_code
            if line.startswith(b"/*", i):
                if line.startswith(b"/*!", i) or line.startswith(b"/*M!", i):
                    i += 3 if line.startswith(b"/*!", i) else 4
                    has_code = True
                    code_end = i
                    continue
                state = _COMMENT
                i += 2
                continue
            has_code = True
            if c == b"'":
                state = _SINGLE
            elif c == b'"':
                state = _DOUBLE
            elif c == b"`":
                state = _BACKTICK
            i += 1
            code_end = i
        elif state == _COMMENT:
            end = line.find(b"*/", i)
            if end < 0:
                return state, code_end, has_code
            state = _CODE
            i = end + 2
        else:
            quote = {_SINGLE: b"'", _DOUBLE: b'"', _BACKTICK: b"`"}[state]
            if c == b"\\" and state != _BACKTICK:
                i += 2
            else:
                if c == quote:
                    state = _CODE
                i += 1
            code_end = min(i, n)
    return state, code_end, has_code


class HeldObjects:
    """The held-back sections of one dump, and the dump's session settings to run them with."""

    def __init__(self, sections: list[HeldSection], preamble: list[bytes]) -> None:
        self.sections = sections
        self._settings = [s for s in split_statements(preamble) if _SESSION_SETTING.match(s)]

    @staticmethod
    def check(section: HeldSection) -> list[bytes]:
        """The section's statements, refusing any that is not what mariadb-dump writes there."""
        allowed = _ALLOWED[section.kind]
        statements = section.statements()
        for statement in statements:
            if not (_SETTING.match(statement) or allowed.match(statement)):
                raise RestoreError(
                    f"unexpected statement among the backup's {section.kind}: "
                    f"{statement[:80]!r}; Lifeboat will not run it against the target database"
                )
        return statements

    def _enter(self, session: Session) -> None:
        """The dump's own session settings (time zone, sql_mode, names), as at its top."""
        for statement in self._settings:
            session.execute(statement)

    def of_kind(self, kind: str) -> Iterator[HeldSection]:
        return (s for s in self.sections if s.kind == kind)

    def run(self, session: Session, section: HeldSection, *, mariadb_server: bool) -> None:
        """Create what a triggers, routines or events section holds, as the dump would."""
        try:
            self._enter(session)
            for statement in self.check(section):
                if mariadb_server:
                    if _DROP_ROUTINE.match(statement) or _DROP_EVENT.match(statement):
                        continue  # replaced below, without a moment of absence
                    statement = _CREATE_ROUTINE.sub(b"CREATE OR REPLACE DEFINER=", statement, 1)
                    statement = _CREATE_EVENT.sub(b"/*!50106 CREATE OR REPLACE*/", statement, 1)
                session.execute(statement)
        finally:
            session.reset()

    def create_views(self, session: Session) -> None:
        """Create (or replace) every view, in rounds: one that uses another view, or a function
        created later, fails until that exists."""
        pending = list(self.of_kind(VIEW))
        while pending:
            failed: list[tuple[HeldSection, pymysql.MySQLError]] = []
            for section in pending:
                try:
                    self._run_view(session, section)
                except pymysql.MySQLError as exc:
                    if not exc.args or exc.args[0] not in _NOT_YET:
                        raise
                    failed.append((section, exc))
            if len(failed) == len(pending):
                raise failed[0][1]
            pending = [section for section, _ in failed]

    def _run_view(self, session: Session, section: HeldSection) -> None:
        try:
            self._enter(session)
            for statement in self.check(section):
                if _DROP_VIEW.match(statement):
                    continue
                session.execute(
                    _CREATE_VIEW.sub(b"/*!50001 CREATE OR REPLACE ", statement, count=1)
                )
        finally:
            session.reset()
