"""The operator <-> worker contract: facts both sides must agree on, known once.

The controller builds Jobs that run the worker, and reads back how the worker ended; the worker
reads what the Job gives it. Exit codes, environment variable names, the format of the worker's
last line (the Pod's termination message), engine families and default ports live here, and both
sides import them instead of repeating literals. This module is the bottom layer: it imports
nothing from Lifeboat (an import-linter contract keeps it so).
"""

from __future__ import annotations

import hashlib
import re
from enum import IntEnum
from typing import Any, Final

Object = dict[str, Any]
"""A Kubernetes object (or any JSON object) as a plain dict: what kopf and the API hand us."""

# -- exit codes -------------------------------------------------------------------------------


class ExitCode(IntEnum):
    """How the worker process ends; the Job's podFailurePolicy reads these."""

    OK = 0
    FAILED = 1
    """Anything unexpected."""
    USAGE = 2
    """Bad arguments or URL: a retry cannot fix it."""
    DATABASE = 3
    """The database could not be reached or the dump/restore tool failed (may be transient)."""
    STORAGE = 4
    """The storage could not be reached, read or written (may be transient)."""
    VERIFICATION = 5
    """A restore proved wrong: checksum, manifest or row counts. A retry cannot fix it."""
    STATUS_WRITE = 6
    """The result could not be written to the resource's status."""
    REFUSED = 7
    """The database refused: authentication, privileges, an incompatible server, a missing
    role. A retry cannot fix it; the error line says what to change."""
    TIMEOUT = 124
    INTERRUPTED = 130


NON_RETRIABLE_EXIT_CODES: Final = (ExitCode.USAGE, ExitCode.VERIFICATION, ExitCode.REFUSED)
"""Exit codes that fail the Job at once instead of retrying the Pod."""

# -- environment --------------------------------------------------------------------------------

ENV_DB_PASSWORD: Final = "LIFEBOAT_DB_PASSWORD"  # noqa: S105 - a variable name
ENV_DB_PASSWORD_FILE: Final = "LIFEBOAT_DB_PASSWORD_FILE"  # noqa: S105 - a variable name
ENV_S3_ADDRESSING_STYLE: Final = "LIFEBOAT_S3_ADDRESSING_STYLE"
ENV_AWS_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
ENV_AWS_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"  # noqa: S105 - a variable name
ENV_AWS_ENDPOINT_URL: Final = "AWS_ENDPOINT_URL"
ENV_AWS_REGION: Final = "AWS_REGION"
ENV_AWS_DEFAULT_REGION: Final = "AWS_DEFAULT_REGION"
ENV_STATUS_TARGET: Final = "LIFEBOAT_STATUS_TARGET"
"""In a backup or restore Job: the one object (`backups/NAMESPACE/NAME`) whose status the
worker may write. The worker refuses a --report-status that names another."""
ENV_S3_SSE: Final = "LIFEBOAT_S3_SSE"
"""S3 server-side encryption of every object written: `AES256` (SSE-S3) or `aws:kms` (SSE-KMS)."""
ENV_S3_SSE_KMS_KEY_ID: Final = "LIFEBOAT_S3_SSE_KMS_KEY_ID"
"""With `aws:kms`: the KMS key (id, ARN or alias); unset, the bucket's or the account's default."""
ENV_STORAGE_TIMEOUT: Final = "LIFEBOAT_STORAGE_TIMEOUT"
"""Seconds the worker keeps retrying S3 once it has answered (an outage mid-upload or
mid-download), with backoff, before it fails with StorageUnreachable (`--storage-timeout`)."""
DEFAULT_STORAGE_TIMEOUT: Final = 120.0
MIN_STORAGE_TIMEOUT: Final = 10
MAX_STORAGE_TIMEOUT: Final = 3600
"""Bounds of a Backup's or Restore's s3.timeoutSeconds (the Job's ENV_STORAGE_TIMEOUT)."""
ENV_S3_CA_BUNDLE: Final = "LIFEBOAT_S3_CA_BUNDLE"
"""A PEM file of the CA certificates that sign an https S3 endpoint's certificate (a private
CA), instead of the system's (`--storage-ca-bundle`, `ca-bundle=` in BACKUP_URL)."""
ENV_DB_TLS_MODE: Final = "LIFEBOAT_DB_TLS_MODE"
"""TLS to the database: disable, require, verify-ca or verify-full (libpq's sslmode names).
Unset: the engine's default. A DATABASE_URL's sslmode/ssl-mode parameter wins over it."""
ENV_DB_TLS_CA_FILE: Final = "LIFEBOAT_DB_TLS_CA_FILE"
"""A PEM file of the CA certificates that sign the database server's certificate."""
ENV_DB_TLS_CERT_FILE: Final = "LIFEBOAT_DB_TLS_CERT_FILE"
"""A PEM client certificate for servers that authenticate clients by certificate."""
ENV_DB_TLS_KEY_FILE: Final = "LIFEBOAT_DB_TLS_KEY_FILE"
"""The client certificate's private key (a file path: the key itself never travels in env)."""
DB_TLS_MODES: Final = ("disable", "require", "verify-ca", "verify-full")
"""The worker's TLS modes, weakest first. Every mode but disable refuses to log in (to send a
password) over a connection that is not encrypted."""
ENV_ENCRYPTION_KEY: Final = "LIFEBOAT_ENCRYPTION_KEY"
"""The client-side encryption key, 32 random bytes in base64. In a Job it comes from a Secret
(`valueFrom.secretKeyRef`), never as a literal."""
ENV_ENCRYPTION_KEY_FILE: Final = "LIFEBOAT_ENCRYPTION_KEY_FILE"
"""A file holding the client-side encryption key (base64), instead of ENV_ENCRYPTION_KEY."""
ENV_ENCRYPTION_KEY_SOURCE: Final = "LIFEBOAT_ENCRYPTION_KEY_SOURCE"
"""Where ENV_ENCRYPTION_KEY came from, for error messages ("Secret backup-key, key key"):
a Job's worker names the Secret and field to fix, never the value."""

