"""Finding backups in storage by their manifests (`lifeboat list`, `kubectl lifeboat list`),
against a real S3 server (moto over HTTP) and a real directory, with backups written by the
real `lifeboat backup` command and junk that is not a backup next to them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lifeboat.cli.demo import create_shop
from lifeboat.contract import format_bytes
from lifeboat.worker.listing import list_backups
from lifeboat.worker.storage import open_storage
from lifeboat.worker.storage.s3 import S3Storage
from tests.support.s3 import S3Bucket

VENV_BIN = Path(sys.executable).parent


def run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A console script of the package, as installed (`lifeboat`, `kubectl` → plugin)."""
    environment = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=120,
        env={**environment, **(env or {})},
        check=False,
    )


def backup(db: Path, location: str) -> dict[str, Any]:
    done = run("lifeboat", "backup", f"sqlite:///{db}", location, "--output", "json")
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


@pytest.fixture
def shops(tmp_path: Path) -> tuple[Path, Path]:
    small, large = tmp_path / "small.db", tmp_path / "large.db"
    create_shop(small, orders=40)
    create_shop(large, orders=900)
    return small, large


def test_a_bucket_lists_its_two_backups_newest_first_and_not_the_junk(
    s3_bucket: S3Bucket, shops: tuple[Path, Path]
) -> None:
    small, large = shops
    first = backup(small, s3_bucket.url("team/shop/small-1a2b3c4d"))
    second = backup(large, s3_bucket.url("team/shop/large-5e6f7a8b"))
    junk = {
        "team/readme.txt": b"not a backup",
        "team/shop/interrupted-00000000/sqlite.dump.zst": b"an artifact without a manifest",
        "team/other/manifest.json": b'{"not": "a lifeboat manifest"}',
        "elsewhere/manifest.json": b"outside the listed prefix",
    }
    for key, body in junk.items():
        s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key=key, Body=body)

    listed = run("lifeboat", "list", s3_bucket.url("team"))

    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    columns = ["ENGINE", "DATABASE", "TAKEN", "AT", "SIZE", "TABLES", "ROWS", "LOCATION"]
    assert header.split() == columns
    assert [row.split()[-1] for row in rows] == [
        s3_bucket.url("team/shop/large-5e6f7a8b"),  # newest first
        s3_bucket.url("team/shop/small-1a2b3c4d"),
    ]
    large_row = rows[0].split()
    assert large_row[0:2] == ["sqlite", "large"]  # sqlite: the file's name
    assert " ".join(large_row[3:5]) == format_bytes(second["size"])
    assert large_row[5:7] == [str(second["tables"]), str(second["rows"])]
    assert listed.stderr == (
        f"warning: skipped: {s3_bucket.url('team/other')}manifest.json is not a Lifeboat "
        "manifest (lifeboat_version: Field required)\n"
    )

    as_json = run("lifeboat", "list", s3_bucket.url("team"), "--output", "json")
    found = json.loads(as_json.stdout)
    assert found["location"] == s3_bucket.url("team")
    assert [b["path"] for b in found["backups"]] == [
        "shop/large-5e6f7a8b/",
        "shop/small-1a2b3c4d/",
    ]
    small_entry = found["backups"][1]
    assert small_entry["sha256"] == first["sha256"]
    assert (small_entry["size"], small_entry["tables"], small_entry["rows"]) == (
        first["size"],
        first["tables"],
        first["rows"],
    )
    assert small_entry["engine"] == "sqlite"
    assert small_entry["problem"] is None
    assert small_entry["takenAt"] < found["backups"][0]["takenAt"]

    # The same, through the real kubectl, which finds the plugin on PATH.
    via_kubectl = run("kubectl", "lifeboat", "list", s3_bucket.url("team"))
    assert via_kubectl.returncode == 0, via_kubectl.stderr
    assert via_kubectl.stdout == listed.stdout


def test_s3_listing_follows_every_page(s3_bucket: S3Bucket, shops: tuple[Path, Path]) -> None:
    small, _ = shops
    for n in range(3):
        backup(small, s3_bucket.url(f"many/b{n}"))
    for n in range(4):
        s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key=f"many/junk/{n}", Body=b"x")
    storage = S3Storage(s3_bucket.bucket, "many/", list_page_size=2)

    keys = sorted(stored.key for stored in storage.list_objects())

    assert keys == sorted(key.removeprefix("many/") for key in s3_bucket.keys())  # noqa: SIM118
    assert len(keys) == 10  # 5 pages of 2
    listing = list_backups(storage)
    assert [found.path for found in listing.backups] == ["b2/", "b1/", "b0/"]
    assert listing.objects == 10


def test_a_backup_whose_artifact_is_gone_is_listed_with_the_problem(
    tmp_path: Path, shops: tuple[Path, Path]
) -> None:
    small, large = shops
    root = tmp_path / "volume"
    kept = backup(small, f"file://{root}/ns/kept-1")
    broken = backup(large, str(root / "ns" / "broken-2"))
    Path(broken["artifact"].removeprefix("file://")).unlink()
    (root / "ns" / ".manifest.json.partial-0123456789ab").write_text("a write in flight")

    listed = run("lifeboat", "list", f"file://{root}")

    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()[1:]
    assert len(rows) == 2
    assert rows[0].endswith(
        f"{(root / 'ns' / 'broken-2').as_uri()}/  (!) artifact sqlite.dump.zst is missing"
    )
    assert rows[1].endswith(f"{(root / 'ns' / 'kept-1').as_uri()}/")
    assert kept["artifact"].startswith((root / "ns" / "kept-1").as_uri())
    relative = run("lifeboat", "list", str(root / "ns"), "--output", "json")
    assert [b["path"] for b in json.loads(relative.stdout)["backups"]] == ["broken-2/", "kept-1/"]


def test_empty_missing_and_unreachable_locations(
    tmp_path: Path, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "empty").mkdir()
    empty = run("lifeboat", "list", str(tmp_path / "empty"))
    assert empty.returncode == 0
    assert empty.stdout == ""
    assert "no backups at" in empty.stderr

    no_dir = run("lifeboat", "list", str(tmp_path / "absent"))
    assert no_dir.returncode == 4
    assert "BackupNotFound" in no_dir.stderr

    no_bucket = run("kubectl", "lifeboat", "list", "s3://lifeboat-no-such-bucket/x/")
    assert no_bucket.returncode == 4
    assert no_bucket.stderr.startswith("error: BucketNotFound: bucket 'lifeboat-no-such-bucket'")
    assert open_storage(str(tmp_path / "empty")).uri() in empty.stderr
