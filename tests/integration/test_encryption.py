"""Encrypted backups end to end, as a Job runs them: the `lifeboat` command against real
PostgreSQL, MariaDB and SQLite, the real S3 test server and local directories.

Every engine round-trips through an encrypted artifact. Then what must be refused with the target
left exactly as it was (whole-database fingerprints before and after): a wrong key (caught by its
id before the target is even connected to), a wrong key behind a forged key id (caught by the
first chunk), no key, a key for a plaintext backup, a malformed key; and an artifact with a
flipped byte, cut at a chunk boundary, or with two chunks swapped, each with its manifest forged
to match (size and SHA-256), so that only the encryption's authentication can catch it, with and
without the checksum pass.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lifeboat.worker.encryption import HEADER_SIZE, EncryptionKey
from tests.support import postgres as pg
from tests.support.databases import Database, damage, lifeboat, make_database
from tests.support.s3 import S3Bucket

QUIET = ("--progress", "none")


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def key_id(key: str) -> str:
    return EncryptionKey.parse(key, "test").key_id


def key_forms(key: str) -> list[str]:
    """A key as it could leak: its base64 text, that text base64'd (Secret data), its hex."""
    raw = base64.b64decode(key)
    return [key, base64.b64encode(key.encode()).decode(), raw.hex()]


@dataclass
class Location:
    """A backup location, local or in the test bucket, with raw access to what is stored."""

    url: str
    s3: S3Bucket | None = None
    directory: Path | None = None

    def get(self, name: str) -> bytes:
        if self.s3 is not None:
            key = self.url.removeprefix(f"s3://{self.s3.bucket}/") + name
            body: bytes = self.s3.client.get_object(Bucket=self.s3.bucket, Key=key)["Body"].read()
            return body
        assert self.directory is not None
        return (self.directory / name).read_bytes()

    def put(self, name: str, data: bytes) -> None:
        if self.s3 is not None:
            key = self.url.removeprefix(f"s3://{self.s3.bucket}/") + name
            self.s3.client.put_object(Bucket=self.s3.bucket, Key=key, Body=data)
            return
        assert self.directory is not None
        (self.directory / name).write_bytes(data)

    @property
    def env(self) -> dict[str, str]:
        return self.s3.env if self.s3 is not None else {}

    def manifest(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.get("manifest.json"))
        return parsed

    def artifact(self) -> bytes:
        return self.get(self.manifest()["artifact"]["key"])

    def replace_artifact(self, data: bytes, **manifest_changes: Any) -> None:
        """Store `data` as the artifact and forge the manifest to match it, as someone with
        write access to the bucket could: only the encryption can tell."""
        manifest = self.manifest()
        self.put(manifest["artifact"]["key"], data)
        manifest["artifact"]["size"] = len(data)
        manifest["artifact"]["sha256"] = hashlib.sha256(data).hexdigest()
        if "key_id" in manifest_changes:
            manifest["artifact"]["encryption"]["key_id"] = manifest_changes["key_id"]
        self.put("manifest.json", json.dumps(manifest).encode())


@pytest.fixture
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Location]:
    callspec = getattr(request.node, "callspec", None)
    storage = callspec.params.get("storage", "local") if callspec is not None else "local"
    if storage == "local":
        directory = tmp_path / "backups" / "run"
        yield Location(url=f"file://{directory}/", directory=directory)
    else:
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        yield Location(url=bucket.url("team/run"), s3=bucket)


def backup(db: Database, where: Location, *extra: str, key: str | None = None) -> Any:
    env = {**db.env, **where.env}
    if key is not None:
        env["LIFEBOAT_ENCRYPTION_KEY"] = key
    return lifeboat("backup", db.url, where.url, *QUIET, *extra, env=env)


def restore(db: Database, where: Location, *extra: str, key: str | None = None) -> Any:
    env = {**db.env, **where.env}
    if key is not None:
        env["LIFEBOAT_ENCRYPTION_KEY"] = key
    return lifeboat("restore", where.url, db.url, *QUIET, *extra, env=env)


