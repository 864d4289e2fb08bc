"""The operator <-> worker contract: facts both sides must agree on, known once.

The controller builds Jobs that run the worker, and reads back how the worker ended; the worker
reads what the Job gives it. Exit codes, environment variable names, the format of the worker's
last line (the Pod's termination message), engine families and default ports live here, and both
sides import them instead of repeating literals. This module is the bottom layer: it imports
nothing from Lifeboat (an import-linter contract keeps it so).
"""

from __future__ import annotations

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
