"""Credentials in libraries' debug lines are masked before a line is written: real botocore
requests signed with a session token, logged at DEBUG through the handler `configure_logging`
installs, with the text and the JSON formats."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from lifeboat.cli.logformat import JsonFormatter
from lifeboat.cli.redaction import RedactingFilter, redact

ACCESS_KEY_ID = "AKIACANARY0123456789"
SECRET_ACCESS_KEY = "canary-secret-access-key-0123456789abcdef"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjECanarySessionToken0123456789+/=="


@pytest.fixture
def captured(request: pytest.FixtureRequest) -> Iterator[io.StringIO]:
    """The root logger at DEBUG into a handler set up as configure_logging does."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if request.param == "json" else logging.Formatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@pytest.mark.parametrize("captured", ["text", "json"], indirect=True)
def test_a_signed_s3_request_logged_at_debug_shows_no_credential(captured: io.StringIO) -> None:
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        aws_session_token=SESSION_TOKEN,
        config=Config(retries={"max_attempts": 1}, connect_timeout=0.5),
    )
    # The request is built, signed and logged, then fails to connect: nothing listens on :9.
    with pytest.raises(Exception):  # noqa: B017, PT011 - any connection error will do
        client.put_object(Bucket="b", Key="k", Body=b"x")
    url = client.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
    logging.getLogger("test").debug("presigned: %s", url)
    text = captured.getvalue()
    assert "Authorization" in text  # the request really was logged, headers and all
    assert "X-Amz-Security-Token" in text or "x-amz-security-token" in text
    for secret in (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN):
        assert secret not in text
    assert "Credential=***" in text


def test_only_credentials_are_masked() -> None:
    line = "PUT /b/k headers={'Content-Length': '1', 'X-Amz-Security-Token': b'tok'}"
    assert (
        redact(line) == "PUT /b/k headers={'Content-Length': '1', 'X-Amz-Security-Token': b'***'}"
    )
    assert redact("nothing to see: Credentials found in env") == (
        "nothing to see: Credentials found in env"
    )
    assert redact("?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc123&x=1") == (
        "?X-Amz-Credential=***&X-Amz-Signature=***&x=1"
    )


def test_the_filter_never_drops_a_record_and_leaves_clean_ones_alone() -> None:
    record = logging.LogRecord("x", logging.DEBUG, __file__, 1, "a %s", ("b",), None)
    assert RedactingFilter().filter(record)
    assert (record.msg, record.args) == ("a %s", ("b",))
    assert record.getMessage() == "a b"