# -- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "storage", "compression"),
    [
        ("postgresql", "s3", "none"),
        ("postgresql", "local", "zstd"),
        ("mariadb", "s3", "zstd"),
        ("sqlite", "local", "gzip"),
        ("sqlite", "s3", "zstd"),
    ],
)
def test_an_encrypted_backup_restores_the_exact_database(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine: str,
    storage: str,
    compression: str,
    location: Location,
) -> None:
    db = make_database(request, engine, tmp_path)
    key = new_key()
    original = db.fingerprint()

    done = backup(db, location, "--compression", compression, "--output", "json", key=key)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["encryption"] == {
        "algorithm": "AES-256-GCM",
        "keyId": key_id(key),
    }
    manifest_text = location.get("manifest.json").decode()
    manifest = json.loads(manifest_text)
    artifact = manifest["artifact"]
    assert artifact["key"].endswith(".enc")
    assert artifact["compression"] == compression
    assert artifact["encryption"] == {
        "algorithm": "AES-256-GCM",
        "key_id": key_id(key),
        "chunk_size": 1024 * 1024,
    }
    for leaked in key_forms(key):
        assert leaked not in manifest_text
    stored = location.artifact()
    assert stored.startswith(b"LBOATENC")
    assert hashlib.sha256(stored).hexdigest() == artifact["sha256"]  # of what is stored
    assert base64.b64decode(key) not in stored

    key_file = tmp_path / "key.b64"
    key_file.write_text(key + "\n")
    shown = lifeboat("key-id", "--encryption-key-file", str(key_file), env={})
    assert shown.stdout.strip() == key_id(key), shown.stderr

    damage(db)
    assert db.fingerprint() != original
    env = {**db.env, **location.env}
    done = lifeboat(
        "restore",
        location.url,
        db.url,
        "--encryption-key-file",
        str(key_file),
        "--output",
        "json",
        *QUIET,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rowCountsMatched"] is True
    assert db.fingerprint() == original


def test_what_is_stored_is_ciphertext(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Uncompressed, the dump names its tables in plain bytes; encrypted, it does not."""
    db = make_database(request, "postgresql", tmp_path)
    plain = Location(url=f"file://{tmp_path}/plain/", directory=tmp_path / "plain")
    secret = Location(url=f"file://{tmp_path}/secret/", directory=tmp_path / "secret")
    assert backup(db, plain, "--compression", "none").returncode == 0
    assert backup(db, secret, "--compression", "none", key=new_key()).returncode == 0
    assert b"orders" in plain.artifact()
    assert b"orders" not in secret.artifact()
    assert len(secret.artifact()) > len(plain.artifact())  # header and tags, nothing removed


# -- the key ------------------------------------------------------------------------------------


@pytest.mark.parametrize("verify_first", [True, False])
@pytest.mark.parametrize("engine", ["postgresql", "mariadb", "sqlite"])
def test_a_wrong_key_is_refused_and_the_target_is_unchanged(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    engine: str,
    verify_first: bool,
    location: Location,
) -> None:
    db = make_database(request, engine, tmp_path)
    right, wrong = new_key(), new_key()
    assert backup(db, location, key=right).returncode == 0
    damage(db)
    before = db.fingerprint()

    flags = [] if verify_first else ["--no-verify-first"]
    done = restore(db, location, *flags, key=wrong)

    assert done.returncode == 5, done.stderr
    assert "lifeboat: error: EncryptionKeyMismatch: " in done.stderr
    assert key_id(right) in done.stderr
    assert key_id(wrong) in done.stderr
    for leaked in key_forms(right) + key_forms(wrong):
        assert leaked not in done.stderr
    assert db.fingerprint() == before


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_wrong_key_fails_before_the_worker_connects_to_the_target(
    request: pytest.FixtureRequest, tmp_path: Path, location: Location
) -> None:
    db = make_database(request, "postgresql", tmp_path)
    assert backup(db, location, key=new_key()).returncode == 0
    nowhere = Database(
        url=f"postgresql://nobody@127.0.0.1:{_closed_port()}/nothing",
        env=db.env,
        fingerprint=db.fingerprint,
        execute=db.execute,
        orders_table=db.orders_table,
    )
    done = restore(nowhere, location, key=new_key())
    assert done.returncode == 5, done.stderr
    assert "EncryptionKeyMismatch" in done.stderr  # not DatabaseUnreachable: no connection yet


@pytest.mark.parametrize("forged", ["manifest", "manifest-and-header"])
def test_a_wrong_key_behind_a_forged_key_id_fails_on_the_first_chunk(
    request: pytest.FixtureRequest, tmp_path: Path, forged: str, location: Location
) -> None:
    db = make_database(request, "postgresql", tmp_path)
    right, wrong = new_key(), new_key()
    assert backup(db, location, key=right).returncode == 0
    stored = location.artifact()
    if forged == "manifest-and-header":
        wrong_id = EncryptionKey.parse(wrong, "x").key_id_bytes
        stored = stored[:13] + wrong_id + stored[29:]
    location.replace_artifact(stored, key_id=key_id(wrong))
    damage(db)
    before = db.fingerprint()

    # Without the checksum pass: only the look at the header and first chunk stands in the way.
    done = restore(db, location, "--no-verify-first", key=wrong)

    assert done.returncode == 5, done.stderr
    expected = "EncryptionKeyMismatch" if forged == "manifest" else "DecryptionFailed"
    assert f"lifeboat: error: {expected}: " in done.stderr
    if expected == "DecryptionFailed":
        assert "chunk 0 " in done.stderr
    assert db.fingerprint() == before


def test_no_key_for_an_encrypted_backup_and_a_key_for_a_plain_one_are_refused(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = make_database(request, "sqlite", tmp_path)
    encrypted = Location(url=f"file://{tmp_path}/enc/", directory=tmp_path / "enc")
    plain = Location(url=f"file://{tmp_path}/plain/", directory=tmp_path / "plain")
    key = new_key()
    assert backup(db, encrypted, key=key).returncode == 0
    assert backup(db, plain).returncode == 0
    damage(db)
    before = db.fingerprint()

    missing = restore(db, encrypted)
    assert missing.returncode == 2, missing.stderr
    assert "lifeboat: error: EncryptionKeyRequired: " in missing.stderr
    assert key_id(key) in missing.stderr

    downgrade = restore(db, plain, key=key)
    assert downgrade.returncode == 5, downgrade.stderr
    assert "lifeboat: error: BackupNotEncrypted: " in downgrade.stderr
    assert db.fingerprint() == before


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "is empty"),
        ("canary-not-a-key-7f3a9c", "is not valid base64"),
        (base64.b64encode(b"canary-too-short").decode(), "decodes to 16 bytes"),
    ],
)
def test_a_malformed_key_is_refused_naming_where_it_came_from(
    request: pytest.FixtureRequest, tmp_path: Path, value: str, says: str
) -> None:
    db = make_database(request, "sqlite", tmp_path)
    where = Location(url=f"file://{tmp_path}/b/", directory=tmp_path / "b")
    env = {
        **db.env,
        "LIFEBOAT_ENCRYPTION_KEY": value,
        "LIFEBOAT_ENCRYPTION_KEY_SOURCE": "Secret backup-key, key key: encryption.keySecretRef",
    }
    done = lifeboat("--debug", "backup", db.url, where.url, *QUIET, env=env)
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("lifeboat: error: EncryptionKeyInvalid: $LIFEBOAT_ENCRYPTION_KEY ")
    assert "Secret backup-key, key key" in last
    assert says in last
    if value:
        assert value not in done.stderr
    assert where.directory is not None
    assert not (where.directory.exists() and any(where.directory.iterdir()))  # nothing written


# -- damage only the encryption can see ----------------------------------------------------------

CHUNK = 1024 * 1024
SEALED = CHUNK + 16


def _chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[HEADER_SIZE:]
    return blob[:HEADER_SIZE], [body[i : i + SEALED] for i in range(0, len(body), SEALED)]


def _flip_in_chunk_two(blob: bytes) -> bytes:
    damaged = bytearray(blob)
    damaged[HEADER_SIZE + 2 * SEALED + 1000] ^= 0x01
    return bytes(damaged)


def _cut_at_a_chunk_boundary(blob: bytes) -> bytes:
    header, chunks = _chunks(blob)
    return header + b"".join(chunks[:-1])


def _swap_chunks_one_and_two(blob: bytes) -> bytes:
    header, chunks = _chunks(blob)
    chunks[1], chunks[2] = chunks[2], chunks[1]
    return header + b"".join(chunks)


@pytest.mark.parametrize("verify_first", [True, False])
@pytest.mark.parametrize(
    "tamper",
    [_flip_in_chunk_two, _cut_at_a_chunk_boundary, _swap_chunks_one_and_two],
    ids=["flipped-byte", "cut-at-chunk-boundary", "swapped-chunks"],
)
@pytest.mark.parametrize("storage", ["s3"])
def test_a_tampered_artifact_with_a_forged_manifest_is_refused_and_the_target_is_unchanged(
    pg_database: pg.PgDatabase,
    storage: str,
    tamper: Callable[[bytes], bytes],
    verify_first: bool,
    location: Location,
) -> None:
    pg_database.execute(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS payload "
        "FROM generate_series(1, 60000) g"
    )
    pg_database.execute("ALTER TABLE big ADD PRIMARY KEY (id)")
    db = Database(
        url=pg_database.url,
        env=pg_database.env,
        fingerprint=pg_database.fingerprint,
        execute=pg_database.execute,
        orders_table="big",
    )
    key = new_key()
    assert backup(db, location, "--compression", "none", key=key).returncode == 0
    stored = location.artifact()
    assert len(_chunks(stored)[1]) >= 4, "the artifact should span several chunks"
    location.replace_artifact(tamper(stored))
    db.execute("DELETE FROM big WHERE id % 3 = 0")
    db.execute("CREATE TABLE late_table (id INT)")
    before = db.fingerprint()

    flags = [] if verify_first else ["--no-verify-first"]
    done = restore(db, location, *flags, key=key)

    assert done.returncode == 5, done.stderr
    assert "lifeboat: error: DecryptionFailed: " in done.stderr
    assert "failed authentication" in done.stderr
    assert db.fingerprint() == before


def test_the_same_dump_twice_is_stored_differently(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A random salt per artifact: the same key never encrypts two backups alike."""
    db = make_database(request, "sqlite", tmp_path)
    key = new_key()
    first = Location(url=f"file://{tmp_path}/1/", directory=tmp_path / "1")
    second = Location(url=f"file://{tmp_path}/2/", directory=tmp_path / "2")
    assert backup(db, first, "--compression", "none", key=key).returncode == 0
    assert backup(db, second, "--compression", "none", key=key).returncode == 0
    assert first.manifest()["artifact"]["encryption"] == second.manifest()["artifact"]["encryption"]
    one, two = first.artifact(), second.artifact()
    assert one[HEADER_SIZE - 32 : HEADER_SIZE] != two[HEADER_SIZE - 32 : HEADER_SIZE]
    assert one[HEADER_SIZE:] != two[HEADER_SIZE:]


def test_a_dry_run_checks_the_key_and_authenticates_every_chunk(
    request: pytest.FixtureRequest, tmp_path: Path, location: Location
) -> None:
    db = make_database(request, "postgresql", tmp_path)
    key = new_key()
    assert backup(db, location, key=key).returncode == 0
    before = db.fingerprint()

    done = restore(db, location, "--dry-run", "--output", "json", key=key)

    assert done.returncode == 0, done.stderr
    checks = {c["name"]: c["detail"] for c in json.loads(done.stdout)["checks"]}
    assert key_id(key) in checks["encryption key"]
    assert "chunks authenticated" in checks["decryption"]
    damaged = bytearray(location.artifact())
    damaged[-1] ^= 0x01  # the last chunk's tag
    location.replace_artifact(bytes(damaged))
    refused = restore(db, location, "--dry-run", key=key)
    assert refused.returncode == 5, refused.stderr
    assert "DecryptionFailed" in refused.stderr
    assert db.fingerprint() == before
