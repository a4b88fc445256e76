"""REST routes: translation between JSON and the gRPC API, nothing else."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from google.protobuf.message import Message

from libs.common.protojson import message_to_json
from services.gateway.schemas import ErrorBody

__all__ = ["ERRORS", "resource_response"]

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "invalid request (the field is named)"),
        (401, "missing, unknown or revoked API key"),
        (403, "the key's role or project does not allow it"),
        (404, "not found"),
        (409, "already exists, or a stale etag"),
        (413, "request body too large"),
        (429, "rate limited; see Retry-After"),
        (503, "a backend is unavailable; retry"),
        (504, "the deadline passed"),
    )
}


def resource_response(message: Message, *, status_code: int = 200, etag: str = "") -> JSONResponse:
    """A resource (or page) as JSON, with its ETag header when it has one."""
    headers = {"ETag": f'"{etag}"'} if etag else None
    return JSONResponse(message_to_json(message), status_code=status_code, headers=headers)
