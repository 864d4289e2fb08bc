"""S3-compatible object storage (AWS S3, MinIO, Ceph RGW, Cloudflare R2): the only boto3 user.

Configuration follows the standard AWS environment, so the same image works everywhere:

- credentials: boto3's chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,
  ~/.aws files, IRSA web identity, EKS Pod Identity, instance profile);
- endpoint: the `endpoint_url` argument, else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL (read by
  boto3 itself), else AWS;
- region: the `region` argument, else AWS_REGION, else boto3's own (AWS_DEFAULT_REGION, config);
- addressing: the `addressing_style` argument, else LIFEBOAT_S3_ADDRESSING_STYLE ("path",
  "virtual" or "auto"). Left unset, path-style is used for any non-AWS endpoint (MinIO and most
  self-hosted servers cannot route virtual-hosted buckets) and botocore's "auto" for AWS.

Writes stream as a multipart upload with bounded memory: at most two part buffers are alive, one
being filled by the caller and one being uploaded by a background thread, so a writer holds at
most 2 x the current part size. Nothing is staged on disk. Part sizes (`first_part_size`,
`part_size`): the first 5,000 parts are max(8 MiB, size_hint / 5,000), then the size doubles
every 400 parts, up to 5 GiB, so 10,000 parts always hold more than S3's 5 TiB object limit and a
low or missing hint costs memory, never the upload. With an accurate (or high) hint all parts keep
the first size: 16 MiB of buffers up to 39 GiB, 2 x hint / 5,000 beyond. Without a hint, the largest
part is 8 MiB up to 39 GiB, 16 MiB up to 45 GiB, 64 MiB up to 82 GiB, 128 MiB up to 132 GiB,
256 MiB up to 232 GiB, and so on.

Every part (and every single PutObject) carries its SHA-256 in `x-amz-checksum-sha256`, which S3
verifies on receipt (BadDigest otherwise); when the server echoes a checksum it is compared too.
Objects smaller than one part go up with a single PutObject. After CompleteMultipartUpload a HEAD
confirms that the stored size equals the bytes written. When the answer to CompleteMultipartUpload
is lost (the server completed the upload, the connection broke before its reply), the retry gets
NoSuchUpload; the object at the key then counts as written only if it is provably this upload's:
its size, and its composite SHA-256 (or, without one, its multipart ETag) computed from the parts.

Server-side encryption (`server_side_encryption`, else LIFEBOAT_S3_SSE: `AES256` for SSE-S3 or
`aws:kms` for SSE-KMS, with `sse_kms_key_id`, else LIFEBOAT_S3_SSE_KMS_KEY_ID) is asked for on
every write: each PutObject and CreateMultipartUpload (its parts inherit it), the manifest and the
write probe included, so a backup that may not use the KMS key fails at its write probe, before
the dump starts. `stored_encryption` reads back what S3 applied. Reads need nothing: S3 decrypts
for a caller allowed to (kms:Decrypt for SSE-KMS).

Reads stream a GET and, when the connection drops mid-way, resume with a ranged GET pinned to the
object's ETag (If-Match), so a long restore survives network blips and never splices two
different versions of an object. `read_resumes` bounds the resumes in a row that bring no new
bytes; any progress restores the allowance, so many blips spread over a long read are survived.

Outages: once the server has answered, every call that fails for a reason time can fix (no
connection, a timeout, a 5xx, throttling) is tried again with exponential backoff (0.5 s doubling
up to 8 s, with jitter) for up to `storage_timeout` seconds (else LIFEBOAT_STORAGE_TIMEOUT, else
120 s), so an upload or a download survives a server restart or a stall. Past that budget the call
fails with StorageUnreachable naming the operation, the endpoint and the budget; one attempt's
own timeout (connect and read, at most half the budget) bounds how far past it. Before the server
has answered once (the preflight), a call is tried `max_attempts` times only, so a wrong endpoint
fails in seconds.

Leftovers: `remove_incomplete` aborts the multipart uploads an interrupted (killed) write left for
the given keys directly at this location; nothing else in the bucket is touched.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

import boto3
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    NoCredentialsError,
    PartialCredentialsError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from lifeboat import __version__
from lifeboat.contract import (
    DEFAULT_STORAGE_TIMEOUT,
    ENV_S3_ADDRESSING_STYLE,
    ENV_S3_CA_BUNDLE,
    ENV_S3_SSE,
    ENV_S3_SSE_KMS_KEY_ID,
    ENV_STORAGE_TIMEOUT,
    SSE_KMS,
    SSE_S3,
)
from lifeboat.worker.errors import (
    AccessDenied,
    BackupNotFound,
    BucketNotFound,
    StorageError,
    StorageTlsVerificationFailed,
    StorageUnreachable,
    UsageError,
)
from lifeboat.worker.storage.base import (
    WRITE_PROBE,
    ObjectWriter,
    StoredEncryption,
    StoredObject,
)
from lifeboat.worker.streams import CHUNK_SIZE, Readable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        CompletedPartTypeDef,
        CompleteMultipartUploadOutputTypeDef,
        GetObjectOutputTypeDef,
        ObjectIdentifierTypeDef,
    )

T = TypeVar("T")
AddressingStyle = Literal["path", "virtual", "auto"]
ADDRESSING_STYLES: tuple[AddressingStyle, ...] = ("path", "virtual", "auto")
ADDRESSING_STYLE_ENV = ENV_S3_ADDRESSING_STYLE
SSE_TYPES = (SSE_S3, SSE_KMS)

MIB = 1024 * 1024
S3_MIN_PART_SIZE = 5 * MIB
S3_MAX_PART_SIZE = 5 * 1024 * MIB
S3_MAX_PARTS = 10_000
S3_MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MIB
DEFAULT_MIN_PART_SIZE = 8 * MIB
# The part size stays flat for FLAT_PARTS parts (the hint is spread over them), then doubles every
# GROWTH_STEP parts, so an object far larger than its hint still fits in 10,000 parts.
FLAT_PARTS = 5_000
GROWTH_STEP = 400
DELETE_BATCH = 1_000
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 8.0
# Answers that time can fix: the server is overloaded, restarting or throttling.
_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "500",
    "502",
    "503",
    "504",
}

_ACCESS_CODES = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "AccountProblem",
    "403",
    "Forbidden",
}
_REGION_CODES = {
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
    "301",
}
# Raised by a body's read() when the connection breaks mid-stream.
_STREAM_ERRORS: tuple[type[BaseException], ...] = (
    IncompleteReadError,
    HTTPClientError,
    BotoConnectionError,
    urllib3.exceptions.HTTPError,
    ConnectionError,
    TimeoutError,
)
_CREDENTIAL_SOURCES = {
    "env": "the environment variables AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
    "(and AWS_SESSION_TOKEN)",
    "shared-credentials-file": "the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or "
    "~/.aws/credentials)",
    "config-file": "the AWS config file (AWS_CONFIG_FILE or ~/.aws/config)",
    "assume-role": "the role assumed from the AWS config file profile",
    "assume-role-with-web-identity": "the web identity role (IRSA: AWS_ROLE_ARN and "
    "AWS_WEB_IDENTITY_TOKEN_FILE)",
    "container-role": "the container credentials endpoint (EKS Pod Identity or ECS task role)",
    "iam-role": "the instance profile role (EC2 instance metadata)",
    "sso": "the AWS SSO profile",
    "explicit": "the credentials passed explicitly",
}
_PERMISSIONS = {
    "HeadBucket": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
    "HeadObject": "s3:GetObject",
    "GetObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "DeleteObjects": "s3:DeleteObject",
    "DeleteObject": "s3:DeleteObject",
}


def first_part_size(size_hint: int | None, min_part_size: int = DEFAULT_MIN_PART_SIZE) -> int:
    """The part size of the flat range: big enough that the hint fits in FLAT_PARTS parts.

    The hint is only an estimate; if it is too low, `part_size` grows the parts after the flat
    range, so the hint decides memory use, never whether the upload can finish.
    """
    spread = -(-(size_hint or 0) // FLAT_PARTS)
    wanted = max(min_part_size, S3_MIN_PART_SIZE, spread)
    if wanted % MIB:
        wanted += MIB - wanted % MIB
    return min(wanted, S3_MAX_PART_SIZE)


def part_size(part_number: int, first: int) -> int:
    """Size of part `part_number` (1-based): flat for FLAT_PARTS parts, then doubling.

    With first = 5 MiB (the S3 minimum), 10,000 parts hold more than 5 TiB, the S3 object limit,
    so no hint, however wrong, caps the object. Parts never exceed 5 GiB.
    """
    if part_number <= FLAT_PARTS:
        return first
    doublings = (part_number - FLAT_PARTS - 1) // GROWTH_STEP + 1
    return min(first << min(doublings, 32), S3_MAX_PART_SIZE)


def _checksum(data: bytes | bytearray) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


_MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")


def multipart_etag(part_etags: Sequence[str]) -> str | None:
    """The ETag S3 gives the completion of parts with these ETags: the MD5 of their binary MD5s,
    then `-<number of parts>`. None when a part's ETag is not a plain MD5 (SSE-KMS, SSE-C)."""
    digests = bytearray()
    for etag in part_etags:
        plain = etag.strip('"')
        if not _MD5_HEX.fullmatch(plain):
            return None
        digests += bytes.fromhex(plain)
    return f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(part_etags)}"


