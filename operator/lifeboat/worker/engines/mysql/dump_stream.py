"""Reading a mariadb-dump stream as it flows: exact row counts, table boundaries, the objects and
DEFINERs it names, and, for a restore, the stream rewritten for staging.

The scanner works on whole lines and keeps only the unfinished last line. It relies on how
mysqldump writes data: strings are escaped (a newline is `\\n`), binary is hex (`--hex-blob`), so
a raw newline never occurs inside a value, and an INSERT ends with `;` at the end of a line. Rows
of an INSERT are counted over whole runs of lines with bytes operations that run in C, never per
byte or per row in Python (`count_rows`); a row that does not parse stops the scan with an error
rather than letting the manifest lie.

The dump is a sequence of sections, each opened by a title comment (`-- Table structure for
table `t``, `-- Dumping data for table `t``, `-- Dumping routines for database 'd'`, ...); the
triggers of a table follow its data without a title. Titles inside `DELIMITER` blocks are body
text of routines, triggers or events, never titles.

For a restore (`staging` given), the scanner forwards to `sink`:
  * table, sequence and data sections with every table name the statements act on replaced by
    its staged name (`DROP TABLE`, `CREATE TABLE`, foreign keys' `CONSTRAINT` and `REFERENCES`,
    `LOCK TABLES`, `ALTER TABLE ... KEYS`, `INSERT INTO`, `CREATE/DROP SEQUENCE`, `SETVAL`); a
    statement there that it does not know is refused (it could act on the target's live table);
  * everything else (session settings) as it is;
and holds back the triggers, view, routine and event sections (`held`), whose names are per
database: the swap creates them after the backup's tables took their real names.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lifeboat.worker.engines.mysql.held_objects import (
    EVENTS,
    PLACEHOLDER,
    ROUTINES,
    TRIGGERS,
    VIEW,
    HeldSection,
)
from lifeboat.worker.engines.mysql.reserved_names import StagingNames
from lifeboat.worker.errors import DumpFailed

_IDENT = rb"`((?:[^`]|``)+)`"
_TABLE_TITLE = re.compile(rb"-- Table structure for table " + _IDENT)
_SEQUENCE_TITLE = re.compile(rb"-- Sequence structure for " + _IDENT)
_DATA_TITLE = re.compile(rb"-- Dumping data for table " + _IDENT)
_PLACEHOLDER_TITLE = re.compile(rb"-- Temporary (?:table|view) structure for view " + _IDENT)
_VIEW_TITLE = re.compile(rb"-- Final view structure for view " + _IDENT)
_EVENTS_TITLE = b"-- Dumping events for database "
_ROUTINES_TITLE = b"-- Dumping routines for database "
_COMPLETED = b"-- Dump completed"
_TRAILER = re.compile(
    rb"/\*!4\d{4} SET (?:TIME_ZONE=@OLD_TIME_ZONE|SQL_MODE=@OLD_SQL_MODE"
    rb"|FOREIGN_KEY_CHECKS=@OLD_FOREIGN_KEY_CHECKS)"
)
_SANDBOX_LINE = b"/*M!999999\\-"

_INSERT_HEAD = re.compile(rb"INSERT INTO " + _IDENT + rb" VALUES ?")
# One row of an extended INSERT: parentheses around numbers, NULL, 0x.. and quoted strings (with
# backslash escapes). Possessive quantifiers keep a malformed row from backtracking for ever.
_ROW = re.compile(rb"\((?:[^'()]++|'(?:[^'\\]++|\\.)*+')*+\)", re.DOTALL)
_ROW_SEPARATORS = b" ,\t\r\n"
_ALL_BUT_PARENTHESES_AND_QUOTES = bytes(b for b in range(256) if b not in b"()'")


def _statement_end(buf: bytes, start: int, end: int) -> int:
    """Where the INSERT that runs at `start` ends (its `;` at the end of a line), or -1.

    A `;` is looked for with memchr; one inside a string (not followed by a newline) is skipped.
    Data full of semicolons falls back to searching for the pair."""
    stop = buf.find(b";", start, end)
    misses = 0
    while stop >= 0 and buf[stop + 1] != 0x0A:
        misses += 1
        if misses > 16:
            return buf.find(b";\n", stop, end)
        stop = buf.find(b";", stop + 1, end)
    return stop


def count_rows(values: bytes) -> int | None:
    r"""Rows in a run of an extended INSERT's rows (`(..),(..)` or one row per line), or None
    when the fast way cannot be sure (a string holds a parenthesis, or the text is not rows):
    then the row regex decides, and rejects what does not parse.

    Escapes go first (`\\` pairs, then `\'`), so every quote left opens or closes a string.
    Everything but parentheses and quotes is then deleted: rows `(1,'a','b'),(2,'c','d')` leave
    the skeleton `('''')('''')`. Dropping adjacent quote pairs from it never moves a parenthesis
    into or out of a string (nothing lies between the two quotes), so if no quote is left, no
    string held a parenthesis: every parenthesis delimits a row and the skeleton must be exactly
    `()()...()`, one pair per row. Each step is one bytes operation over the whole run, in C.
    What lies between the rows is not looked at: mysqldump writes `,` or `,\n` there, and text
    that is not rows at all has no parentheses and is left to the regex.
    """
    text = values
    if b"\\" in text:
        text = text.replace(b"\\\\", b"").replace(b"\\'", b"")
    skeleton = text.translate(None, _ALL_BUT_PARENTHESES_AND_QUOTES)
    if b"'" in skeleton:
        skeleton = skeleton.replace(b"''", b"")
        if b"'" in skeleton:
            return None
    rows = len(skeleton) // 2
    if len(skeleton) % 2 or skeleton.count(b"()") != rows:
        return None
    if rows == 0 and text.strip(_ROW_SEPARATORS):
        return None  # text without a single row: let the regex say what it is
    return rows


_NAME = rb"(?:`(?:[^`]|``)+`|[0-9A-Za-z_$\x80-\xff]+)"
_TRIGGER_HEAD = re.compile(
    rb"(?P<head>/\*!50003 CREATE\*/ (?:/\*!50017 DEFINER=.*?\*/ )?/\*!50003 TRIGGER )"
    rb"(?:" + _NAME + rb"\.)?(?P<name>" + _NAME + rb")"
    rb"(?P<mid>\s+(?:BEFORE|AFTER)\s+(?:INSERT|UPDATE|DELETE)\s+ON\s+)"
    rb"(?:" + _NAME + rb"\.)?(?P<table>" + _NAME + rb")",
    re.IGNORECASE,
)
_ACCOUNT = rb"(?:`(?:[^`]|``)*`(?:@`(?:[^`]|``)*`)?|\S+)"
_CREATE_ROUTINE = re.compile(
    rb"CREATE (?:DEFINER=" + _ACCOUNT + rb" )?(PROCEDURE|FUNCTION) " + _IDENT
)
_CREATE_EVENT = re.compile(
    rb"/\*!50106 CREATE\*/ (?:/\*!50117 DEFINER=" + _ACCOUNT + rb"\*/ )?/\*!50106 EVENT " + _IDENT
)
_DEFINER = re.compile(
    rb"^(?:CREATE |/\*!50013 |/\*!50003 CREATE\*/ /\*!50017 |/\*!50106 CREATE\*/ /\*!50117 )"
    rb"DEFINER=" + _IDENT + rb"(?:@" + _IDENT + rb")?"
)

# Statements of table, sequence and data sections, rewritten for staging.
_DROP_TABLE = re.compile(rb"DROP TABLE IF EXISTS " + _IDENT + rb";$")
_CREATE_TABLE = re.compile(rb"CREATE TABLE " + _IDENT + rb" \($")
_FOREIGN_KEY = re.compile(
    rb"(?P<indent>\s+)CONSTRAINT "
    + _IDENT
    + rb" (?P<head>FOREIGN KEY \((?:[^`()]|`(?:[^`]|``)*`)*\)"
    rb" REFERENCES )(?P<ref>`(?:[^`]|``)+`(?:\.`(?:[^`]|``)+`)?)(?P<rest> \(.*?)(?P<comma>,?)$"
)
_ONE_NAME = re.compile(_IDENT)
_LOCK_TABLE = re.compile(rb"LOCK TABLES " + _IDENT + rb" WRITE;$")
_TABLE_KEYS = re.compile(rb"/\*!40000 ALTER TABLE " + _IDENT + rb" (DISABLE|ENABLE) KEYS \*/;$")
_DROP_SEQUENCE = re.compile(rb"DROP SEQUENCE IF EXISTS " + _IDENT + rb";$")
_CREATE_SEQUENCE = re.compile(rb"CREATE SEQUENCE " + _IDENT + rb" ")
_SETVAL = re.compile(rb"(?:DO|SELECT) SETVAL\(" + _IDENT + rb", ")
_SETTING = re.compile(rb"(?:/\*!\d{5} )?SET [@A-Za-z_]")

_PREAMBLE, _TABLE, _SEQUENCE, _DATA, _INSERT, _TRAILING = (
    "preamble",
    "table",
    "sequence",
    "data",
    "insert",
    "trailer",
)
_STAGED_SECTIONS = (_TABLE, _SEQUENCE, _DATA)


def _name(raw: bytes) -> str:
    return raw.replace(b"``", b"`").decode("utf-8", "replace")


def _bare(raw: bytes) -> str:
    """A name as a trigger header writes it: quoted or bare."""
    if raw.startswith(b"`"):
        return _name(raw[1:-1])
    return raw.decode("utf-8", "replace")


def _q(name: str) -> bytes:
    return b"`" + name.encode().replace(b"`", b"``") + b"`"


class SqlDumpScanner:
    """Reads a mariadb-dump stream as it flows (see the module docstring)."""

    def __init__(
        self,
        *,
        on_table_start: Callable[[str], None] | None = None,
        on_table_done: Callable[[str], None] | None = None,
        sink: Callable[[bytes], object] | None = None,
        staging: StagingNames | None = None,
        unqualify_triggers: bool = False,
        drop_sandbox_line: bool = False,
    ) -> None:
        self.row_counts: dict[str, int] = {}
        self.completed = False
        """True once mariadb-dump's final `-- Dump completed` line went by."""
        self.preamble: list[bytes] = []
        """The session settings at the top of the dump, to run held-back parts with."""
        self.held: list[HeldSection] = []
        self.objects: list[str] = []
        """Every object of the dump, labelled '<kind> <name>' ('table orders')."""
        self.definers: set[str] = set()
        """DEFINER accounts of views, routines, triggers and events, as 'user@host'."""
        self.trigger_tables: dict[str, str] = {}
        """Trigger name -> the table it belongs to."""
        self._on_table_start = on_table_start
        self._on_table_done = on_table_done
        self._sink = sink
        self._staging = staging
        self._unqualify_triggers = unqualify_triggers
        self._drop_sandbox_line = drop_sandbox_line
        self._partial: list[bytes] = []
        self._section = _PREAMBLE
        self._held_section: HeldSection | None = None
        self._table = ""
        self._in_delimiter_block = False
        self._in_create = False
        self._inserting = False

    def feed(self, data: bytes) -> None:
        start = 0
        if self._partial:
            # Complete the line the last chunk cut; the rest of `data` is scanned where it is.
            first = data.find(b"\n") + 1
            if first == 0:
                self._partial.append(data)
                return
            self._partial.append(data[:first])
            head = b"".join(self._partial)
            self._partial = []
            self._scan(head, 0, len(head))
            start = first
        end = data.rfind(b"\n", start) + 1
        if end == 0:
            end = start
        if end < len(data):
            self._partial.append(data[end:] if end else data)
        if end > start:
            self._scan(data, start, end)

    def close(self) -> None:
        """The stream ended: scan the last line if it had no newline; it must not cut a row."""
        if self._partial:
            rest = b"".join(self._partial) + b"\n"
            self._partial = []
            self._scan(rest, 0, len(rest))
        if self._inserting:
            raise DumpFailed(f"the dump ends inside an INSERT into table {self._table}")

    # -- the scan ----------------------------------------------------------------------------------

    def _scan(self, buf: bytes, start: int, end: int) -> None:
        """Scan the whole lines buf[start:end]."""
        out: list[bytes] = []
        forward_from = start
        pos = start
        while pos < end:
            if self._inserting:
                stop = _statement_end(buf, pos, end)
                rows_end = end if stop < 0 else stop
                self._count_rows(buf[pos:rows_end])
                pos = end if stop < 0 else stop + 2
                if stop >= 0:
                    self._inserting = False
                continue
            if self._section == _DATA and buf.startswith(b"INSERT INTO ", pos):
                head = _INSERT_HEAD.match(buf, pos)
                if head is None:
                    line = buf[pos : buf.find(b"\n", pos)][:80]
                    raise DumpFailed(f"cannot count rows of an unexpected statement: {line!r}")
                self._table = _name(head.group(1))
                self.row_counts.setdefault(self._table, 0)
                self._inserting = True
                if self._staging is not None:
                    out.append(buf[forward_from:pos])
                    staged = _q(self._staging.table(self._table))
                    out.append(b"INSERT INTO " + staged + buf[head.end(1) + 1 : head.end()])
                    forward_from = head.end()
                pos = head.end()
                continue
            nl = buf.index(b"\n", pos)
            replacement = self._line(buf[pos:nl])
            if replacement is not None and self._sink is not None:
                out.append(buf[forward_from:pos])
                out.append(replacement)
                forward_from = nl + 1
            pos = nl + 1
        if self._sink is not None:
            out.append(buf[forward_from:end])
            chunk = out[0] if len(out) == 1 else b"".join(out)
            if chunk:
                self._sink(chunk)

    def _count_rows(self, rows: bytes) -> None:
        fast = count_rows(rows)
        if fast is not None:
            self.row_counts[self._table] += fast
            return
        rest, n = _ROW.subn(b"", rows)
        if rest.translate(None, _ROW_SEPARATORS):
            raise DumpFailed(
                f"cannot count rows of table {self._table}: unexpected text in its INSERT "
                f"({rest.translate(None, _ROW_SEPARATORS)[:60]!r})"
            )
        self.row_counts[self._table] += n

    def _line(self, line: bytes) -> bytes | None:
        """Track sections and objects; return what to forward instead of the line (b"" drops
        it), or None to forward it as it is."""
        if line.startswith(b"DELIMITER "):
            self._in_delimiter_block = line.strip() != b"DELIMITER ;"
            return self._route(line)
        if self._in_delimiter_block:
            return self._route(self._object_line(line))
        if line.startswith(b"-- "):
            self._title(line)
            return self._route(line)
        if self._section == _DATA and line == b"UNLOCK TABLES;":
            if self._on_table_done is not None:
                self._on_table_done(self._table)
            forwarded = self._route(line)
            self._hold(TRIGGERS, self._table)
            return forwarded
        if self._section != _PREAMBLE and _TRAILER.match(line):
            self._enter(_TRAILING)
        if self._section == _PREAMBLE and line.startswith(b"/*"):
            self.preamble.append(line + b"\n")
            if self._drop_sandbox_line and line.startswith(_SANDBOX_LINE):
                return b""
        if self._staging is not None:
            if self._section in _STAGED_SECTIONS:
                return self._route(self._staged(line))
            if self._section in (_PREAMBLE, _TRAILING):
                return self._route(self._setting(line))
        return self._route(self._object_line(line))

    def _title(self, line: bytes) -> None:
        if line.startswith(_COMPLETED):
            self.completed = True
            self._enter(_TRAILING)
        elif match := _TABLE_TITLE.match(line):
            self._table = _name(match.group(1))
            self.objects.append(f"table {self._table}")
            self._enter(_TABLE)
        elif match := _DATA_TITLE.match(line):
            self._table = _name(match.group(1))
            self.row_counts.setdefault(self._table, 0)
            self._enter(_DATA)
            if self._on_table_start is not None:
                self._on_table_start(self._table)
        elif match := _SEQUENCE_TITLE.match(line):
            self._table = _name(match.group(1))
            self.objects.append(f"sequence {self._table}")
            self._enter(_SEQUENCE)
        elif match := _PLACEHOLDER_TITLE.match(line):
            self._hold(PLACEHOLDER, _name(match.group(1)))
        elif match := _VIEW_TITLE.match(line):
            name = _name(match.group(1))
            self.objects.append(f"view {name}")
            self._hold(VIEW, name)
        elif line.startswith(_EVENTS_TITLE):
            self._hold(EVENTS, "")
        elif line.startswith(_ROUTINES_TITLE):
            self._hold(ROUTINES, "")

    def _enter(self, section: str) -> None:
        self._section = section
        self._held_section = None
        self._in_create = False

    def _hold(self, kind: str, name: str) -> None:
        self._section = kind
        self._held_section = HeldSection(kind, name)
        if self._staging is not None:
            self.held.append(self._held_section)

    def _route(self, line: bytes | None) -> bytes | None:
        """Held sections keep their lines (returning b"" drops them from the stream)."""
        if self._held_section is not None and self._staging is not None:
            self._held_section.lines.append((line if line is not None else b"") + b"\n")
            return b""
        return None if line is None else line + b"\n"

    # -- objects -----------------------------------------------------------------------------------

    def _object_line(self, line: bytes) -> bytes | None:
        """Note the objects and definers a line names; a trigger header may be made relative.
        Returns the line to route (None: the line unchanged)."""
        definer = _DEFINER.match(line)
        if definer is not None:
            user = _name(definer.group(1))
            host = definer.group(2)
            self.definers.add(f"{user}@{_name(host)}" if host is not None else user)
        section = self._section
        if section == TRIGGERS:
            head = _TRIGGER_HEAD.match(line)
            if head is not None:
                name = _bare(head.group("name"))
                self.trigger_tables[name] = _bare(head.group("table"))
                self.objects.append(f"trigger {name}")
                if self._unqualify_triggers:
                    return _TRIGGER_HEAD.sub(rb"\g<head>\g<name>\g<mid>\g<table>", line, count=1)
        elif section == ROUTINES:
            routine = _CREATE_ROUTINE.match(line)
            if routine is not None:
                kind = routine.group(1).decode().lower()
                self.objects.append(f"{kind} {_name(routine.group(2))}")
        elif section == EVENTS:
            event = _CREATE_EVENT.match(line)
            if event is not None:
                self.objects.append(f"event {_name(event.group(1))}")
        return line

    # -- staging -----------------------------------------------------------------------------------

    def _setting(self, line: bytes) -> bytes:
        """The top and the end of a dump hold session settings only; anything else would run
        against the target database as it is, so it is refused."""
        if not line or line.startswith(b"--") or line.startswith(_SANDBOX_LINE):
            return line
        if _SETTING.match(line):
            return line
        raise DumpFailed(
            f"unexpected statement in the dump, outside any table: {line[:80]!r}; "
            "Lifeboat will not run it against the target database"
        )

    def _staged(self, line: bytes) -> bytes:
        """A line of a table, sequence or data section with the staged names."""
        staging = self._staging
        assert staging is not None
        if self._in_create:
            if line.endswith(b";"):
                self._in_create = False
            fk = _FOREIGN_KEY.match(line)
            if fk is None:
                return line
            ref, rest = fk.group("ref"), fk.group("rest")
            definition = (fk.group("head") + ref + rest).decode("utf-8", "replace")
            name = staging.constraint(self._table, _name(fk.group(2)), definition)
            if _ONE_NAME.fullmatch(ref):  # a table of another database is not staged
                ref = _q(staging.referenced(_name(ref[1:-1])))
            return (
                fk.group("indent")
                + b"CONSTRAINT "
                + _q(name)
                + b" "
                + fk.group("head")
                + ref
                + rest
                + fk.group("comma")
            )
        if not line or line.startswith(b"--") or line == b"UNLOCK TABLES;":
            return line
        if _SETTING.match(line):
            return line
        for pattern in (_DROP_TABLE, _LOCK_TABLE, _DROP_SEQUENCE, _CREATE_SEQUENCE, _SETVAL):
            match = pattern.match(line)
            if match is not None:
                staged = _q(staging.table(_name(match.group(1))))
                return line[: match.start(1) - 1] + staged + line[match.end(1) + 1 :]
        match = _CREATE_TABLE.match(line)
        if match is not None:
            self._in_create = True
            return b"CREATE TABLE " + _q(staging.table(_name(match.group(1)))) + b" ("
        match = _TABLE_KEYS.match(line)
        if match is not None:
            return (
                b"/*!40000 ALTER TABLE "
                + _q(staging.table(_name(match.group(1))))
                + b" "
                + match.group(2)
                + b" KEYS */;"
            )
        raise DumpFailed(
            f"unexpected statement in the dump of table {self._table}: {line[:80]!r}; "
            "Lifeboat will not run it against the target database"
        )
