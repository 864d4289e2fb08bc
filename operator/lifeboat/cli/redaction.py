"""Credentials that libraries put into their own debug lines, masked before a line is written.

Lifeboat's own messages never hold a secret. Libraries at `--debug` are another matter: botocore
logs every HTTP request it sends, headers included, and the canonical request it signs, so an
S3 session token (IRSA, Pod Identity, any STS credential: a secret) and the access key id would
reach the Job's log. `RedactingFilter`, on the handler `configure_logging` installs, masks them in
every record, whatever logger it comes from: the session token, the access key id in
`Credential=` and `AWSAccessKeyId=`, and signatures (in headers and in presigned URLs).
"""

from __future__ import annotations

import logging
import re
from typing import Final

MASK: Final = "***"
_PATTERNS: Final = (
    # 'X-Amz-Security-Token': b'...' (a header dict), x-amz-security-token:... (a canonical
    # request), X-Amz-Security-Token=... (a presigned URL)
    re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s&,}]+"),
    # Credential=AKIA.../date/region/s3/aws4_request (Authorization header, presigned URL)
    re.compile(r"(?i)((?:x-amz-)?credential=)[^/\s&'\",]+"),
    # Signature=... (SigV4 hex, SigV2 base64), AWSAccessKeyId=... (a SigV2 presigned URL)
    re.compile(r"(?i)((?:x-amz-)?signature=)[^&\s'\",]+"),
    re.compile(r"(?i)(awsaccesskeyid=)[^&\s'\",]+"),
    # Authorization: AWS AKIA...:signature (SigV2)
    re.compile(r"(\bAWS )[A-Z0-9]{16,128}:[^'\"\s,]+"),
)


def redact(text: str) -> str:
    """`text` with credentials masked (see the module docstring)."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """Masks credentials in a record's message (and exception text) before it is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a library's malformed format: leave it as it is
            return True
        masked = redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True
