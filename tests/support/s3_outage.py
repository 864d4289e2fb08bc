"""An S3 test server that can go away and come back, keeping its data: for outage tests.

moto's server keeps everything in memory, so stopping and starting it would lose every bucket
and upload. Instead it runs in a process of its own (`python -m moto.server`, so it can be frozen
without freezing the tests) behind a small TCP front on a fixed port:

- `stop()` closes the front's listening socket and resets every open connection: clients get
  "connection refused" and broken streams, as when a server or its load balancer restarts;
  `start()` listens again on the same port, and the data is all still there;
- `freeze()` sends SIGSTOP to the server process: connections are accepted by the kernel but
  never answered, as with a hung server; `thaw()` (SIGCONT) lets it answer again;
- `throttle(bytes_per_second)` makes the front a slow network link, so that a backup of a few
  tens of MiB is still uploading when a test acts on its progress (a local server takes 30 MiB in
  well under a second, faster than the worker reports progress);
- `lose_reply_to(request)` lets the next request whose HTTP request line matches reach the server,
  then resets the client's connection instead of relaying the server's reply: the server acted,
  the client never heard. `replace_reply_to(request, reply)` relays `reply` instead of the
  server's (e.g. the NoSuchUpload that MinIO or Ceph RGW give a retried completion, where moto
  answers it again). Armed faults fire in order, once each; `front.fired` records them.

The outage's duration is the fault being simulated; tests schedule its end with `end_after`
and wait for the worker's exit with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, S3Bucket, plain_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_START_TIMEOUT = 30.0
_REQUEST_LINE = re.compile(rb"[A-Z]+ \S+ HTTP/1\.[01]\r\n")

RequestMatch = Callable[[bytes], bool]
"""Whether an HTTP request line (e.g. b"POST /bucket/key?uploadId=... HTTP/1.1") is the one."""


@dataclass
class ReplyFault:
    """What to do with the reply to the next request that `request` matches."""

    request: RequestMatch
    reply: bytes | None = None
    """Relayed instead of the server's reply; None: reset the connection, relay nothing."""
    then: Callable[[], None] | None = None
    """Run once the server has replied, before the client hears anything."""


def no_such_upload_reply(upload_id: str = "") -> bytes:
    """The 404 an S3 server gives for a multipart upload it does not know (any more)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchUpload</Code>'
        "<Message>The specified upload does not exist. The upload ID may be invalid, or the "
        "upload may have been aborted or completed.</Message>"
        f"<UploadId>{upload_id}</UploadId><RequestId>lost-reply</RequestId></Error>"
    ).encode()
    head = (
        "HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + body


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StoppableFront:
    """A TCP forwarder on a fixed port that can refuse connections and then accept them again."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self.port = _free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self.connections = 0
        self.rate: float | None = None
        """Bytes per second each direction of a connection may carry; None: unlimited."""
        self._faults: list[ReplyFault] = []
        self._doomed: dict[socket.socket, ReplyFault] = {}
        self.fired: list[tuple[str, bytes]] = []
        """("lost" or "replaced", request line) of every reply fault that fired, in order."""
        self.start()

    def arm(self, fault: ReplyFault) -> None:
        """Apply `fault` to the next matching request (after the faults armed before it)."""
        with self._lock:
            self._faults.append(fault)

    def disarm(self) -> None:
        """Forget the armed faults and what fired."""
        with self._lock:
            self._faults.clear()
            self._doomed.clear()
            self.fired.clear()

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self) -> None:
        """Listen on the same port again."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        with self._lock:
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        """Refuse new connections and reset the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            open_sockets, self._open = self._open, set()
        if listener is not None:
            # shutdown first: a thread blocked in accept() would keep the port listening.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                # RST instead of FIN: the client sees a reset connection, not a clean end.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self.connections += 1
                self._open.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, requests: bool = False) -> None:
        try:
            while data := source.recv(65536):
                if requests:
                    self._match(data, target)
                elif not data.startswith(b"HTTP/1.1 100 ") and (
                    fault := self._take_doomed(source)
                ):  # an interim `100 Continue` is relayed: the server has not acted yet
                    self._break_reply(fault, source, target)  # `data` is never relayed
                    return
                target.sendall(data)
                rate = self.rate
                if rate:
                    time.sleep(len(data) / rate)  # the slow link being simulated
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)
            with self._lock:
                self._open.discard(source)
            source.close()

    def _match(self, chunk: bytes, upstream: socket.socket) -> None:
        """A client's chunk that starts a request the first armed fault matches dooms the reply
        that comes back on `upstream` (boto3 sends one request at a time per connection)."""
        line = chunk.split(b"\r\n", 1)[0] + b"\r\n"
        if not _REQUEST_LINE.fullmatch(line):
            return
        with self._lock:
            if self._faults and self._faults[0].request(line.rstrip()):
                self._doomed[upstream] = self._faults.pop(0)
                self.fired.append(
                    ("lost" if self._doomed[upstream].reply is None else "replaced", line.rstrip())
                )

    def _take_doomed(self, upstream: socket.socket) -> ReplyFault | None:
        with self._lock:
            return self._doomed.pop(upstream, None)

    def _break_reply(
        self, fault: ReplyFault, upstream: socket.socket, client: socket.socket
    ) -> None:
        """The server has replied: the client gets `fault.reply` or a reset connection instead,
        and the connection ends."""
        if fault.then is not None:
            fault.then()
        with contextlib.suppress(OSError):
            if fault.reply is None:
                # RST: the client sees a connection reset after its request went out. SHUT_RD
                # sends nothing but wakes the thread reading the client, which then closes it.
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.shutdown(socket.SHUT_RD)
            else:
                client.sendall(fault.reply)
                client.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._open.difference_update((client, upstream))
        client.close()
        upstream.close()