def composite_sha256(part_checksums: Sequence[str]) -> str:
    """The composite SHA-256 of a multipart upload (base64, without S3's `-<number of parts>`):
    the SHA-256 of the parts' binary SHA-256s."""
    return _checksum(b"".join(base64.b64decode(checksum) for checksum in part_checksums))


def completed_from(
    head: Mapping[str, Any], parts: Sequence[CompletedPartTypeDef], written: int
) -> tuple[bool, str]:
    """Whether the object a HEAD describes is provably the completion of `parts` (`written`
    bytes), and what the HEAD found, for an error message.

    Proof is the size and the composite SHA-256 when the server reports one (it then decides
    alone), else the size and the multipart ETag when the parts' ETags are MD5s. Anything less
    is not proof."""
    size = head.get("ContentLength")
    etag = str(head.get("ETag") or "").strip('"')
    reported = str(head.get("ChecksumSHA256") or "")
    found = f"{size} bytes, ETag {etag or 'none'}, SHA-256 {reported or 'not reported'}"
    if size != written or not parts:
        return False, found
    checksums = [part.get("ChecksumSHA256", "") for part in parts]
    if reported and all(checksums):
        # AWS reports a composite checksum as `<base64>-<parts>`; some servers omit the suffix.
        value, _, count = reported.partition("-")
        if count and count != str(len(parts)):
            return False, found
        return value == composite_sha256(checksums), found
    expected = multipart_etag([part.get("ETag", "") for part in parts])
    return expected is not None and etag == expected, found


