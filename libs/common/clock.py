"""Time helpers: aware UTC datetimes and the RFC 3339 form protobuf's JSON mapping uses."""

from __future__ import annotations

import datetime as dt

__all__ = ["rfc3339", "utcnow"]


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def rfc3339(value: dt.datetime) -> str:
    """`2026-11-24T03:19:14.123456Z`, exactly as protobuf renders a Timestamp in JSON.

    Events and REST share one rendering so the same resource reads the same everywhere.
    """
    value = value.astimezone(dt.UTC)
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    micros = value.microsecond
    if micros == 0:
        return base + "Z"
    if micros % 1000 == 0:
        return f"{base}.{micros // 1000:03d}Z"
    return f"{base}.{micros:06d}Z"
