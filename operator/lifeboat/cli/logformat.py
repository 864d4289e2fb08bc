"""How the `lifeboat` command logs: plain lines, or one JSON object per line (`--log-format json`)
for log pipelines (Loki, Elasticsearch, Cloud Logging) that index fields.

Every JSON line has the same keys: `time` (RFC 3339, UTC, milliseconds), `level`, `logger`,
`message`, and the object it is about (`kind`, `namespace`, `name`: from Lifeboat's own
transition lines and from kopf's per-object lines), with `phase` and `reason` on transitions;
null where a line is about no object. An exception adds `exception` (its traceback).

Nothing secret is in them at any level: the operator never reads Secrets (Jobs get them as
secretKeyRef environment variables), specs carry references, not passwords, and this formatter
writes only the fields above, never a record's other attributes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from datetime import UTC, datetime
from typing import Any, Final

from lifeboat.cli.redaction import RedactingFilter

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_log_format_option(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("LIFEBOAT_LOG_FORMAT", "text")
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=default if default in LOG_FORMATS else "text",
        help="text (default) or json: one JSON object per line with time, level, logger, "
        "message, kind, namespace, name, phase and reason ($LIFEBOAT_LOG_FORMAT)",
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with a fixed set of keys (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        resource: dict[str, Any] = {}
        kopf_ref = getattr(record, "k8s_ref", None)
        if isinstance(kopf_ref, dict):
            resource = kopf_ref
        ours = getattr(record, "resource", None)
        if isinstance(ours, dict):
            resource = ours
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "kind": resource.get("kind"),
            "namespace": resource.get("namespace"),
            "name": resource.get("name"),
            "phase": getattr(record, "phase", None),
            "reason": getattr(record, "reason", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(*, debug: bool, log_format: str = "text") -> None:
    """The root handler on stderr. Libraries (botocore, urllib3) speak at WARNING; Lifeboat's own
    lines and kopf's at INFO; everything with --debug."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(RedactingFilter())  # libraries' debug lines carry S3 session tokens
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, handlers=[handler])
    if not debug:
        logging.getLogger("lifeboat").setLevel(logging.INFO)
        logging.getLogger("kopf").setLevel(logging.INFO)
