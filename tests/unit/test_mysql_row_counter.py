"""Counting rows in a mariadb-dump stream: exact for hostile strings, whatever the read sizes."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from lifeboat.worker.engines.mysql import SqlDumpScanner
from lifeboat.worker.errors import DumpFailed

_ESCAPES = {
    0: b"\\0",
    ord("\n"): b"\\n",
    ord("\r"): b"\\r",
    ord("\\"): b"\\\\",
    ord("'"): b"\\'",
    ord('"'): b'\\"',
    0x1A: b"\\Z",
}


def sql_string(value: str) -> bytes:
    """A string literal escaped the way mysqldump escapes (mysql_real_escape_string)."""
    raw = value.encode()
    return b"'" + b"".join(_ESCAPES.get(c, bytes([c])) for c in raw) + b"'"


def rows_sql(rows: Sequence[tuple[int, str | None]]) -> list[bytes]:
    return [b"(%d,%s,0x00FF27)" % (i, b"NULL" if s is None else sql_string(s)) for i, s in rows]


def data_section(table: bytes, statements: list[list[bytes]], *, one_line: bool) -> bytes:
    quoted = b"`" + table.replace(b"`", b"``") + b"`"
    out = [
        b"--\n-- Dumping data for table " + quoted + b"\n--\n\n",
        b"LOCK TABLES " + quoted + b" WRITE;\n",
        b"/*!40000 ALTER TABLE " + quoted + b" DISABLE KEYS */;\n",
    ]
    for rows in statements:
        if one_line:  # mysqldump and older mariadb-dump: the whole statement on one line
            out.append(b"INSERT INTO " + quoted + b" VALUES " + b",".join(rows) + b";\n")
        else:  # mariadb-dump 10.11+: one row per line
            out.append(b"INSERT INTO " + quoted + b" VALUES\n" + b",\n".join(rows) + b";\n")
    out += [b"/*!40000 ALTER TABLE " + quoted + b" ENABLE KEYS */;\n", b"UNLOCK TABLES;\n"]
    return b"".join(out)


HOSTILE = [
    "O'Brien",
    "back\\slash\\",
    "),(",
    "(1),(2);",
    "');\n(",
    "line\n-- Dumping data for table `x`\nUNLOCK TABLES;\nINSERT INTO `x` VALUES (1);",
    "nul\x00 ctrl-z\x1a cr\r",
    'say "hi"',
    "unicodé ☃ 🚀",
    "",
    "DELIMITER ;;",
]

HEADER = (
    b"/*M!999999\\- enable the sandbox mode */ \n"
    b"-- MariaDB dump 10.19  Distrib 10.11.19-MariaDB\n--\n-- Host: h    Database: shop\n\n"
    b"/*!40101 SET NAMES utf8mb4 */;\n/*!40103 SET TIME_ZONE='+00:00' */;\n\n"
)
PROCEDURE = (
    b"--\n-- Dumping routines for database 'shop'\n--\n"
    b"DELIMITER ;;\n"
    b"CREATE DEFINER=`u`@`%` PROCEDURE `add`()\nBEGIN\n"
    b"INSERT INTO `customers` VALUES (1,'x',0x00);\nEND ;;\n"
    b"DELIMITER ;\n"
)
EVENTS = (
    b"--\n-- Dumping events for database 'shop'\n--\n"
    b"/*!50106 DROP EVENT IF EXISTS `nightly` */;\n"
    b"DELIMITER ;;\n"
    b"/*!50106 CREATE*/ /*!50117 DEFINER=`u`@`%`*/ /*!50106 EVENT `nightly` ON SCHEDULE "
    b"EVERY 1 DAY DO DELETE FROM t\n*/ ;;\n"
    b"-- Dumping routines for database 'shop'\n"  # inside DELIMITER ;; : body text, not a title
    b"DELIMITER ;\n"
    b"\n"
)
TRIGGER = (
    b"DELIMITER ;;\n"
    b"/*!50003 CREATE*/ /*!50017 DEFINER=`u`@`%`*/ /*!50003 TRIGGER `shop`.`audit` BEFORE "
    b"INSERT ON shop.customers FOR EACH ROW SET NEW.note = 'x'\n*/;;\n"
    b"DELIMITER ;\n"
)
FOOTER = b"/*!40103 SET TIME_ZONE=@OLD_TIME_ZONE */;\n\n-- Dump completed\n"


def sample_dump(*, one_line: bool) -> tuple[bytes, dict[str, int]]:
    rng = random.Random(11)
    customers = [(i, rng.choice([*HOSTILE, None])) for i in range(1, 301)]
    rendered = rows_sql(customers)
    odd = rows_sql([(1, "a"), (2, None)])
    dump = b"".join(
        [
            HEADER,
            b"--\n-- Table structure for table `customers`\n--\n\n",
            b"CREATE TABLE `customers` (x int);\n",
            data_section(
                b"customers", [rendered[:120], rendered[120:121], rendered[121:]], one_line=one_line
            ),
            TRIGGER,
            data_section(b"empty", [], one_line=one_line),
            data_section(b"odd `name` (1),(2)", [odd], one_line=one_line),
            EVENTS,
            PROCEDURE,
            FOOTER,
        ]
    )
    return dump, {"customers": 300, "empty": 0, "odd `name` (1),(2)": 2}


def scan(dump: bytes, chunk: int, **kwargs: object) -> SqlDumpScanner:
    scanner = SqlDumpScanner(**kwargs)  # type: ignore[arg-type]
    for i in range(0, len(dump), chunk):
        scanner.feed(dump[i : i + chunk])
    scanner.close()
    return scanner


@pytest.mark.parametrize("one_line", [True, False], ids=["one-line-insert", "row-per-line"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 1000, 1 << 30])
def test_counts_every_row_whatever_the_read_boundaries(one_line: bool, chunk: int) -> None:
    dump, expected = sample_dump(one_line=one_line)
    scanner = scan(dump, chunk)
    assert scanner.row_counts == expected
    assert scanner.completed


def test_random_strings_escaped_like_mysqldump_are_counted_exactly() -> None:
    rng = random.Random(3)
    alphabet = "ab'\\\"(),;\n\r\x00\x1a`é🚀 -"
    for trial in range(30):
        rows = [
            (i, "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40))))
            for i in range(rng.randrange(0, 50))
        ]
        statements = [rows_sql(rows[j : j + 7]) for j in range(0, len(rows), 7)]
        dump = HEADER + data_section(b"t", statements, one_line=trial % 2 == 0) + FOOTER
        assert scan(dump, rng.randrange(1, 200)).row_counts == {"t": len(rows)}


def test_tables_without_rows_are_counted_as_zero() -> None:
    dump = HEADER + data_section(b"nothing", [], one_line=False) + FOOTER
    assert scan(dump, 5).row_counts == {"nothing": 0}


def test_inserts_in_routine_bodies_are_not_rows() -> None:
    dump = HEADER + data_section(b"customers", [rows_sql([(1, "a")])], one_line=True) + PROCEDURE
    assert scan(dump + FOOTER, 10).row_counts == {"customers": 1}


def test_tables_are_reported_as_their_data_goes_by() -> None:
    dump, expected = sample_dump(one_line=False)
    events: list[tuple[str, str]] = []
    scan(
        dump,
        33,
        on_table_start=lambda t: events.append(("start", t)),
        on_table_done=lambda t: events.append(("done", t)),
    )
    assert events == [(kind, t) for t in expected for kind in ("start", "done")]


def test_a_row_that_does_not_parse_stops_the_count() -> None:
    dump = HEADER + data_section(b"t", [[b"(1,'unterminated)"]], one_line=True)
    with pytest.raises(DumpFailed, match="cannot count rows of table t"):
        scan(dump, 7)


def test_a_stream_that_ends_inside_an_insert_is_an_error() -> None:
    dump = HEADER + b"-- Dumping data for table `t`\nINSERT INTO `t` VALUES\n(1),\n"
    with pytest.raises(DumpFailed, match="ends inside an INSERT into table t"):
        scan(dump, 4)


def test_a_dump_without_its_completion_line_is_not_complete() -> None:
    dump, _ = sample_dump(one_line=True)
    assert not scan(dump[: dump.index(b"-- Dump completed")], 100).completed


@pytest.mark.parametrize("chunk", [1, 9, 1 << 30])
def test_restore_stream_holds_back_events_and_makes_triggers_relative(chunk: int) -> None:
    dump, expected = sample_dump(one_line=False)
    sent: list[bytes] = []
    scanner = scan(
        dump,
        chunk,
        sink=sent.append,
        hold_events=True,
        unqualify_triggers=True,
        drop_sandbox_line=True,
    )
    forwarded = b"".join(sent)
    held = b"".join(scanner.held)
    assert scanner.row_counts == expected
    # From the section title to the next title: the "--" lines around titles are comments.
    assert held == EVENTS.removeprefix(b"--\n") + b"--\n"
    assert scanner.held_event_names == ["nightly"]
    assert b"`nightly`" not in forwarded
    assert b"/*!50003 TRIGGER `audit` BEFORE INSERT ON customers FOR EACH ROW" in forwarded
    assert b"shop." not in forwarded
    assert not forwarded.startswith(b"/*M!999999")
    assert scanner.preamble[0].startswith(b"/*M!999999\\-")
    assert b"/*!40101 SET NAMES utf8mb4 */;\n" in scanner.preamble
    # Everything else goes through byte for byte.
    rebuilt = (
        dump.replace(held, b"")
        .replace(b"`shop`.`audit`", b"`audit`")
        .replace(b"ON shop.customers", b"ON customers")
    )
    assert forwarded == rebuilt[rebuilt.index(b"\n") + 1 :]
