"""REST routes: translation between JSON and the gRPC API, nothing else."""

from __future__ import annotations

from collections.abc import Mapping
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


def resource_response(
    resource: Message | Mapping[str, Any], *, status_code: int = 200, etag: str = ""
) -> JSONResponse:
    """A resource (or page) as JSON, with its ETag header when it has one.

    `resource` is a message, or its JSON already rendered (tasks: see `routes.tasks`).
    """
    headers = {"ETag": f'"{etag}"'} if etag else None
    content = message_to_json(resource) if isinstance(resource, Message) else resource
    return JSONResponse(content, status_code=status_code, headers=headers)
