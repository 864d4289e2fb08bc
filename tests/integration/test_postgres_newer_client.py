"""One image for every PostgreSQL major: its one client, the newest, restores into older servers.

pg_restore writes the session settings of its own version whatever the server, and PostgreSQL
17's writes `SET transaction_timeout = 0;`, which servers 13-16 refuse. Debian 12 has no
PostgreSQL 17 client, so a pg_restore first on PATH plays one: the real pg_restore with the
header PostgreSQL 17's writes (transaction_timeout after idle_in_transaction_session_timeout).
The restore then runs for real against this machine's PostgreSQL 15.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lifeboat.worker.engines.postgres.restore import header_length, without_unknown_settings
from tests.integration.test_postgres_engine import Backup, restore, take_backup
from tests.support.postgres import (
    SAMPLE_ROW_COUNTS,
    PgDatabase,
    PgDatabaseFactory,
    seed_sample_schema,
)

PG_RESTORE_17_HEADER = b"""--
-- PostgreSQL database dump
--

\\restrict abc123

-- Dumped from database version 15.8
-- Dumped by pg_dump version 17.6

BEGIN;

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET transaction_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_table_access_method = heap;

--
-- Name: t; Type: TABLE; Schema: public; Owner: app
--

CREATE TABLE public.t (
    transaction_timeout integer
);
SET transaction_timeout = 0;
"""

NEWER_PG_RESTORE = """#!{python}
import subprocess, sys
tool = subprocess.Popen([{real!r}, *sys.argv[1:]], stdout=subprocess.PIPE)
for line in tool.stdout:
    sys.stdout.buffer.write(line)
    if line == b"SET idle_in_transaction_session_timeout = 0;\\n":
        sys.stdout.buffer.write(b"SET transaction_timeout = 0;\\n")
sys.stdout.buffer.flush()
sys.exit(tool.wait())
"""


def test_the_header_ends_at_the_first_object_and_only_unknown_settings_go() -> None:
    length = header_length(PG_RESTORE_17_HEADER)
    assert length is not None
    assert PG_RESTORE_17_HEADER[length:].startswith(b"CREATE TABLE public.t")
    header = PG_RESTORE_17_HEADER[:length]
    known = {
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "client_encoding",
        "standard_conforming_strings",
        "check_function_bodies",
        "xmloption",
        "client_min_messages",
        "row_security",
        "default_table_access_method",
    }
    filtered = without_unknown_settings(header, known)
    assert filtered == header.replace(b"SET transaction_timeout = 0;\n", b"")
    assert without_unknown_settings(header, {*known, "transaction_timeout"}) == header
    assert header_length(PG_RESTORE_17_HEADER[:200]) is None  # still all header: wait for more


@pytest.fixture
def newer_pg_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    real = shutil.which("pg_restore")
    assert real is not None
    tool = tmp_path / "bin" / "pg_restore"
    tool.parent.mkdir()
    tool.write_text(NEWER_PG_RESTORE.format(python=sys.executable, real=real))
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tool.parent}:{Path(real).parent}:/usr/bin:/bin")
    return tool


@pytest.fixture
def source_db(pg_database_factory: PgDatabaseFactory) -> PgDatabase:
    db = pg_database_factory(prefix="src")
    seed_sample_schema(db)
    return db


@pytest.fixture
def backup(source_db: PgDatabase) -> Backup:
    return take_backup(source_db)


def test_a_newer_pg_restore_restores_into_an_older_server(
    source_db: PgDatabase, backup: Backup, newer_pg_restore: Path
) -> None:
    dump = Path(newer_pg_restore.parent / "backup.dump")
    dump.write_bytes(backup.data)
    sql = subprocess.run(
        [str(newer_pg_restore), "--file=-", str(dump)], capture_output=True, check=True
    ).stdout
    assert b"SET transaction_timeout = 0;" in sql, "the stand-in writes what pg_restore 17 does"
    refused = subprocess.run(
        ["psql", "--no-psqlrc", "--set=ON_ERROR_STOP=1", f"--dbname={source_db.url}"],
        input=sql,
        capture_output=True,
        env={"PGPASSWORD": source_db.password, "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert b'unrecognized configuration parameter "transaction_timeout"' in refused.stderr, (
        "PostgreSQL 15 refuses the setting: the restore below only works because it goes"
    )
    original = source_db.fingerprint()
    source_db.execute("TRUNCATE shop.customers CASCADE")

    result = restore(source_db, backup)

    assert source_db.fingerprint() == original
    assert dict(result.row_counts) == SAMPLE_ROW_COUNTS
