"""A backup as it lies in storage: its objects read and written behind Lifeboat's back.

`StoredBackups` hands out backup locations in a local directory or in a real S3 bucket (the moto
server, over HTTP) and lets a test do to the stored objects what a disk, a person or an attacker
could: flip a byte, cut an object short, delete, edit or swap a manifest, put another backup's
artifact in place. It never goes through the code under test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.s3 import S3Bucket

MANIFEST = "manifest.json"


@dataclass
class StoredBackup:
    """One backup location: `url` for the worker, and raw access to its objects."""

    url: str
    env: dict[str, str]
    directory: Path | None = None
    bucket: S3Bucket | None = None
    prefix: str = ""

    def read(self, key: str) -> bytes:
        if self.directory is not None:
            return (self.directory / key).read_bytes()
        assert self.bucket is not None
        body = self.bucket.client.get_object(Bucket=self.bucket.bucket, Key=self.prefix + key)
        return body["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        if self.directory is not None:
            (self.directory / key).write_bytes(data)
            return
        assert self.bucket is not None
        self.bucket.client.put_object(Bucket=self.bucket.bucket, Key=self.prefix + key, Body=data)

    def delete(self, key: str) -> None:
        if self.directory is not None:
            (self.directory / key).unlink()
            return
        assert self.bucket is not None
        self.bucket.client.delete_object(Bucket=self.bucket.bucket, Key=self.prefix + key)

    def manifest(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.read(MANIFEST))
        return loaded

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.write(MANIFEST, json.dumps(manifest, indent=2).encode())

    @property
    def artifact_key(self) -> str:
        return str(self.manifest()["artifact"]["key"])

    def artifact(self) -> bytes:
        return self.read(self.artifact_key)

    def write_artifact(self, data: bytes) -> None:
        self.write(self.artifact_key, data)


def local_backup(root: Path, name: str) -> StoredBackup:
    """A location in a local directory (created by the backup itself)."""
    directory = root / name
    return StoredBackup(url=f"file://{directory}/", env={}, directory=directory)


def s3_backup(bucket: S3Bucket, name: str) -> StoredBackup:
    """A location under `name/` in the bucket."""
    prefix = name.strip("/") + "/"
    return StoredBackup(url=bucket.url(name), env=bucket.env, bucket=bucket, prefix=prefix)