# -- encryption at rest -------------------------------------------------------------------------

SSE_S3: Final = "AES256"
"""S3 server-side encryption with S3-managed keys (the x-amz-server-side-encryption value)."""
SSE_KMS: Final = "aws:kms"
"""S3 server-side encryption with a KMS key (the x-amz-server-side-encryption value)."""
ENCRYPTION_ALGORITHM: Final = "AES-256-GCM"
"""Lifeboat's client-side encryption, as manifests and status name it."""

# -- the worker's last line ---------------------------------------------------------------------

ERROR_LINE_PREFIX: Final = "lifeboat: error: "
_REASON = re.compile(r"^(?P<reason>[A-Z][A-Za-z0-9]*): (?P<message>.*)$", re.DOTALL)


def format_error_line(reason: str, message: str) -> str:
    """The one line the worker prints on stderr when it fails; the kubelet keeps it as the
    Pod's termination message (FallbackToLogsOnError), where the controller finds it."""
    flat = " ".join(message.split())
    return f"{ERROR_LINE_PREFIX}{reason}: {flat}"


def parse_error_line(text: str) -> tuple[str | None, str] | None:
    """(reason, message) from the last worker error line in `text`, or None when there is none.

    The reason is None for a line without one (a worker older than this contract)."""
    lines = [line for line in text.splitlines() if line.startswith(ERROR_LINE_PREFIX)]
    if not lines:
        return None
    rest = lines[-1][len(ERROR_LINE_PREFIX) :].strip()
    match = _REASON.match(rest)
    if match is None:
        return None, rest
    return match.group("reason"), match.group("message")


# -- engines ------------------------------------------------------------------------------------

ENGINE_FAMILIES: Final[dict[str, str]] = {
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "sqlite": "sqlite",
}
"""Engines whose backups restore into each other share a family (MySQL and MariaDB)."""

DEFAULT_PORTS: Final[dict[str, int]] = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}


def same_family(engine_a: str, engine_b: str) -> bool:
    family = ENGINE_FAMILIES.get(engine_a)
    return family is not None and family == ENGINE_FAMILIES.get(engine_b)


# -- restore drills: the throwaway database's reserved name -----------------------------------

DRILL_MARKER: Final = "__lifeboat_drill_"
"""Every database (or SQLite file) a restore drill creates is named `<source>__lifeboat_drill_<id>`:
the operator names it, the worker refuses any other name, and leftovers of killed drills are
found by it."""
DRILL_PASSED: Final = "DrillPassed"
"""The reason of a drill that passed: its worker's report and its RestoreDrill's status."""
DRILL_ID_LENGTH: Final = 8
MAX_DRILL_DATABASE_BYTES: Final = 63
"""PostgreSQL's identifier limit (MySQL's is 64 characters): longer source names are shortened."""
_DRILL_NAME = re.compile(
    rf"^(?P<head>.+){DRILL_MARKER}(?P<id>[0-9a-f]{{{DRILL_ID_LENGTH}}})$", re.DOTALL
)


def drill_id(uid: str) -> str:
    """The drill's short id: from the RestoreDrill's uid, so every attempt of one drill uses the
    same throwaway name (a retry removes what a killed attempt left)."""
    return hashlib.sha256(uid.encode()).hexdigest()[:DRILL_ID_LENGTH]


def drill_prefix(source: str) -> str:
    """`<source>__lifeboat_drill_`, the source name shortened (whole UTF-8 characters) so that the
    name with its id fits MAX_DRILL_DATABASE_BYTES. What a grant on the reserved names names."""
    room = MAX_DRILL_DATABASE_BYTES - len(DRILL_MARKER) - DRILL_ID_LENGTH
    head = source.encode()[:room].decode("utf-8", "ignore") or "db"
    return head + DRILL_MARKER


def drill_database_name(source: str, drill: str) -> str:
    """The throwaway database of drill `drill` (an id) for the database `source`."""
    return drill_prefix(source) + drill


def parse_drill_database_name(name: str) -> tuple[str, str] | None:
    """(prefix, id) of a reserved drill name, or None for any other name."""
    match = _DRILL_NAME.match(name)
    if match is None:
        return None
    return match.group("head") + DRILL_MARKER, match.group("id")


# -- small shared helpers ---------------------------------------------------------------------

_BYTE_UNITS: Final = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_bytes(size: float) -> str:
    """'512 B', '1.5 MiB', '12.3 GiB': binary units, one decimal."""
    value = float(size)
    for unit in _BYTE_UNITS:
        if abs(value) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{int(size)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
