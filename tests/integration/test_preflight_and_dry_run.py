"""Preflight and dry runs through the `lifeboat` command: failures come before any data moves,
and a dry run reports what a restore would do while changing nothing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from lifeboat.cli.demo import create_shop, fingerprint
from lifeboat.contract import ExitCode
from tests.support.databases import damage, make_database
from tests.support.s3 import REGION, EnforcedAuth, S3Bucket


def lifeboat(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lifeboat", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    create_shop(path, orders=2000)
    return path


def test_dry_run_reports_the_plan_and_changes_nothing(shop: Path, tmp_path: Path) -> None:
    location = str(tmp_path / "backups" / "one")
    done = lifeboat("backup", f"sqlite:///{shop}", location, "--progress", "none")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((Path(location) / "manifest.json").read_text())
    with sqlite3.connect(shop) as conn:
        conn.execute("DELETE FROM orders WHERE id % 2 = 0")
        conn.execute("CREATE TABLE added_later (id INTEGER)")
    before = fingerprint(shop)
    mtime = shop.stat().st_mtime_ns

    dry = lifeboat(
        "restore", location, f"sqlite:///{shop}", "--dry-run", "--output", "json", "--progress",
        "none",
    )  # fmt: skip

    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["result"] == "dry run: nothing was changed"
    assert plan["targetExists"] is True
    assert plan["checksumVerified"] is True
    assert plan["bytesToDownload"] == manifest["artifact"]["size"]
    assert plan["rows"] == sum(t["rows"] for t in manifest["tables"])
    assert {t["name"] for t in plan["tables"]} == {t["name"] for t in manifest["tables"]}
    assert "table added_later" in plan["dropped"]
    assert "table orders" in plan["replaced"]
    assert [c["name"] for c in plan["checks"]][-2:] == ["artifact", "checksum"]
    assert fingerprint(shop) == before
    assert shop.stat().st_mtime_ns == mtime
    assert not list(shop.parent.glob(f".{shop.name}.lifeboat-restore-*"))

    kept = lifeboat(
        "restore", location, f"sqlite:///{shop}", "--dry-run", "--keep-extra-objects",
        "--output", "json", "--progress", "none",
    )  # fmt: skip
    assert kept.returncode == 0, kept.stderr
    assert json.loads(kept.stdout)["kept"] == ["table added_later"]
    assert json.loads(kept.stdout)["dropped"] == []


def test_dry_run_text_names_what_would_change(shop: Path, tmp_path: Path) -> None:
    location = str(tmp_path / "b")
    assert lifeboat("backup", f"sqlite:///{shop}", location, "--progress", "none").returncode == 0
    target = tmp_path / "new" / "copy.db"
    dry = lifeboat("restore", location, f"sqlite:///{target}", "--dry-run", "--progress", "none")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith(f"dry run: nothing was changed in {target}")
    assert f"into a new database {target}" in dry.stdout
    assert "✓ checksum: SHA-256" in dry.stdout
    assert not target.exists()
    assert not target.parent.exists()


def test_dry_run_of_a_corrupt_artifact_fails_with_the_checksum(shop: Path, tmp_path: Path) -> None:
    location = tmp_path / "b"
    assert (
        lifeboat("backup", f"sqlite:///{shop}", str(location), "--progress", "none").returncode == 0
    )
    artifact = next(p for p in location.iterdir() if p.name != "manifest.json")
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    before = fingerprint(shop)

    dry = lifeboat("restore", str(location), f"sqlite:///{shop}", "--dry-run", "--progress", "none")

    assert dry.returncode == ExitCode.VERIFICATION
    assert "ChecksumMismatch" in dry.stderr.splitlines()[-1]
    assert fingerprint(shop) == before


def test_backup_refuses_a_bucket_it_may_not_write_before_dumping(
    shop: Path, s3_bucket: S3Bucket, s3_enforced_auth: EnforcedAuth
) -> None:
    reader = s3_enforced_auth.read_only
    env = {
        **s3_bucket.env,
        "AWS_ACCESS_KEY_ID": reader.access_key_id,
        "AWS_SECRET_ACCESS_KEY": reader.secret_access_key,
    }
    started = time.monotonic()
    done = lifeboat(
        "backup", f"sqlite:///{shop}", s3_bucket.url("team"), "--progress", "json", env=env
    )
    assert done.returncode == ExitCode.STORAGE, done.stderr
    assert done.stderr.splitlines()[-1].startswith("lifeboat: error: AccessDenied: ")
    stages = [json.loads(line)["progress"]["stage"] for line in done.stderr.splitlines()[:-1]]
    assert "dumping" not in stages, "the dump started before the storage was checked"
    assert time.monotonic() - started < 60
    assert reader.secret_access_key not in done.stderr
    allowed = s3_enforced_auth.allowed
    client = boto3.client(
        "s3",
        endpoint_url=s3_bucket.endpoint,
        region_name=REGION,
        aws_access_key_id=allowed.access_key_id,
        aws_secret_access_key=allowed.secret_access_key,
    )
    assert client.list_objects_v2(Bucket=s3_bucket.bucket).get("KeyCount", 0) == 0
    assert client.list_multipart_uploads(Bucket=s3_bucket.bucket).get("Uploads", []) == []


def test_backup_leaves_no_write_probe_behind(shop: Path, s3_bucket: S3Bucket) -> None:
    done = lifeboat(
        "backup", f"sqlite:///{shop}", s3_bucket.url("team"), "--progress", "none",
        env=s3_bucket.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    stored = s3_bucket.keys()
    assert stored, "the backup stored nothing"
    assert all(".lifeboat-write-check" not in key for key in stored)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only filesystem needs root")
def test_backup_refuses_a_read_only_directory_before_dumping(shop: Path, tmp_path: Path) -> None:
    mount = tmp_path / "ro"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)], check=True)
    try:
        done = lifeboat("backup", f"sqlite:///{shop}", str(mount / "backup"), "--progress", "none")
    finally:
        subprocess.run(["umount", str(mount)], check=True)
    assert done.returncode == ExitCode.STORAGE
    assert done.stderr.splitlines()[-1].startswith("lifeboat: error: AccessDenied: ")


@pytest.mark.parametrize("engine", ["postgresql", "mariadb", "sqlite"])
def test_a_dry_run_changes_nothing_in_any_engine(
    request: pytest.FixtureRequest, tmp_path: Path, engine: str
) -> None:
    db = make_database(request, engine, tmp_path)
    location = str(tmp_path / "backup")
    done = lifeboat("backup", db.url, location, "--progress", "none", env=db.env)
    assert done.returncode == 0, done.stderr
    damage(db)
    before = db.fingerprint()

    dry = lifeboat(
        "restore", location, db.url, "--dry-run", "--output", "json", "--progress", "none",
        env=db.env,
    )  # fmt: skip

    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert any(label.endswith("late_table") for label in plan["dropped"]), plan["dropped"]
    assert any(label.endswith("orders") for label in plan["replaced"]), plan["replaced"]
    assert {c["name"] for c in plan["checks"]} >= {"artifact", "checksum"}
    assert db.fingerprint() == before, "the dry run changed the target"


@pytest.mark.parametrize("engine", ["postgresql", "mariadb"])
def test_a_wrong_password_fails_on_the_password_before_the_artifact_is_read(
    request: pytest.FixtureRequest, tmp_path: Path, engine: str
) -> None:
    db = make_database(request, engine, tmp_path)
    location = tmp_path / "backup"
    done = lifeboat("backup", db.url, str(location), "--progress", "none", env=db.env)
    assert done.returncode == 0, done.stderr
    artifact = next(p for p in location.iterdir() if p.name != "manifest.json")
    corrupt = bytearray(artifact.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0x55
    artifact.write_bytes(bytes(corrupt))
    before = db.fingerprint()
    wrong = {key: "not-the-password" for key in db.env}

    for extra in ([], ["--dry-run"]):
        failed = lifeboat("restore", str(location), db.url, "--progress", "json", *extra, env=wrong)
        assert failed.returncode == ExitCode.REFUSED, failed.stderr
        assert failed.stderr.splitlines()[-1].startswith("lifeboat: error: AuthenticationFailed: ")
        stages = {json.loads(line)["progress"]["stage"] for line in failed.stderr.splitlines()[:-1]}
        assert "verifying checksum" not in stages, "the artifact was read before the login"
        assert "not-the-password" not in failed.stderr
    assert db.fingerprint() == before