@dataclass
class OutageS3:
    """The moto server process, the front clients talk to, and the faults."""

    process: subprocess.Popen[bytes] = field(repr=False)
    front: StoppableFront = field(repr=False)
    server_port: int

    @property
    def endpoint(self) -> str:
        """What the code under test uses: the front."""
        return f"http://127.0.0.1:{self.front.port}"

    @property
    def direct(self) -> str:
        """The server itself, for the tests' own look (bypasses a stopped front)."""
        return f"http://127.0.0.1:{self.server_port}"

    def stop(self) -> None:
        self.front.stop()

    def start(self) -> None:
        self.front.start()

    def throttle(self, bytes_per_second: float | None) -> None:
        self.front.rate = bytes_per_second

    def lose_reply_to(
        self, request: RequestMatch, *, then: Callable[[], None] | None = None
    ) -> None:
        """The next request `request` matches reaches the server; its reply never reaches the
        client, whose connection is reset (`then` runs first, once the server has replied)."""
        self.front.arm(ReplyFault(request, then=then))

    def replace_reply_to(self, request: RequestMatch, reply: bytes) -> None:
        """The next request `request` matches reaches the server; the client gets `reply` (a
        whole HTTP response, `Connection: close`) instead of the server's."""
        self.front.arm(ReplyFault(request, reply=reply))

    @property
    def fired(self) -> list[tuple[str, bytes]]:
        """("lost" or "replaced", request line) of every reply fault that fired, in order."""
        return list(self.front.fired)

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def end_after(self, seconds: float, end: str = "start") -> threading.Timer:
        """Schedule the end of the outage (`start` or `thaw`) in `seconds`."""
        timer = threading.Timer(seconds, getattr(self, end))
        timer.daemon = True
        timer.start()
        return timer

    def recover(self) -> None:
        """Back to normal whatever the test did (teardown)."""
        self.thaw()
        self.throttle(None)
        self.front.disarm()
        if not self.front.running:
            self.start()


def _wait_until_up(endpoint: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto.server exited with {process.returncode}")
        with contextlib.suppress(OSError):
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()  # noqa: S310
            return
        time.sleep(0.1)
    raise RuntimeError(f"moto.server did not answer at {endpoint} within {_START_TIMEOUT} s")


@pytest.fixture(scope="module")
def outage_s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OutageS3]:
    """A moto server in its own process and a stoppable front; one per test module."""
    port = _free_port()
    log = Path(tmp_path_factory.mktemp("moto")) / "moto.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}", process)
        front = StoppableFront(port)
        yield OutageS3(process=process, front=front, server_port=port)
        front.stop()
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class OutageBucket:
    """A fresh bucket on the outage server, and the environment that reaches it via the front."""

    server: OutageS3
    bucket: S3Bucket

    def uploads(self) -> list[tuple[str, str]]:
        """(key, upload id) of every multipart upload in progress, asked of the server itself."""
        client = self.inspector()
        response = client.list_multipart_uploads(Bucket=self.bucket.bucket)
        return sorted((u["Key"], u["UploadId"]) for u in response.get("Uploads", []))

    def object_keys(self) -> list[str]:
        client = self.inspector()
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket.bucket)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def inspector(self) -> S3Client:
        return plain_client(self.server.direct)


@pytest.fixture
def outage_bucket(
    outage_s3_server: OutageS3, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OutageBucket]:
    """A new bucket on the outage server; AWS_* in os.environ reach it through the front."""
    env = {
        "AWS_ENDPOINT_URL": outage_s3_server.endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_ENDPOINT_URL_S3", "LIFEBOAT_STORAGE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    client = plain_client(outage_s3_server.direct)
    name = f"lifeboat-outage-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    bucket = S3Bucket(endpoint=outage_s3_server.endpoint, bucket=name, client=client, env=env)
    try:
        yield OutageBucket(server=outage_s3_server, bucket=bucket)
    finally:
        outage_s3_server.recover()
        for key, upload_id in OutageBucket(outage_s3_server, bucket).uploads():
            client.abort_multipart_upload(Bucket=name, Key=key, UploadId=upload_id)
        for key in OutageBucket(outage_s3_server, bucket).object_keys():
            client.delete_object(Bucket=name, Key=key)
        client.delete_bucket(Bucket=name)