def _error_code(exc: BaseException | None) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _as_body(data: bytes | bytearray) -> bytes:
    # botocore sends a bytearray as it is (its validator accepts bytes, bytearray, str); the
    # stubs only say bytes. Casting avoids copying a whole part.
    return cast(bytes, data)


def _storage_timeout(value: float | None, env: Mapping[str, str]) -> float:
    if value is None:
        text = env.get(ENV_STORAGE_TIMEOUT) or ""
        try:
            value = float(text) if text else DEFAULT_STORAGE_TIMEOUT
        except ValueError:
            value = 0.0
    if not value > 0:
        raise UsageError(
            f"--storage-timeout ({ENV_STORAGE_TIMEOUT}) must be a positive number of seconds"
        )
    return value


def _transient(exc: Exception) -> bool:
    """Whether trying the call again later may succeed: no connection, a timeout, a 5xx,
    throttling. Refusals (credentials, a missing bucket, a certificate that does not verify) are
    not."""
    if isinstance(exc, SSLError):
        return False
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in _TRANSIENT_CODES or status >= 500
    return False


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: 0.5, 1, 2, 4, 8, 8 ... seconds, each 50-100 %."""
    ceiling = min(BACKOFF_MAX, BACKOFF_FIRST * float(2 ** min(attempt - 1, 16)))
    return ceiling * (0.5 + secrets.randbelow(501) / 1000)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', '')} {error.get('Message', '')}".strip()
    return type(exc).__name__


def _is_aws(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


class S3Storage:
    """A backup location `s3://bucket/prefix/` on any S3-compatible server."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: AddressingStyle | None = None,
        min_part_size: int = DEFAULT_MIN_PART_SIZE,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        read_resumes: int = 3,
        storage_timeout: float | None = None,
        list_page_size: int = 1000,
        server_side_encryption: str | None = None,
        sse_kms_key_id: str | None = None,
        ca_bundle: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self.ca_bundle = ca_bundle or env.get(ENV_S3_CA_BUNDLE) or None
        """A PEM file of the CAs trusted for an https endpoint; None: the system's."""
        if self.ca_bundle is not None and not os.path.isfile(self.ca_bundle):
            raise UsageError(
                f"--storage-ca-bundle ({ENV_S3_CA_BUNDLE}, ca-bundle= in BACKUP_URL) names "
                f"{self.ca_bundle}, which is not a readable file: check the path (in a Job, the "
                "mounted Secret or ConfigMap and its key)"
            )
        if not bucket:
            raise UsageError("BACKUP_URL: an S3 location needs a bucket, e.g. s3://backups/shop/")
        if min_part_size < S3_MIN_PART_SIZE:
            raise ValueError(f"min_part_size must be at least {S3_MIN_PART_SIZE} (S3's minimum)")
        style = addressing_style or env.get(ADDRESSING_STYLE_ENV) or None
        if style is not None and style not in ADDRESSING_STYLES:
            raise UsageError(
                f"{ADDRESSING_STYLE_ENV}: {style!r} is not an addressing style; "
                "use path, virtual or auto"
            )
        sse = server_side_encryption or env.get(ENV_S3_SSE) or None
        kms_key_id = sse_kms_key_id or env.get(ENV_S3_SSE_KMS_KEY_ID) or None
        if sse is not None and sse not in SSE_TYPES:
            raise UsageError(
                f"{ENV_S3_SSE} (sse= in BACKUP_URL): {sse!r} is not a server-side encryption; "
                f"use {SSE_S3} (SSE-S3) or {SSE_KMS} (SSE-KMS)"
            )
        if kms_key_id is not None and sse != SSE_KMS:
            raise UsageError(
                f"{ENV_S3_SSE_KMS_KEY_ID} (kms-key-id= in BACKUP_URL) names a KMS key, which is "
                f"for server-side encryption {SSE_KMS}; set {ENV_S3_SSE}={SSE_KMS} or remove it"
            )
        self.server_side_encryption = sse
        """What every write asks for: AES256, aws:kms, or None (the bucket's default)."""
        self.sse_kms_key_id = kms_key_id
        self.storage_timeout = _storage_timeout(storage_timeout, env)
        """Seconds a failing call is retried once the server has answered (see the module)."""
        self.max_attempts = max_attempts
        self._reached = False
        self.bucket = bucket
        prefix = prefix.lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.min_part_size = min_part_size
        self.read_resumes = read_resumes
        self.list_page_size = list_page_size
        try:
            self._session = boto3.session.Session(
                region_name=region or env.get("AWS_REGION") or None
            )
        except BotoCoreError as exc:  # e.g. AWS_PROFILE names a profile that does not exist
            raise StorageError(f"cannot configure the S3 client: {exc}") from exc

        def make_client(chosen: AddressingStyle) -> S3Client:
            # One attempt per botocore call: `_call` retries, within the storage timeout.
            config = Config(
                retries={"mode": "standard", "total_max_attempts": 1},
                connect_timeout=min(connect_timeout, self.storage_timeout / 2),
                read_timeout=min(read_timeout, self.storage_timeout / 2),
                tcp_keepalive=True,
                s3={"addressing_style": chosen},
                request_checksum_calculation="when_required",
                user_agent_extra=f"lifeboat/{__version__}",
            )
            return self._session.client(
                "s3",
                endpoint_url=endpoint_url or None,
                config=config,
                verify=self.ca_bundle if self.ca_bundle is not None else True,
            )

        try:
            self._client = make_client(style or "auto")
            if style is None and not _is_aws(self.endpoint):
                self._client = make_client("path")
        except BotoCoreError as exc:
            raise StorageError(f"cannot configure the S3 client: {exc}") from exc
        except ValueError as exc:  # botocore rejects a malformed endpoint URL this way
            raise UsageError(f"S3 endpoint: {exc}") from exc

    @property
    def endpoint(self) -> str:
        """The endpoint URL actually in use (after AWS_ENDPOINT_URL and region resolution)."""
        return self._client.meta.endpoint_url

    @property
    def addressing_style(self) -> str:
        """The addressing style the client was built with."""
        s3_config: Mapping[str, Any] = getattr(self._client.meta.config, "s3", None) or {}
        return str(s3_config.get("addressing_style", "auto"))

    def uri(self, key: str = "") -> str:
        """The location of `key` for people and the manifest."""
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def check(self) -> None:
        """HeadBucket: proves endpoint, credentials and bucket before any work starts."""
        self._call("HeadBucket", None, lambda: self._client.head_bucket(Bucket=self.bucket))

    def check_writable(self) -> None:
        """PutObject of an empty probe (proves s3:PutObject here), then delete it."""
        self._put_object(WRITE_PROBE, b"")
        with suppress(AccessDenied):  # a write-once bucket may refuse the delete: harmless
            self.delete([WRITE_PROBE])

    def open_writer(
        self, key: str, size_hint: int | None = None
    ) -> AbstractContextManager[ObjectWriter]:
        """Stream an object as a multipart upload; an exception in the block aborts the upload."""
        return self._writing(key, size_hint)

    def open_reader(self, key: str) -> AbstractContextManager[Readable]:
        """Stream an object, resuming with a ranged GET if the connection drops."""
        return self._reading(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        """Write a small object with one PutObject (atomic on S3)."""
        self._put_object(key, data)

    def get_bytes(self, key: str) -> bytes:
        """Read a small object whole."""
        with self._reading(key) as reader:
            return reader.read()

    def size(self, key: str) -> int | None:
        """Bytes of the object, or None when it does not exist (a missing bucket still raises)."""
        try:
            head = self._call(
                "HeadObject",
                key,
                lambda: self._client.head_object(Bucket=self.bucket, Key=self._key(key)),
            )
        except BackupNotFound:
            self.check()
            return None
        return head["ContentLength"]

    def stored_encryption(self, key: str) -> StoredEncryption | None:
        """HeadObject: the server-side encryption S3 applied to the object, or None."""
        head = self._call(
            "HeadObject",
            key,
            lambda: self._client.head_object(Bucket=self.bucket, Key=self._key(key)),
        )
        applied: str | None = head.get("ServerSideEncryption")  # absent: no SSE
        if applied is None:
            return None
        return StoredEncryption(type=str(applied), kms_key_id=head.get("SSEKMSKeyId") or None)

    def delete(self, keys: list[str]) -> None:
        """DeleteObjects in batches of 1000; keys that do not exist are not an error."""
        names = [self._key(k) for k in keys]
        for start in range(0, len(names), DELETE_BATCH):
            objects: list[ObjectIdentifierTypeDef] = [
                {"Key": name} for name in names[start : start + DELETE_BATCH]
            ]
            response = self._call(
                "DeleteObjects",
                None,
                partial(
                    self._client.delete_objects,
                    Bucket=self.bucket,
                    Delete={"Objects": objects, "Quiet": True},
                ),
            )
            failed = [e for e in response.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if failed:
                first = failed[0]
                code = first.get("Code", "")
                where = f"s3://{self.bucket}/{first.get('Key', '')}"
                message = f"{code}: {first.get('Message', '')}"
                if code in _ACCESS_CODES:
                    raise AccessDenied(
                        f"could not delete {len(failed)} object(s), e.g. {where} ({message}); "
                        f"{self._credential_hint('DeleteObjects')}"
                    )
                raise StorageError(
                    f"could not delete {len(failed)} object(s), e.g. {where} ({message})"
                )

    def list_objects(self, prefix: str = "") -> Iterator[StoredObject]:
        """ListObjectsV2 below the location, page by page (`list_page_size` keys a page, 1000 by
        default, S3's maximum), in key order."""
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self.prefix + prefix,
            PaginationConfig={"PageSize": self.list_page_size},
        )
        iterator = iter(pages)
        while True:
            # Each page is one request: its failure is a typed StorageError like any other call.
            page = self._call("ListObjectsV2", None, partial(next, iterator, None))
            if page is None:
                return
            for item in page.get("Contents", []):
                name = item.get("Key", "")
                if name.startswith(self.prefix) and name != self.prefix:
                    yield StoredObject(name[len(self.prefix) :], item.get("Size", 0))

    def at(self, path: str) -> S3Storage:
        """The prefix `path` below this one, sharing this client (and its credentials)."""
        parts = [part for part in path.split("/") if part]
        if any(part in (".", "..") for part in parts):
            raise ValueError(f"a location below {self.uri()} is a relative path, got {path!r}")
        child = copy.copy(self)
        child.prefix = self.prefix + "".join(f"{part}/" for part in parts)
        return child

    # Internals

    def _key(self, key: str) -> str:
        if not key or key.startswith("/"):
            raise ValueError(f"object keys are relative names, got {key!r}")
        return self.prefix + key

    def _call(self, operation: str, key: str | None, fn: Callable[[], T]) -> T:
        """Run one S3 call, retrying what time can fix (see the module); every failure leaves
        as a typed StorageError."""
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                result = fn()
            except (BotoCoreError, ClientError) as exc:
                if not _transient(exc):
                    raise self._error(exc, operation, key) from exc
                delay = _backoff(attempts)
                if not self._reached:
                    if attempts >= self.max_attempts:
                        raise self._error(exc, operation, key) from exc
                    time.sleep(delay)
                    continue
                waited = time.monotonic() - started
                if waited + delay > self.storage_timeout:
                    raise StorageUnreachable(
                        f"{operation} on {self.uri(key or '')} got no answer from "
                        f"{self.endpoint} for {waited:.0f} s ({attempts} attempts, last: "
                        f"{_describe(exc)}); gave up after the storage timeout of "
                        f"{self.storage_timeout:g} s (--storage-timeout, "
                        f"{ENV_STORAGE_TIMEOUT}); check the S3 server and the network path"
                    ) from exc
                time.sleep(delay)
                continue
            self._reached = True
            return result

    def remove_incomplete(self, keys: list[str]) -> list[str]:
        """Abort the multipart uploads left for `keys` (directly at this location) by a write
        that was killed before it could abort them itself; returns what was aborted.

        Only uploads whose key is exactly one of `keys` below this prefix are touched: another
        backup's (a deeper prefix) and anything else in the bucket are left alone."""
        wanted = {self._key(k) for k in keys}
        removed: list[str] = []
        markers: dict[str, str] = {}
        while True:
            page = self._call(
                "ListMultipartUploads",
                None,
                partial(
                    self._client.list_multipart_uploads,
                    Bucket=self.bucket,
                    Prefix=self.prefix,
                    **markers,  # type: ignore[arg-type]
                ),
            )
            for upload in page.get("Uploads", []):
                name, upload_id = upload.get("Key", ""), upload.get("UploadId", "")
                if name not in wanted or not upload_id:
                    continue
                key = name[len(self.prefix) :]
                self._call(
                    "AbortMultipartUpload",
                    key,
                    partial(
                        self._client.abort_multipart_upload,
                        Bucket=self.bucket,
                        Key=name,
                        UploadId=upload_id,
                    ),
                )
                removed.append(f"{self.uri(key)} (multipart upload {upload_id})")
            if not page.get("IsTruncated"):
                return removed
            markers = {
                "KeyMarker": page.get("NextKeyMarker", ""),
                "UploadIdMarker": page.get("NextUploadIdMarker", ""),
            }

    def _error(self, exc: Exception, operation: str, key: str | None) -> StorageError:
        where = self.uri(key or "")
        if isinstance(exc, ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            detail = str(error.get("Message", "")) or code
            if code == "NoSuchBucket" or (key is None and code in ("404", "NotFound")):
                return BucketNotFound(
                    f"bucket '{self.bucket}' does not exist at {self.endpoint}; create it, or fix "
                    "the bucket in the storage spec / BACKUP_URL"
                )
            if code in ("NoSuchKey", "404", "NotFound"):
                return BackupNotFound(f"no object at {where} (endpoint {self.endpoint})")
            if code in _ACCESS_CODES:
                missing = ""
                if operation in ("HeadObject", "GetObject") and code in ("403", "AccessDenied"):
                    missing = " (S3 also answers 403 for a missing object without s3:ListBucket)"
                return AccessDenied(
                    f"{operation} on {where} was refused by {self.endpoint}: "
                    f"{self._refusal(code)}; {self._credential_hint(operation)}{missing}"
                )
            if code in _REGION_CODES:
                return StorageError(
                    f"bucket '{self.bucket}' is in another region than "
                    f"{self._session.region_name or 'the default'} ({detail}); set AWS_REGION "
                    "or region= in BACKUP_URL to the bucket's region"
                )
            if code == "PreconditionFailed":
                return StorageError(f"{where} was replaced while it was being read; run again")
            return StorageError(f"{operation} on {where} failed at {self.endpoint}: {detail}")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return AccessDenied(
                f"no usable S3 credentials for {where} ({exc}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or give the Pod a role (IRSA / Pod Identity)"
            )
        if isinstance(exc, SSLError):
            trusted = f"the CA bundle {self.ca_bundle}" if self.ca_bundle else "the system's CAs"
            return StorageTlsVerificationFailed(
                f"the TLS certificate of the S3 endpoint {self.endpoint} did not verify against "
                f"{trusted} during {operation} on {where}: give the CA that signed it "
                f"(s3.caSecretRef / s3.caConfigMapRef, --storage-ca-bundle, {ENV_S3_CA_BUNDLE})"
            )
        if isinstance(exc, BotoConnectionError | HTTPClientError):
            return StorageUnreachable(
                f"cannot reach the S3 endpoint {self.endpoint} during {operation} on {where} "
                f"({type(exc).__name__}); check the endpoint URL, DNS and network policy"
            )
        return StorageError(f"{operation} on {where} failed: {exc}")

    @staticmethod
    def _refusal(code: str) -> str:
        if code == "InvalidAccessKeyId":
            return "the access key id is unknown there"
        if code == "SignatureDoesNotMatch":
            return "the secret access key does not match the access key id"
        if code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired"):
            return "the session token is expired or invalid"
        return f"access denied ({code})"

    def _credential_hint(self, operation: str) -> str:
        permission = _PERMISSIONS.get(operation, "s3:*")
        try:
            credentials = self._session.get_credentials()
        except BotoCoreError:
            credentials = None
        if credentials is None:
            return "no credentials were found: set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
        source = _CREDENTIAL_SOURCES.get(credentials.method, f"'{credentials.method}'")
        return (
            f"check the credentials from {source} and that they allow {permission} "
            f"on bucket '{self.bucket}'"
        )

    def sse_arguments(self) -> dict[str, Any]:
        """The server-side encryption arguments of PutObject and CreateMultipartUpload."""
        arguments: dict[str, Any] = {}
        if self.server_side_encryption is not None:
            arguments["ServerSideEncryption"] = self.server_side_encryption
        if self.sse_kms_key_id is not None:
            arguments["SSEKMSKeyId"] = self.sse_kms_key_id
        return arguments

    def _put_object(self, key: str, data: bytes | bytearray) -> None:
        checksum = _checksum(data)
        response = self._call(
            "PutObject",
            key,
            lambda: self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(key),
                Body=_as_body(data),
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
                **self.sse_arguments(),
            ),
        )
        echoed = response.get("ChecksumSHA256")
        if echoed and echoed != checksum:
            self.delete([key])
            raise StorageError(f"{self.uri(key)}: the server stored different bytes than were sent")

    @contextmanager
    def _writing(self, key: str, size_hint: int | None) -> Iterator[ObjectWriter]:
        writer = _MultipartWriter(self, key, first_part_size(size_hint, self.min_part_size))
        try:
            yield writer
            writer.finish()
        except BaseException as exc:
            writer.abort(exc)
            raise

    @contextmanager
    def _reading(self, key: str) -> Iterator[Readable]:
        reader = _ResumingReader(self, key)
        try:
            yield reader
        finally:
            reader.close()


class _MultipartWriter:
    """Fills one part buffer while the previous part uploads on a background thread."""

    def __init__(self, storage: S3Storage, key: str, first: int) -> None:
        self._storage = storage
        self._client = storage._client
        self._key = key
        self._name = storage._key(key)
        self._first = first
        self._buffer: bytearray | None = None
        self._filled = 0
        self._part_number = 1
        self._written = 0
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._pending: Future[CompletedPartTypeDef] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._completed = False

    def write(self, data: bytes, /) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        if self._written + size > S3_MAX_OBJECT_SIZE:
            raise StorageError(
                f"{self._storage.uri(self._key)}: the object would exceed S3's 5 TiB limit"
            )
        while view:
            if self._buffer is None:
                self._buffer = bytearray(part_size(self._part_number, self._first))
                self._filled = 0
            take = min(len(self._buffer) - self._filled, len(view))
            self._buffer[self._filled : self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == len(self._buffer):
                self._ship()
        self._written += size
        return size

    def finish(self) -> None:
        """Publish: one PutObject for a small object, else upload the tail and complete."""
        buffer, self._buffer = self._buffer or bytearray(), None
        del buffer[self._filled :]
        if self._upload_id is None:
            self._storage._put_object(self._key, buffer)
        else:
            if buffer:
                self._submit(buffer)
            del buffer
            self._wait_pending()
            self._shutdown()
            upload_id = self._upload_id
            parts = sorted(self._parts, key=lambda p: p["PartNumber"])
            sent = 0

            def complete() -> CompleteMultipartUploadOutputTypeDef:
                nonlocal sent
                sent += 1
                return self._client.complete_multipart_upload(
                    Bucket=self._storage.bucket,
                    Key=self._name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                )

            try:
                self._storage._call("CompleteMultipartUpload", self._key, complete)
            except StorageError as exc:
                if _error_code(exc.__cause__) != "NoSuchUpload":
                    raise
                # The upload is gone, completed or aborted: there is nothing left to abort.
                self._upload_id = None
                if sent < 2:
                    raise StorageError(
                        f"{self._storage.uri(self._key)}: multipart upload {upload_id} was "
                        "removed before it could be completed (NoSuchUpload), by something else "
                        "than this backup (an S3 lifecycle rule, another backup of this "
                        "location); nothing was published, run again"
                    ) from exc
                self._confirm_completed(upload_id, parts, exc)
        self._completed = True
        stored = self._storage.size(self._key)
        if stored != self._written:
            self._storage.delete([self._key])
            raise StorageError(
                f"{self._storage.uri(self._key)}: the server reports {stored} bytes after upload "
                f"but {self._written} were written; the object was removed"
            )

    def _confirm_completed(
        self, upload_id: str, parts: list[CompletedPartTypeDef], cause: StorageError
    ) -> None:
        """A retried CompleteMultipartUpload found no upload: an earlier attempt completed it
        and its answer was lost, or something else removed it. Only an object that is provably
        this upload's completion (see `completed_from`) counts as done."""
        storage = self._storage
        try:
            head = storage._call(
                "HeadObject",
                self._key,
                lambda: self._client.head_object(
                    Bucket=storage.bucket, Key=self._name, ChecksumMode="ENABLED"
                ),
            )
        except BackupNotFound:
            found = "no object"
        else:
            ours, found = completed_from(head, parts, self._written)
            if ours:
                return
        etag = multipart_etag([part.get("ETag", "") for part in parts]) or "not an MD5"
        checksums = [part.get("ChecksumSHA256", "") for part in parts]
        checksum = f"{composite_sha256(checksums)}-{len(parts)}" if all(checksums) else "none"
        raise StorageError(
            f"{storage.uri(self._key)}: multipart upload {upload_id} vanished: its completion "
            "was retried after a lost answer and S3 no longer knows the upload (NoSuchUpload), "
            f"but the object at the key is not this upload's (found: {found}; this upload: "
            f"{self._written} bytes, ETag {etag}, SHA-256 {checksum}); something else wrote or "
            "removed it, so nothing was published; run again"
        ) from cause

    def abort(self, cause: BaseException) -> None:
        """Leave nothing behind: wait for the part in flight, then abort the upload."""
        self._buffer = None
        if self._pending is not None:
            self._pending.cancel()
            with suppress(BaseException):
                self._pending.result()
            self._pending = None
        self._shutdown()
        if self._upload_id is None or self._completed:
            return
        upload_id = self._upload_id
        try:
            self._storage._call(
                "AbortMultipartUpload",
                self._key,
                lambda: self._client.abort_multipart_upload(
                    Bucket=self._storage.bucket, Key=self._name, UploadId=upload_id
                ),
            )
        except StorageError as exc:
            cause.add_note(
                f"aborting multipart upload {upload_id} failed too ({exc}); an S3 lifecycle "
                "rule with AbortIncompleteMultipartUpload removes such leftovers"
            )

    def _ship(self) -> None:
        assert self._buffer is not None
        if self._part_number > S3_MAX_PARTS:
            raise StorageError(f"{self._storage.uri(self._key)}: more than {S3_MAX_PARTS} parts")
        if self._upload_id is None:
            created = self._storage._call(
                "CreateMultipartUpload",
                self._key,
                lambda: self._client.create_multipart_upload(
                    Bucket=self._storage.bucket,
                    Key=self._name,
                    ChecksumAlgorithm="SHA256",
                    **self._storage.sse_arguments(),
                ),
            )
            self._upload_id = created["UploadId"]
        buffer, self._buffer, self._filled = self._buffer, None, 0
        self._submit(buffer)

    def _submit(self, buffer: bytearray) -> None:
        # The previous part must be done before this one goes: that is the memory bound.
        self._wait_pending()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="lifeboat-s3-upload")
        self._pending = self._executor.submit(self._upload_part, self._part_number, buffer)
        self._part_number += 1

    def _wait_pending(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._parts.append(pending.result())

    def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _upload_part(self, number: int, buffer: bytearray) -> CompletedPartTypeDef:
        assert self._upload_id is not None
        upload_id = self._upload_id
        checksum = _checksum(buffer)
        response = self._storage._call(
            "UploadPart",
            self._key,
            lambda: self._client.upload_part(
                Bucket=self._storage.bucket,
                Key=self._name,
                UploadId=upload_id,
                PartNumber=number,
                Body=_as_body(buffer),
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            ),
        )
        echoed = response.get("ChecksumSHA256")
        if echoed and echoed != checksum:
            raise StorageError(
                f"{self._storage.uri(self._key)}: part {number} arrived corrupted "
                "(the server's SHA-256 differs from the one sent)"
            )
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}


class _ResumingReader:
    """A GET body that reopens at the current offset (same ETag) when the connection drops."""

    def __init__(self, storage: S3Storage, key: str) -> None:
        self._storage = storage
        self._key = key
        self._offset = 0
        self._etag = ""
        response = self._get()
        self._etag = response["ETag"]
        self._length = response["ContentLength"]
        self._body = response["Body"]
        self._resumes_left = storage.read_resumes
        self._resumed = False

    def read(self, n: int = -1, /) -> bytes:
        if n is None or n < 0:
            chunks = []
            while chunk := self.read(CHUNK_SIZE):
                chunks.append(chunk)
            return b"".join(chunks)
        while True:
            try:
                data = self._body.read(n)
            except _STREAM_ERRORS as exc:
                self._resume(exc)
                continue
            except BotoCoreError as exc:  # e.g. a full-object checksum that does not match
                raise self._storage._error(exc, "GetObject", self._key) from exc
            if not data and n and self._offset < self._length:
                self._resume(None)
                continue
            if data and self._resumed:
                # Progress after a resume: the next blip gets the full allowance again.
                self._resumes_left = self._storage.read_resumes
                self._resumed = False
            self._offset += len(data)
            return data

    def close(self) -> None:
        with suppress(*_STREAM_ERRORS):
            self._body.close()

    def _get(self) -> GetObjectOutputTypeDef:
        storage, name = self._storage, self._storage._key(self._key)
        if not self._etag:
            return storage._call(
                "GetObject",
                self._key,
                lambda: storage._client.get_object(Bucket=storage.bucket, Key=name),
            )
        # Pinned to the ETag: a replaced object fails with PreconditionFailed, never splices.
        return storage._call(
            "GetObject",
            self._key,
            lambda: storage._client.get_object(
                Bucket=storage.bucket,
                Key=name,
                Range=f"bytes={self._offset}-",
                IfMatch=self._etag,
            ),
        )

    def _resume(self, cause: BaseException | None) -> None:
        self.close()
        if self._resumes_left <= 0:
            raise StorageUnreachable(
                f"the connection to {self._storage.endpoint} kept dropping while reading "
                f"{self._storage.uri(self._key)} (at byte {self._offset} of {self._length})"
            ) from cause
        self._resumes_left -= 1
        self._resumed = True
        self._body = self._get()["Body"]
