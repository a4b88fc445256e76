"""gRPC codes → HTTP, in one place (DESIGN §3), and the error body every 4xx/5xx has.

`{"error": {"code": "INVALID_ARGUMENT", "message": "...", "details": [...]}}`; details
name the bad field (relative to the REST body: `name`, `config.headers.X`,
`variables.city`), the reason (AIP-193), and for 429 the seconds to wait, which is
also sent as `Retry-After`.
"""

from __future__ import annotations

import math

import grpc
from fastapi.responses import JSONResponse

from libs.common import errors
from libs.common.errors import DomainError, ErrorCode
from libs.common.grpc_errors import ERROR_DOMAIN, from_rpc_error

__all__ = ["HTTP_STATUS", "error_response", "rest_field"]

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.FAILED_PRECONDITION: 400,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.PERMISSION_DENIED: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.ALREADY_EXISTS: 409,
    ErrorCode.ABORTED: 409,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.INTERNAL: 500,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.DEADLINE_EXCEEDED: 504,
}

# Proto request paths → REST body paths: the REST body is the resource itself.
_PREFIXES = ("provider.", "agent.", "task.", "input.")


def rest_field(field: str) -> str:
    """`provider.base_url` → `base_url`, `input.variables.x` → `variables.x`."""
    for prefix in _PREFIXES:
        if field.startswith(prefix):
            return field[len(prefix) :]
    return field


def error_response(error: DomainError | grpc.RpcError) -> JSONResponse:
    """The HTTP response for a domain error or a failed backend call."""
    if isinstance(error, grpc.RpcError):
        error = from_rpc_error(error)
    message = error.message
    details: list[dict[str, object]] = [
        {
            "type": "error_info",
            "reason": error.reason,
            "domain": ERROR_DOMAIN,
            "metadata": dict(error.metadata),
        }
    ]
    headers: dict[str, str] = {}
    if isinstance(error, errors.InvalidArgument):
        for violation in error.violations:
            field = rest_field(violation.field)
            details.append({"type": "field_violation", "field": field, "description": violation.description})
            message = message.replace(violation.field, field, 1)
    if isinstance(error, errors.ResourceExhausted):
        seconds = max(1, math.ceil(error.retry_after))
        details.append({"type": "retry_info", "retry_after_s": error.retry_after})
        headers["Retry-After"] = str(seconds)
    return JSONResponse(
        {"error": {"code": error.code.value, "message": message, "details": details}},
        status_code=HTTP_STATUS[error.code],
        headers=headers,
    )
