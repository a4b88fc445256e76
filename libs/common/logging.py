"""structlog, configured once per process, with a redaction processor.

Every log line — ours and the standard-library loggers of grpc, sqlalchemy, httpx,
uvicorn — goes through the same processor chain, so secrets are scrubbed in one
place: values under secret-looking keys, strings that look like credentials, and the
literal secrets a process registers at start (its encryption keys, service key, …).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Literal

import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["Redactor", "add_trace_context", "configure_logging", "get_logger", "redactor"]

REDACTED = "[REDACTED]"

_SECRET_KEY_NAMES = re.compile(
    r"(api[_-]?key|authorization|password|passwd|secret|token|credential|encryption[_-]?keys?"
    r"|ciphertext|cookie|database[_-]?url|nats[_-]?url|dsn|private[_-]?key)",
    re.IGNORECASE,
)
# Credential shapes seen in the wild: OpenAI/Anthropic/Groq style keys, Google keys,
# bearer tokens, our own API keys, Fernet tokens and keys, passwords in URLs.
_SECRET_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?i)bearer\s+[^\s\"',]+"), "Bearer " + REDACTED),
    (re.compile(r"\bamk_[A-Za-z0-9_\-]{8,}"), REDACTED),
    (re.compile(r"\b(?:sk|pk|rk|gsk|xai)-[A-Za-z0-9_\-]{8,}"), REDACTED),
    (re.compile(r"\bsk-ant-[A-Za-z0-9_\-]{8,}"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{20,}"), REDACTED),
    (re.compile(r"\bgAAAAA[0-9A-Za-z_\-=]{20,}"), REDACTED),
    (
        re.compile(r"(?i)(x-api-key|x-goog-api-key|api[_-]?key)([\"']?\s*[:=]\s*[\"']?)[^\s\"',&]+"),
        r"\1\2" + REDACTED,
    ),
    (re.compile(r"(://[^:/@\s]+:)[^@/\s]+@"), r"\1" + REDACTED + "@"),
)


class Redactor:
    """Scrubs secrets out of log events; literal secrets can be registered at start."""

    def __init__(self) -> None:
        self._literals: set[str] = set()
        self._literal_pattern: re.Pattern[str] | None = None

    def register(self, *secrets: str) -> None:
        """Never let these exact strings (length ≥ 8) appear in a log line."""
        added = {s for s in secrets if len(s) >= 8} - self._literals
        if not added:
            return
        self._literals |= added
        ordered = sorted(self._literals, key=len, reverse=True)
        self._literal_pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def scrub(self, text: str) -> str:
        """Return `text` with every recognisable secret replaced."""
        if self._literal_pattern is not None:
            text = self._literal_pattern.sub(REDACTED, text)
        for pattern, replacement in _SECRET_VALUE_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def _clean(self, key: str, value: object, depth: int) -> object:
        if _SECRET_KEY_NAMES.search(key) and not key.endswith(("_hint", "_id", "_count")):
            return REDACTED if value not in (None, "", b"") else value
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, bytes):
            return self.scrub(value.decode("utf-8", "replace"))
        if depth < 6 and isinstance(value, MutableMapping):
            return {str(k): self._clean(str(k), v, depth + 1) for k, v in value.items()}
        if depth < 6 and isinstance(value, (list, tuple, set, frozenset)):
            return [self._clean(key, v, depth + 1) for v in value]
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        return self.scrub(repr(value))

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        """Structlog processor."""
        return {key: self._clean(key, value, 0) for key, value in event_dict.items()}


# The process-wide redactor: logging is configured once per process, like the logger.
redactor = Redactor()


def add_trace_context(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Structlog processor: `trace_id` and `span_id` of the active span, if any.

    With tracing off there is never an active span: one context lookup per line.
    """
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


def configure_logging(
    *,
    level: str = "INFO",
    fmt: Literal["json", "console"] = "json",
    service: str = "agentmgr",
    secrets: Iterable[str] = (),
    stream: object = None,
) -> None:
    """Configure structlog and the standard library logging for this process."""
    redactor.register(*secrets)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        add_trace_context,
        redactor,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)  # type: ignore[arg-type]  # a text stream
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own logging config (a server started with the default `log_config`, as a
    # library user or a test may) gives its loggers handlers of their own and stops them
    # propagating: their lines would skip the redaction below.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # Chatty libraries stay at WARNING unless we debug; their lines are redacted anyway.
    # uvicorn's "error" logger writes two INFO lines per WebSocket connection (accepted,
    # open) and one per close: noise with thousands of live clients; its errors still show.
    for noisy in (
        "httpx",
        "httpcore",
        "asyncio",
        "sqlalchemy.engine",
        "nats",
        "openai",
        "anthropic",
        "uvicorn.error",
    ):
        logging.getLogger(noisy).setLevel(level if level == "DEBUG" else "WARNING")
    structlog.contextvars.bind_contextvars(service=service)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A named structlog logger (configure_logging must have run for JSON output)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
