from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest
import uvicorn.config

from libs.common.logging import REDACTED, Redactor, configure_logging, get_logger


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer sk-abc123def456ghi789",
        "key=sk-proj-abcdefghijklmnop",
        "anthropic sk-ant-api03-abcdefghijkl",
        "google AIzaSyA1234567890abcdefghijklmnop",
        "x-goog-api-key: abcdefghijklmnopqrstuvwxyz",
        "amk_0123456789abcdefghijklmnopqrstuvwxyz",
        "postgresql://postgres:hunter2hunter2@db:5432/x",
        "token gAAAAABlZ0123456789abcdefghijklmnopqrstuvwxyz",
    ],
)
def test_value_patterns_are_scrubbed(text):
    scrubbed = Redactor().scrub(text)
    assert REDACTED in scrubbed
    for secret in (
        "abc123def456",
        "abcdefghijklmnop",
        "api03",
        "SyA123",
        "hunter2",
        "ABlZ012",
        "0123456789abcdefghij",
    ):
        assert secret not in scrubbed


def test_secret_keys_and_registered_literals_are_scrubbed():
    redactor = Redactor()
    redactor.register("literal-secret-value-1")
    event = redactor(
        None,
        "info",
        {
            "event": "x",
            "api_key": "whatever",
            "headers": {"Authorization": "Basic dXNlcjpwYXNz", "accept": "json"},
            "note": "contains literal-secret-value-1 here",
            "api_key_hint": "sk-…a1b2",
            "items": ["literal-secret-value-1"],
        },
    )
    assert event["api_key"] == REDACTED
    assert event["headers"]["Authorization"] == REDACTED
    assert event["headers"]["accept"] == "json"
    assert "literal-secret-value-1" not in json.dumps(event)
    assert event["api_key_hint"] == "sk-…a1b2"


def test_stdlib_log_lines_and_tracebacks_are_redacted():
    stream = io.StringIO()
    configure_logging(
        level="DEBUG", fmt="json", service="t", stream=stream, secrets=["registered-secret-xyz"]
    )
    logging.getLogger("somelib").warning("calling with Bearer sk-live-0123456789abcdef")
    try:
        raise RuntimeError("failed with registered-secret-xyz")
    except RuntimeError:
        get_logger("t").exception("boom")
    text = stream.getvalue()
    assert "sk-live-0123456789abcdef" not in text
    assert "registered-secret-xyz" not in text
    assert text.count(REDACTED) >= 2
    for line in text.splitlines():
        json.loads(line)


def test_uvicorn_per_connection_lines_are_quiet_at_info_and_its_errors_are_not():
    """Thousands of WebSocket clients would mean thousands of uvicorn INFO lines."""
    logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)  # as a server with the default config does
    stream = io.StringIO()
    configure_logging(level="INFO", fmt="json", service="t", stream=stream)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.info('%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", "/v1/ws")
    uvicorn_log.info("connection open")
    uvicorn_log.error("Exception in ASGI application")
    lines = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert lines == ["Exception in ASGI application"]
    configure_logging(level="DEBUG", fmt="json", service="t", stream=stream)
    uvicorn_log.info("connection open")
    assert json.loads(stream.getvalue().splitlines()[-1])["event"] == "connection open"
