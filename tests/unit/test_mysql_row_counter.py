"""Reading a mariadb-dump stream: rows counted exactly for hostile strings, whatever the read
sizes; objects and DEFINERs listed; for a restore, every table statement staged and the objects
whose names are per database held back."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from lifeboat.worker.engines.mysql import SqlDumpScanner
from lifeboat.worker.engines.mysql.dump_stream import count_rows
from lifeboat.worker.engines.mysql.held_objects import split_statements
from lifeboat.worker.engines.mysql.reserved_names import StagingNames
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
            b"DROP TABLE IF EXISTS `customers`;\n",
            b"CREATE TABLE `customers` (\n  `x` int(11) DEFAULT NULL\n) ENGINE=InnoDB;\n",
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


TABLE_WITH_KEYS = (
    b"--\n-- Table structure for table `orders`\n--\n\n"
    b"DROP TABLE IF EXISTS `orders`;\n"
    b"/*!40101 SET @saved_cs_client     = @@character_set_client */;\n"
    b"CREATE TABLE `orders` (\n"
    b"  `id` int(11) NOT NULL,\n"
    b"  `customer_id` int(11) NOT NULL,\n"
    b"  `other` int(11) DEFAULT NULL,\n"
    b"  `note` varchar(20) DEFAULT 'REFERENCES `customers` (x),',\n"
    b"  PRIMARY KEY (`id`),\n"
    b"  CONSTRAINT `orders_customer` FOREIGN KEY (`customer_id`) REFERENCES `customers` (`id`),\n"
    b"  CONSTRAINT `orders_ibfk_1` FOREIGN KEY (`other`) REFERENCES `customers` (`id`) ON DELETE "
    b"CASCADE,\n"
    b"  CONSTRAINT `far` FOREIGN KEY (`other`) REFERENCES `elsewhere`.`t` (`id`)\n"
    b") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\n"
    b"/*!40101 SET character_set_client = @saved_cs_client */;\n\n"
)
SEQUENCE = (
    b"--\n-- Sequence structure for `numbers`\n--\n\n"
    b"DROP SEQUENCE IF EXISTS `numbers`;\n"
    b"CREATE SEQUENCE `numbers` start with 1000 minvalue 1 increment by 1 ENGINE=InnoDB;\n"
    b"DO SETVAL(`numbers`, 2000, 0);\n\n"
)
VIEW = (
    b"--\n-- Temporary table structure for view `totals`\n--\n\n"
    b"DROP TABLE IF EXISTS `totals`;\n"
    b"/*!50001 DROP VIEW IF EXISTS `totals`*/;\n"
    b"/*!50001 CREATE VIEW `totals` AS SELECT\n 1 AS `n` */;\n\n"
    b"--\n-- Final view structure for view `totals`\n--\n\n"
    b"/*!50001 DROP VIEW IF EXISTS `totals`*/;\n"
    b"/*!50001 CREATE ALGORITHM=UNDEFINED */\n"
    b"/*!50013 DEFINER=`viewer`@`10.%` SQL SECURITY DEFINER */\n"
    b"/*!50001 VIEW `totals` AS select count(0) AS `n` from `customers` */;\n"
)


def staged_scan(dump: bytes, chunk: int) -> tuple[SqlDumpScanner, StagingNames, bytes]:
    names = StagingNames.for_tables("abc123", ["customers", "empty", "odd `name` (1),(2)"])
    sent: list[bytes] = []
    scanner = scan(
        dump,
        chunk,
        sink=sent.append,
        staging=names,
        unqualify_triggers=True,
        drop_sandbox_line=True,
    )
    return scanner, names, b"".join(sent)


def staged_dump() -> tuple[bytes, dict[str, int]]:
    dump, expected = sample_dump(one_line=False)
    at = dump.index(b"--\n-- Dumping events")
    dump = dump[:at] + TABLE_WITH_KEYS + SEQUENCE + VIEW + dump[at:]
    return dump, expected


@pytest.mark.parametrize("chunk", [1, 9, 1 << 30])
def test_staging_renames_every_table_a_statement_acts_on(chunk: int) -> None:
    dump, expected = staged_dump()
    scanner, names, forwarded = staged_scan(dump, chunk)
    customers = names.staged["customers"].encode()
    assert customers.startswith(b"__lifeboat_abc123_s")
    assert len(customers) <= 40
    assert scanner.row_counts == expected  # counted under the backup's names
    lines = forwarded.splitlines()
    assert b"CREATE TABLE `" + customers + b"` (" in lines
    assert b"LOCK TABLES `" + customers + b"` WRITE;" in lines
    assert b"/*!40000 ALTER TABLE `" + customers + b"` DISABLE KEYS */;" in lines
    assert b"INSERT INTO `" + customers + b"` VALUES" in lines
    odd = names.staged["odd `name` (1),(2)"].encode()
    assert b"INSERT INTO `" + odd + b"` VALUES" in lines
    numbers = names.staged["numbers"].encode()
    assert b"DROP SEQUENCE IF EXISTS `" + numbers + b"`;" in lines
    assert b"DO SETVAL(`" + numbers + b"`, 2000, 0);" in lines
    # No statement acts on a name of the target any more; titles (comments) keep them.
    statements = [
        line
        for line in lines
        if not line.startswith((b"--", b"(")) and b"DEFAULT 'REFERENCES" not in line
    ]
    for name in (b"`customers`", b"`orders`", b"`numbers`", b"`empty`", b"`totals`"):
        assert not [s for s in statements if name in s], name
    assert not forwarded.startswith(b"/*M!999999")


@pytest.mark.parametrize("chunk", [1, 9, 1 << 30])
def test_staging_gives_foreign_keys_names_of_their_own(chunk: int) -> None:
    dump, _ = staged_dump()
    _, names, forwarded = staged_scan(dump, chunk)
    orders, customers = names.staged["orders"], names.staged["customers"]
    renamed, far = names.constraints
    assert renamed.original == "orders_customer"
    assert renamed.table == "orders"
    assert renamed.definition == "FOREIGN KEY (`customer_id`) REFERENCES `customers` (`id`)"
    lines = forwarded.decode().splitlines()
    assert (
        f"  CONSTRAINT `{renamed.staged}` FOREIGN KEY (`customer_id`) REFERENCES `{customers}`"
        " (`id`)," in lines
    )
    # InnoDB renames <table>_ibfk_<n> with its table: RENAME brings the name back by itself.
    assert (
        f"  CONSTRAINT `{orders}_ibfk_1` FOREIGN KEY (`other`) REFERENCES `{customers}` (`id`) "
        "ON DELETE CASCADE," in lines
    )
    assert far.original == "far"
    assert (
        f"  CONSTRAINT `{far.staged}` FOREIGN KEY (`other`) REFERENCES `elsewhere`.`t` (`id`)"
        in lines
    )
    assert "  `note` varchar(20) DEFAULT 'REFERENCES `customers` (x),'," in lines


@pytest.mark.parametrize("chunk", [1, 9, 1 << 30])
def test_staging_holds_back_triggers_views_routines_and_events(chunk: int) -> None:
    dump, _ = staged_dump()
    scanner, _, forwarded = staged_scan(dump, chunk)
    held = {(s.kind, s.name): b"".join(s.lines) for s in scanner.held}
    assert (
        b"TRIGGER `audit` BEFORE INSERT ON customers FOR EACH ROW"
        in held[("triggers", "customers")]
    )
    assert b"EVENT `nightly`" in held[("events", "")]
    assert b"PROCEDURE `add`" in held[("routines", "")]
    assert b"VIEW `totals` AS select" in held[("view", "totals")]
    assert b"DROP TABLE IF EXISTS `totals`" in held[("view placeholder", "totals")]
    for text in (b"TRIGGER", b"nightly", b"PROCEDURE", b"VIEW", b"totals", b"shop."):
        assert text not in forwarded, text
    assert [s.statements() for s in scanner.held if s.kind == "routines"] == [
        [
            b"CREATE DEFINER=`u`@`%` PROCEDURE `add`()\nBEGIN\n"
            b"INSERT INTO `customers` VALUES (1,'x',0x00);\nEND"
        ]
    ]


def test_the_dump_lists_its_objects_and_definers() -> None:
    dump, _ = staged_dump()
    scanner = scan(dump, 17)
    assert scanner.objects == [
        "table customers",
        "trigger audit",
        "table orders",
        "sequence numbers",
        "view totals",
        "event nightly",
        "procedure add",
    ]
    assert scanner.definers == {"u@%", "viewer@10.%"}
    assert scanner.trigger_tables == {"audit": "customers"}
    assert scanner.held == []  # a backup holds nothing back


@pytest.mark.parametrize(
    "statement",
    [b"TRUNCATE TABLE `customers`;", b"DELETE FROM `customers`;", b"USE `mysql`;"],
)
def test_a_statement_staging_does_not_know_is_refused(statement: bytes) -> None:
    dump, _ = sample_dump(one_line=False)
    at = dump.index(b"\nUNLOCK TABLES;\n") + 1
    names = StagingNames.for_tables("abc123", ["customers"])
    with pytest.raises(DumpFailed, match="will not run it against the target"):
        scan(dump[:at] + statement + b"\n" + dump[at:], 50, sink=list().append, staging=names)
    with pytest.raises(DumpFailed, match="will not run it against the target"):
        scan(dump + statement + b"\n", 50, sink=list().append, staging=names)


def test_statements_are_split_as_the_client_splits_them() -> None:
    sql = [
        b"-- a comment; with a delimiter\n",
        b"/*!50003 SET sql_mode = 'A;B' */ ;\n",
        b"DELIMITER ;;\n",
        b"CREATE DEFINER=`u`@`%` PROCEDURE `p`()\n",
        b"BEGIN\n",
        b"  -- don't stop here;;\n",
        b"  # nor here;;\n",
        b"  SELECT 'a string that ends a line;;\n",
        b"still the string;;';\n",
        b"  /* a comment;;\n",
        b'  over lines */ SELECT "x;;";\n',
        b"END ;;\n",
        b"/*!50003 CREATE*/ /*!50017 DEFINER=`u`@`%`*/ /*!50003 TRIGGER t BEFORE INSERT ON x\n",
        b"FOR EACH ROW SET NEW.a = 1 */;;\n",
        b"DELIMITER ;\n",
        b"/*!50003 SET sql_mode = @saved */ ;\n",
    ]
    statements = split_statements(sql)
    assert statements[0] == b"/*!50003 SET sql_mode = 'A;B' */"
    assert statements[1].startswith(b"CREATE DEFINER=`u`@`%` PROCEDURE `p`()\nBEGIN\n")
    assert statements[1].endswith(b'over lines */ SELECT "x;;";\nEND')
    assert statements[2].endswith(b"FOR EACH ROW SET NEW.a = 1 */")
    assert statements[3] == b"/*!50003 SET sql_mode = @saved */"
    assert len(statements) == 4


def _regex_count(rows: bytes) -> int:
    """What the row regex (the scanner's exact fallback) counts, or -1 where it rejects."""
    from lifeboat.worker.engines.mysql.dump_stream import _ROW, _ROW_SEPARATORS

    rest, n = _ROW.subn(b"", rows)
    return -1 if rest.translate(None, _ROW_SEPARATORS) else n


@pytest.mark.parametrize("separator", [b",", b",\n"], ids=["one-line", "row-per-line"])
def test_the_fast_count_equals_the_row_regex_on_mysqldump_rows(separator: bytes) -> None:
    rng = random.Random(5)
    fast_counted = 0
    for trial in range(400):
        alphabet = "ab'\\\"(),;\n\r\x00\x1a`é🚀 -0123456789"
        if trial % 4:
            alphabet = alphabet.replace("(", "").replace(")", "")
        rows = [
            (
                i,
                None
                if rng.random() < 0.1
                else "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))),
            )
            for i in range(rng.randrange(1, 30))
        ]
        text = separator.join(rows_sql(rows))
        fast = count_rows(text)
        if fast is not None:
            fast_counted += 1
            assert fast == _regex_count(text) == len(rows)
    assert fast_counted > 100  # strings without parentheses take the fast way


def test_strings_with_parentheses_leave_the_count_to_the_regex() -> None:
    text = b",\n".join(rows_sql([(1, "a),(b"), (2, "(")]))
    assert count_rows(text) is None
    dump = HEADER + data_section(b"t", [rows_sql([(1, "a),(b"), (2, "(")])], one_line=False)
    assert scan(dump + FOOTER, 9).row_counts == {"t": 2}


@pytest.mark.parametrize(
    "text",
    [b"(1,'a')(2,'b'", b"(1,(2)),(3)", b"(1,'it''s'),('x", b"(1),)(", b"1,2"],
)
def test_what_is_not_rows_is_not_counted_the_fast_way(text: bytes) -> None:
    assert count_rows(text) is None


def test_many_semicolons_inside_strings_do_not_end_the_insert() -> None:
    rows = rows_sql([(i, ";" * 40 + "; x;") for i in range(50)])
    dump = HEADER + data_section(b"t", [rows[:25], rows[25:]], one_line=False) + FOOTER
    for chunk in (7, 100, 1 << 20):
        assert scan(dump, chunk).row_counts == {"t": 50}
