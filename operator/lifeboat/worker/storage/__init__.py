"""Where backups live: BACKUP_URL turned into a `Storage`.

Accepted forms of BACKUP_URL:

- `s3://bucket/prefix/` (the prefix may be empty; it always ends with "/"). Optional query
  parameters, for servers the environment does not describe:
    - `endpoint=https://minio.example:9000`: the S3 endpoint (default: AWS_ENDPOINT_URL_S3,
      AWS_ENDPOINT_URL, else AWS);
    - `region=eu-central-1`: the signing region (default: AWS_REGION, AWS_DEFAULT_REGION);
    - `addressing=path|virtual|auto`: bucket addressing (default: LIFEBOAT_S3_ADDRESSING_STYLE,
      else path-style for non-AWS endpoints and auto for AWS);
    - `sse=AES256|aws:kms`: server-side encryption of every object written (default:
      LIFEBOAT_S3_SSE, else none asked for: the bucket's default);
    - `kms-key-id=KEY`: with `sse=aws:kms`, the KMS key id, ARN or alias (default:
      LIFEBOAT_S3_SSE_KMS_KEY_ID, else the bucket's or account's default KMS key).
  Credentials never go in the URL: they come from boto3's standard chain (AWS_ACCESS_KEY_ID /
  AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, ~/.aws, IRSA, Pod Identity, instance profile).
- `file:///absolute/path`: a directory.
- a plain path, relative or absolute: a directory.

boto3 is imported only when an s3:// URL is opened.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from lifeboat.worker.errors import UsageError
from lifeboat.worker.storage.base import ObjectWriter, Storage
from lifeboat.worker.storage.local import LocalStorage

if TYPE_CHECKING:
    from lifeboat.worker.storage.s3 import AddressingStyle

__all__ = ["LocalStorage", "ObjectWriter", "Storage", "open_storage"]

S3_QUERY_PARAMETERS = ("endpoint", "region", "addressing", "sse", "kms-key-id", "ca-bundle")
_EXAMPLES = "s3://bucket/prefix/, file:///var/backups or a directory path such as ./backups"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_BUCKET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,254}$")


def open_storage(
    url: str,
    environ: Mapping[str, str] | None = None,
    *,
    storage_timeout: float | None = None,
    ca_bundle: str | None = None,
) -> Storage:
    """Open the backup location named by BACKUP_URL; a bad URL is a UsageError saying the fix.

    `storage_timeout`: how long S3 calls are retried through an outage (default:
    LIFEBOAT_STORAGE_TIMEOUT, else 120 s); a directory has no such wait. `ca_bundle`: a PEM file
    of the CAs trusted for an https S3 endpoint (default: LIFEBOAT_S3_CA_BUNDLE, else the
    system's)."""
    env = os.environ if environ is None else environ
    text = url.strip()
    if not text:
        raise UsageError(f"BACKUP_URL is empty; use {_EXAMPLES}")
    scheme = _SCHEME.match(text)
    if "://" not in text and not (scheme and scheme.group(1).lower() in ("s3", "file")):
        return LocalStorage(Path(text).expanduser())
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise UsageError(
            f"BACKUP_URL: cannot parse {_shown(text)} ({exc}); use {_EXAMPLES}"
        ) from None
    kind = parts.scheme.lower()
    if kind == "s3":
        return _open_s3(text, env, storage_timeout, ca_bundle)
    if kind == "file":
        return _open_file(text)
    raise UsageError(
        f"BACKUP_URL: unknown scheme {parts.scheme!r} in {_shown(text)}; use {_EXAMPLES}"
    )


def _open_s3(
    text: str, env: Mapping[str, str], storage_timeout: float | None, ca_bundle: str | None
) -> Storage:
    parts = urlsplit(text)
    if not text.lower().startswith("s3://"):
        raise UsageError(f"BACKUP_URL: {_shown(text)} is not an S3 URL; write s3://bucket/prefix/")
    if "@" in parts.netloc:
        raise UsageError(
            "BACKUP_URL: credentials do not belong in the URL (they would leak through logs and "
            "Job specs); remove them and set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY instead"
        )
    bucket = parts.netloc
    if ":" in bucket:
        raise UsageError(
            f"BACKUP_URL: {_shown(text)} has a port after the bucket; the server goes in the "
            "endpoint parameter, e.g. s3://bucket/prefix/?endpoint=http://minio:9000"
        )
    if not _BUCKET.match(bucket):
        raise UsageError(
            f"BACKUP_URL: {_shown(text)} does not name a valid bucket; use s3://bucket/prefix/"
        )
    if parts.fragment:
        raise UsageError(f"BACKUP_URL: {_shown(text)} has a '#' fragment; remove it")
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in S3_QUERY_PARAMETERS:
            raise UsageError(
                f"BACKUP_URL: unknown parameter {name!r} in {_shown(text)}; "
                f"the S3 parameters are {', '.join(S3_QUERY_PARAMETERS)}"
            )
        options[name] = value
    endpoint = options.get("endpoint") or None
    if endpoint is not None:
        target = urlsplit(endpoint)
        if target.scheme not in ("http", "https") or not target.hostname or "@" in target.netloc:
            raise UsageError(
                f"BACKUP_URL: endpoint must look like https://host[:port], got {_shown(endpoint)}"
            )
    addressing = options.get("addressing") or None
    if addressing is not None and addressing not in ("path", "virtual", "auto"):
        raise UsageError(
            f"BACKUP_URL: addressing={addressing!r} is not valid; use path, virtual or auto"
        )
    prefix = re.sub("/{2,}", "/", parts.path).lstrip("/")
    if ".." in unquote(prefix).split("/"):
        raise UsageError(
            f"BACKUP_URL: {_shown(text)} has a '..' segment in its prefix; S3-compatible servers "
            "differ on what it means (some refuse it, some resolve it): name the prefix directly"
        )

    from lifeboat.worker.storage.s3 import S3Storage

    return S3Storage(
        bucket,
        prefix,
        endpoint_url=endpoint,
        region=options.get("region") or None,
        addressing_style=cast("AddressingStyle | None", addressing),
        server_side_encryption=options.get("sse") or None,
        sse_kms_key_id=options.get("kms-key-id") or None,
        ca_bundle=options.get("ca-bundle") or ca_bundle,
        storage_timeout=storage_timeout,
        environ=env,
    )


def _open_file(text: str) -> Storage:
    parts = urlsplit(text)
    if not text.lower().startswith("file://"):
        raise UsageError(
            f"BACKUP_URL: {_shown(text)} is not a file URL; write file:///absolute/path "
            "or just the directory path"
        )
    if parts.netloc not in ("", "localhost"):
        raise UsageError(
            f"BACKUP_URL: {_shown(text)} names a host; a file URL needs three slashes and an "
            "absolute path (file:///var/backups), or give a plain path such as ./backups"
        )
    if parts.query or parts.fragment:
        raise UsageError(f"BACKUP_URL: {_shown(text)} has a query or fragment; remove it")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise UsageError(f"BACKUP_URL: {_shown(text)} needs an absolute path: file:///var/backups")
    return LocalStorage(Path(path))


def _shown(text: str) -> str:
    """The value as it may appear in a message: user info and unknown query values masked."""
    head, mark, query = text.partition("?")
    head = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@", r"\1***@", head)
    if mark:
        query = "&".join(
            f"{name}={_shown(value)[1:-1] if name in S3_QUERY_PARAMETERS else '***'}"
            for name, value in parse_qsl(query, keep_blank_values=True)
        )
    return repr(head + mark + query)
