"""S3Storage against a real S3 HTTP server (moto), over the network like AWS S3 or MinIO.

Multipart tests use 5 MiB parts, S3's real minimum, which moto enforces as well.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from lifeboat.worker.errors import (
    AccessDenied,
    BackupNotFound,
    BucketNotFound,
    StorageError,
    StorageUnreachable,
)
from lifeboat.worker.storage import open_storage
from lifeboat.worker.storage import s3 as s3_module
from lifeboat.worker.storage.s3 import S3_MIN_PART_SIZE, S3Storage
from lifeboat.worker.streams import CHUNK_SIZE
from tests.support.s3 import EnforcedAuth, S3Bucket

MIB = 1024 * 1024


class Boom(Exception):
    pass


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def storage_for(bucket: S3Bucket, prefix: str = "backups/shop", **options: Any) -> S3Storage:
    """A storage on the test bucket configured only by the AWS_* environment, like production."""
    options.setdefault("min_part_size", S3_MIN_PART_SIZE)
    return S3Storage(bucket.bucket, prefix, **options)


def write_in_chunks(
    storage: S3Storage, key: str, data: bytes, chunk: int = 700 * 1024, hint: int | None = None
) -> None:
    with storage.open_writer(key, size_hint=hint) as writer:
        for start in range(0, len(data), chunk):
            assert writer.write(data[start : start + chunk]) == len(data[start : start + chunk])


def read_in_chunks(storage: S3Storage, key: str) -> bytes:
    chunks = []
    with storage.open_reader(key) as reader:
        while chunk := reader.read(CHUNK_SIZE):
            assert len(chunk) <= CHUNK_SIZE
            chunks.append(chunk)
    return b"".join(chunks)


def write_then_fail(storage: S3Storage, key: str, data: bytes, bucket: S3Bucket) -> None:
    with storage.open_writer(key) as writer:
        writer.write(data)
        assert bucket.uploads() == [storage.prefix + key], "the write is a multipart upload"
        raise Boom


class UploadSpy:
    """Records every UploadPart the client sends: part number, size, checksum header."""

    def __init__(self, storage: S3Storage) -> None:
        self.parts: list[tuple[int, int, str]] = []
        self.calls: dict[str, int] = {}
        events = storage._client.meta.events
        events.register("provide-client-params.s3.UploadPart", self._on_part)
        events.register("before-call.s3", self._on_call)

    def _on_part(self, params: dict[str, Any], **_: Any) -> None:
        body = bytes(params["Body"])
        assert params["ChecksumSHA256"] == sha256_b64(body)
        self.parts.append((params["PartNumber"], len(body), params["ChecksumSHA256"]))

    def _on_call(self, model: Any, **_: Any) -> None:
        self.calls[model.name] = self.calls.get(model.name, 0) + 1


# Round trips


def test_a_small_object_is_one_put_with_a_sha256_checksum(s3_bucket: S3Bucket) -> None:
    storage = storage_for(s3_bucket)
    spy = UploadSpy(storage)
    data = os.urandom(300 * 1024)
    write_in_chunks(storage, "manifest.json", data)
    assert spy.calls.get("PutObject") == 1
    assert "CreateMultipartUpload" not in spy.calls
    head = s3_bucket.client.head_object(
        Bucket=s3_bucket.bucket, Key="backups/shop/manifest.json", ChecksumMode="ENABLED"
    )
    assert head["ContentLength"] == len(data)
    assert head["ChecksumSHA256"] == sha256_b64(data)
    assert storage.get_bytes("manifest.json") == data
    assert storage.size("manifest.json") == len(data)


def test_a_multipart_object_round_trips_with_checksummed_parts(s3_bucket: S3Bucket) -> None:
    storage = storage_for(s3_bucket)
    spy = UploadSpy(storage)
    data = os.urandom(3 * S3_MIN_PART_SIZE + 123_457)
    write_in_chunks(storage, "dump.pgc.zst", data, hint=len(data) // 2)  # hints are estimates
    assert [(n, size) for n, size, _ in spy.parts] == [
        (1, S3_MIN_PART_SIZE),
        (2, S3_MIN_PART_SIZE),
        (3, S3_MIN_PART_SIZE),
        (4, 123_457),
    ]
    assert spy.calls["CompleteMultipartUpload"] == 1
    assert spy.calls["HeadObject"] == 1, "the stored size is confirmed"
    assert s3_bucket.keys() == ["backups/shop/dump.pgc.zst"]
    assert s3_bucket.uploads() == []
    assert read_in_chunks(storage, "dump.pgc.zst") == data


def test_a_write_of_exactly_one_part_and_an_empty_write_round_trip(s3_bucket: S3Bucket) -> None:
    storage = storage_for(s3_bucket)
    data = os.urandom(S3_MIN_PART_SIZE)
    write_in_chunks(storage, "one-part", data, chunk=S3_MIN_PART_SIZE)
    with storage.open_writer("empty"):
        pass
    assert storage.get_bytes("one-part") == data
    assert storage.get_bytes("empty") == b""
    assert storage.size("empty") == 0


def test_parts_grow_along_the_schedule(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Compress the schedule (normally: flat for 5,000 parts, doubling every 400) to see growth.
    monkeypatch.setattr(s3_module, "FLAT_PARTS", 1)
    monkeypatch.setattr(s3_module, "GROWTH_STEP", 1)
    storage = storage_for(s3_bucket)
    spy = UploadSpy(storage)
    data = os.urandom(16 * MIB)
    write_in_chunks(storage, "dump", data, chunk=3 * MIB)
    assert [size for _, size, _ in spy.parts] == [5 * MIB, 10 * MIB, 1 * MIB]
    assert storage.get_bytes("dump") == data


def test_the_writer_keeps_at_most_two_part_buffers_alive(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    alive: set[int] = set()
    peak = 0
    lock = threading.Lock()

    class TrackedBuffer(bytearray):
        pass

    def tracked(*args: Any) -> bytearray:
        nonlocal peak
        buffer = TrackedBuffer(*args)
        with lock:
            alive.add(id(buffer))
            peak = max(peak, len(alive))
        weakref.finalize(buffer, alive.discard, id(buffer))
        return buffer

    monkeypatch.setattr(s3_module, "bytearray", tracked, raising=False)
    storage = storage_for(s3_bucket)
    data = os.urandom(5 * S3_MIN_PART_SIZE + 1)
    write_in_chunks(storage, "dump", data, chunk=CHUNK_SIZE)
    assert peak == 2, "one buffer filling while one uploads, never more"
    assert storage.get_bytes("dump") == data


def test_the_aws_environment_alone_is_enough(s3_bucket: S3Bucket) -> None:
    # No endpoint, region or credentials passed: AWS_ENDPOINT_URL etc. come from os.environ.
    storage = open_storage(s3_bucket.url("team/shop"))
    assert isinstance(storage, S3Storage)
    assert storage.endpoint == s3_bucket.endpoint
    storage.check()
    storage.put_bytes("manifest.json", b"{}")
    assert s3_bucket.keys() == ["team/shop/manifest.json"]
    assert storage.uri("manifest.json") == f"s3://{s3_bucket.bucket}/team/shop/manifest.json"


def test_url_parameters_reach_a_server_the_environment_does_not_name(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    storage = open_storage(f"{s3_bucket.url()}?endpoint={s3_bucket.endpoint}&addressing=path")
    storage.put_bytes("m", b"1")
    assert s3_bucket.keys() == ["m"]


# Abort paths


def test_an_exception_in_the_writer_aborts_the_upload(s3_bucket: S3Bucket) -> None:
    storage = storage_for(s3_bucket)
    spy = UploadSpy(storage)
    with pytest.raises(Boom):
        write_then_fail(storage, "dump", os.urandom(2 * S3_MIN_PART_SIZE + 10), s3_bucket)
    assert len(spy.parts) >= 2
    assert spy.calls["AbortMultipartUpload"] == 1
    assert s3_bucket.uploads() == []
    assert s3_bucket.keys() == []
    assert storage.size("dump") is None


def test_a_previous_object_survives_an_aborted_overwrite(s3_bucket: S3Bucket) -> None:
    storage = storage_for(s3_bucket)
    storage.put_bytes("dump", b"previous good backup")
    with pytest.raises(Boom):
        write_then_fail(storage, "dump", os.urandom(S3_MIN_PART_SIZE + 1), s3_bucket)
    assert storage.get_bytes("dump") == b"previous good backup"
    assert s3_bucket.uploads() == []


# Errors


def test_a_missing_bucket_is_bucket_not_found_naming_bucket_and_endpoint(
    s3_bucket: S3Bucket,
) -> None:
    storage = S3Storage("lifeboat-no-such-bucket", "shop", min_part_size=S3_MIN_PART_SIZE)
    expected = f"bucket 'lifeboat-no-such-bucket' does not exist at {s3_bucket.endpoint}"
    with pytest.raises(BucketNotFound, match=expected):
        storage.check()
    with pytest.raises(BucketNotFound, match=expected):
        storage.get_bytes("manifest.json")
    with pytest.raises(BucketNotFound, match=expected):
        storage.size("manifest.json")
    with pytest.raises(BucketNotFound, match=expected):
        storage.put_bytes("manifest.json", b"{}")
    with pytest.raises(BucketNotFound, match=expected):
        write_in_chunks(storage, "dump", os.urandom(S3_MIN_PART_SIZE + 1))


def test_a_missing_object_is_backup_not_found(s3_bucket: S3Bucket) -> None:
    storage = storage_for(s3_bucket)
    where = f"s3://{s3_bucket.bucket}/backups/shop/manifest.json"
    with pytest.raises(BackupNotFound, match=where):
        storage.get_bytes("manifest.json")
    with pytest.raises(BackupNotFound, match=where), storage.open_reader("manifest.json"):
        pass
    assert storage.size("manifest.json") is None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_endpoint_is_storage_unreachable_quickly(s3_bucket: S3Bucket) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    storage = storage_for(s3_bucket, endpoint_url=endpoint, max_attempts=1, connect_timeout=1)
    started = time.monotonic()
    with pytest.raises(StorageUnreachable, match=f"cannot reach the S3 endpoint {endpoint}"):
        storage.check()
    with pytest.raises(StorageUnreachable, match=endpoint):
        storage.put_bytes("manifest.json", b"{}")
    with pytest.raises(StorageUnreachable, match=endpoint):
        storage.get_bytes("manifest.json")
    assert time.monotonic() - started < 5


def test_unknown_credentials_are_access_denied_without_the_key(
    s3_enforced_auth: EnforcedAuth, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY123456")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret-value")
    storage = storage_for(s3_bucket)
    with pytest.raises(AccessDenied) as caught:
        storage.put_bytes("manifest.json", b"{}")
    message = str(caught.value)
    assert "access key id is unknown" in message
    assert "environment variables AWS_ACCESS_KEY_ID" in message
    assert "AKIAUNKNOWNKEY123456" not in message
    assert "not-a-real-secret-value" not in message
    with pytest.raises(AccessDenied):
        storage.check()


def test_a_wrong_secret_is_access_denied_saying_so(
    s3_enforced_auth: EnforcedAuth, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_enforced_auth.allowed.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
    with pytest.raises(AccessDenied, match="secret access key does not match") as caught:
        storage_for(s3_bucket).get_bytes("manifest.json")
    assert "wrong-secret-value" not in str(caught.value)
    assert s3_enforced_auth.allowed.access_key_id not in str(caught.value)


def test_credentials_without_permission_are_access_denied_naming_the_action(
    s3_enforced_auth: EnforcedAuth, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_enforced_auth.without_policy.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_enforced_auth.without_policy.secret_access_key)
    with pytest.raises(AccessDenied, match=f"s3:PutObject on bucket '{s3_bucket.bucket}'"):
        storage_for(s3_bucket).put_bytes("manifest.json", b"{}")


def test_valid_credentials_pass_when_the_server_checks_them(
    s3_enforced_auth: EnforcedAuth, s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_enforced_auth.allowed.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_enforced_auth.allowed.secret_access_key)
    storage = storage_for(s3_bucket)
    storage.check()
    storage.put_bytes("manifest.json", b"{}")
    assert storage.get_bytes("manifest.json") == b"{}"


def test_delete_goes_in_batches_and_ignores_missing_keys(
    s3_bucket: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_module, "DELETE_BATCH", 2)
    storage = storage_for(s3_bucket)
    for name in "abcde":
        storage.put_bytes(name, name.encode())
    spy = UploadSpy(storage)
    storage.delete(["a", "b", "c", "d", "never-written"])
    assert spy.calls["DeleteObjects"] == 3
    assert s3_bucket.keys() == ["backups/shop/e"]


# Resuming reads


class DroppingProxy:
    """A TCP proxy to the S3 server that cuts a response body short, like a network blip.

    budgets[i] is how many body bytes the i-th connection may carry (None: no cut); later
    connections are not cut. The test server closes every connection after one response, so a
    connection is one request.
    """

    def __init__(self, upstream: str, budgets: list[int | None]) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._budgets = list(budgets)
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            budget = self._budgets.pop(0) if self._budgets else None
            upstream = socket.create_connection(self._upstream)
            for source, target, limit in ((client, upstream, None), (upstream, client, budget)):
                threading.Thread(
                    target=self._pipe, args=(source, target, limit), daemon=True
                ).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket, budget: int | None) -> None:
        head = b""
        in_body = budget is None
        try:
            while data := source.recv(65536):
                if not in_body:
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    in_body = True
                    target.sendall(head[: end + 4])
                    data = head[end + 4 :]
                if budget is not None:
                    data = data[:budget]
                    budget -= len(data)
                target.sendall(data)
                if budget == 0:
                    break
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@pytest.fixture
def make_proxy(s3_bucket: S3Bucket) -> Iterator[Any]:
    proxies: list[DroppingProxy] = []

    def make(budgets: list[int | None]) -> DroppingProxy:
        proxies.append(DroppingProxy(s3_bucket.endpoint, budgets))
        return proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def test_a_read_resumes_where_the_connection_dropped(s3_bucket: S3Bucket, make_proxy: Any) -> None:
    data = os.urandom(3 * MIB + 17)
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key="backups/shop/dump", Body=data)
    proxy = make_proxy([1 * MIB, 512 * 1024])
    storage = storage_for(s3_bucket, endpoint_url=proxy.endpoint)
    assert read_in_chunks(storage, "dump") == data
    assert proxy.connections == 3, "two drops, two ranged GETs"


def test_a_read_gives_up_after_repeated_drops(s3_bucket: S3Bucket, make_proxy: Any) -> None:
    s3_bucket.client.put_object(
        Bucket=s3_bucket.bucket, Key="backups/shop/dump", Body=os.urandom(3 * MIB)
    )
    proxy = make_proxy([0] * 10)  # every response loses its whole body
    storage = storage_for(s3_bucket, endpoint_url=proxy.endpoint, read_resumes=2)
    with pytest.raises(StorageUnreachable, match=f"{proxy.endpoint} kept dropping.*at byte 0"):
        read_in_chunks(storage, "dump")
    assert proxy.connections == 3


def test_a_resumed_read_never_splices_a_replaced_object(
    s3_bucket: S3Bucket, make_proxy: Any
) -> None:
    key = "backups/shop/dump"
    s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key=key, Body=os.urandom(3 * MIB))
    proxy = make_proxy([1 * MIB])
    storage = storage_for(s3_bucket, endpoint_url=proxy.endpoint)
    with storage.open_reader("dump") as reader:
        assert len(reader.read(64 * 1024)) == 64 * 1024
        s3_bucket.client.put_object(Bucket=s3_bucket.bucket, Key=key, Body=os.urandom(3 * MIB))
        with pytest.raises(StorageError, match="replaced while it was being read"):
            reader.read()
