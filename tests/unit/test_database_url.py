from pathlib import Path

import pytest

from lifeboat.worker.database_url import parse_database_url
from lifeboat.worker.errors import UsageError


@pytest.mark.parametrize(
    ("url", "engine", "host", "port", "user", "database"),
    [
        ("postgresql://backup@db.shop:5433/shop", "postgresql", "db.shop", 5433, "backup", "shop"),
        ("postgres://u@h/x", "postgresql", "h", 5432, "u", "x"),
        ("mysql://root@127.0.0.1/app", "mysql", "127.0.0.1", 3306, "root", "app"),
        ("mariadb://a%40b@h:3307/d", "mariadb", "h", 3307, "a@b", "d"),
    ],
)
def test_network_urls(
    url: str, engine: str, host: str, port: int, user: str, database: str
) -> None:
    parsed = parse_database_url(url, environ={})
    assert (parsed.engine, parsed.host, parsed.port, parsed.user, parsed.database) == (
        engine,
        host,
        port,
        user,
        database,
    )
    assert parsed.password is None


def test_sqlite_url_keeps_the_absolute_path() -> None:
    parsed = parse_database_url("sqlite:///var/lib/app/data.db", environ={})
    assert parsed.path == Path("/var/lib/app/data.db")
    assert parsed.database == "data"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("oracle://u@h/db", "unknown scheme"),
        ("postgresql://u:hunter2@h/db", "LIFEBOAT_DB_PASSWORD"),
        ("postgresql://u@h/", "name one database"),
        ("postgresql://u@h:port/db", "port"),
        ("sqlite://", "file path"),
    ],
)
def test_bad_urls_name_the_argument_and_the_fix(url: str, needle: str) -> None:
    with pytest.raises(UsageError, match="DATABASE_URL") as info:
        parse_database_url(url, environ={})
    assert needle in str(info.value)
    assert "hunter2" not in str(info.value)


def test_password_sources_in_order_and_never_in_repr(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    url = "postgresql://u@h/db"
    assert parse_database_url(url, {"LIFEBOAT_DB_PASSWORD": "a", "PGPASSWORD": "b"}).password == "a"
    assert parse_database_url(url, {"LIFEBOAT_DB_PASSWORD_FILE": str(secret_file)}).password == (
        "from-file"
    )
    assert parse_database_url(url, {"PGPASSWORD": "b"}).password == "b"
    assert parse_database_url("mysql://u@h/db", {"MYSQL_PWD": "c"}).password == "c"
    parsed = parse_database_url(url, {"LIFEBOAT_DB_PASSWORD": "s3cret"})
    assert "s3cret" not in repr(parsed)
    assert "s3cret" not in parsed.redacted()
