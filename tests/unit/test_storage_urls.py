"""BACKUP_URL parsing: every accepted form, and errors that name BACKUP_URL and the fix.

Opening an s3:// URL builds a boto3 client but sends nothing, so these tests need no server.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lifeboat.worker.errors import UsageError
from lifeboat.worker.storage import LocalStorage, open_storage
from lifeboat.worker.storage.s3 import S3Storage


@pytest.fixture(autouse=True)
def clean_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_", "LIFEBOAT_S3_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


def open_s3(url: str, environ: dict[str, str] | None = None) -> S3Storage:
    storage = open_storage(url, environ or {})
    assert isinstance(storage, S3Storage)
    return storage


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("s3://backups", "backups", ""),
        ("s3://backups/", "backups", ""),
        ("s3://backups/shop", "backups", "shop/"),
        ("s3://backups/shop/2024/", "backups", "shop/2024/"),
        ("s3://backups//shop//daily", "backups", "shop/daily/"),
        ("S3://backups/shop", "backups", "shop/"),
    ],
)
def test_s3_urls_name_bucket_and_a_prefix_ending_in_slash(
    url: str, bucket: str, prefix: str
) -> None:
    storage = open_s3(url)
    assert (storage.bucket, storage.prefix) == (bucket, prefix)
    assert storage.uri("dump.zst") == f"s3://{bucket}/{prefix}dump.zst"


def test_s3_query_parameters_set_endpoint_region_and_addressing() -> None:
    storage = open_s3(
        "s3://backups/shop/?endpoint=http://minio.local:9000&region=eu-west-3&addressing=virtual"
    )
    assert storage.endpoint == "http://minio.local:9000"
    assert storage._session.region_name == "eu-west-3"
    assert storage.addressing_style == "virtual"


def test_a_custom_endpoint_defaults_to_path_style_which_minio_needs() -> None:
    assert open_s3("s3://backups/?endpoint=http://minio.local:9000").addressing_style == "path"


def test_aws_keeps_botocores_automatic_addressing() -> None:
    storage = open_s3("s3://backups/?region=eu-west-1")
    assert storage.endpoint == "https://s3.eu-west-1.amazonaws.com"
    assert storage.addressing_style == "auto"


def test_addressing_style_comes_from_the_environment_unless_the_url_says() -> None:
    env = {"LIFEBOAT_S3_ADDRESSING_STYLE": "path"}
    assert open_s3("s3://backups/?region=eu-west-1", env).addressing_style == "path"
    assert open_s3("s3://backups/?addressing=virtual", env).addressing_style == "virtual"


def test_a_bad_addressing_style_in_the_environment_names_the_variable() -> None:
    with pytest.raises(UsageError, match=r"LIFEBOAT_S3_ADDRESSING_STYLE.*sideways"):
        open_s3("s3://backups/", {"LIFEBOAT_S3_ADDRESSING_STYLE": "sideways"})


def test_boto3_takes_endpoint_and_region_from_the_standard_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://ceph.local:7480")
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    storage = S3Storage("backups", "shop")
    assert storage.endpoint == "http://ceph.local:7480"
    assert storage._session.region_name == "ap-south-1"
    assert storage.addressing_style == "path"
    assert storage.prefix == "shop/"


def test_the_url_endpoint_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://ceph.local:7480")
    assert open_s3("s3://b1/?endpoint=https://r2.example").endpoint == "https://r2.example"


def test_file_urls_and_plain_paths_open_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cases = {
        f"file://{tmp_path}/a b": tmp_path / "a b",
        f"file://localhost{tmp_path}/x": tmp_path / "x",
        "file:///srv/backups%20old": Path("/srv/backups old"),
        str(tmp_path / "abs"): tmp_path / "abs",
        "relative/dir": tmp_path / "relative" / "dir",
        "./here": tmp_path / "here",
    }
    for url, directory in cases.items():
        storage = open_storage(url, {})
        assert isinstance(storage, LocalStorage), url
        assert storage.directory == directory, url
    assert open_storage("/srv/backups", {}).uri("m.json") == "file:///srv/backups/m.json"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("", "BACKUP_URL is empty"),
        ("   ", "BACKUP_URL is empty"),
        ("ftp://host/backups", "'ftp://host/backups'"),
        ("gs://bucket/prefix", "'gs'"),
        ("s3://", "'s3://'"),
        ("s3:backups/shop", "'s3:backups/shop'"),
        ("s3://backups:9000/shop", "endpoint"),
        ("s3://b/shop", "valid bucket"),
        ("s3://backups/shop#frag", "fragment"),
        ("s3://backups/shop?region=x&foo=bar", "'foo'"),
        ("s3://backups/?addressing=sideways", "'sideways'"),
        ("s3://backups/?endpoint=minio:9000", "'minio:9000'"),
        ("file://backups/daily", "'file://backups/daily'"),
        ("file:backups", "'file:backups'"),
        ("file:///srv/backups?x=1", "query"),
    ],
)
def test_bad_urls_name_backup_url_the_value_and_a_valid_form(url: str, shown: str) -> None:
    with pytest.raises(UsageError) as caught:
        open_storage(url, {})
    message = str(caught.value)
    assert "BACKUP_URL" in message
    assert shown in message
    assert "s3://" in message or "file:///" in message or "https://" in message or "use " in message


@pytest.mark.parametrize(
    "url",
    [
        "s3://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@backups/shop",
        "s3://backups/shop?secret_key=wJalrXUtnFEMI",
        "s3://backups/?endpoint=http://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@minio:9000",
        "ftp://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI@host/x",
    ],
)
def test_credentials_in_a_bad_url_never_reach_the_message(url: str) -> None:
    with pytest.raises(UsageError) as caught:
        open_storage(url, {})
    message = str(caught.value)
    assert "BACKUP_URL" in message
    assert "wJalrXUtnFEMI" not in message
    assert "AKIAIOSFODNN7EXAMPLE" not in message
