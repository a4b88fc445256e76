"""Domain errors ⇄ gRPC statuses, in one place (AIP-193 rich error details).

Servers turn a `DomainError` into a status whose details carry a
`google.rpc.ErrorInfo` (domain `agentmgr.dev`, the UPPER_SNAKE reason, metadata), a
`google.rpc.BadRequest` naming the bad fields, and a `google.rpc.RetryInfo` for rate
limits. Clients (agent_svc calling provider_svc, the gateway) turn a failed call back
into the same `DomainError`, so errors keep their field and reason across hops.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from libs.common import errors
from libs.common.errors import DomainError, ErrorCode, FieldViolation

__all__ = ["ERROR_DOMAIN", "GRPC_CODES", "from_rpc_error", "to_grpc_status"]

ERROR_DOMAIN = "agentmgr.dev"

GRPC_CODES: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorCode.ABORTED: grpc.StatusCode.ABORTED,
    ErrorCode.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorCode.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorCode.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorCode.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorCode.INTERNAL: grpc.StatusCode.INTERNAL,
}

_ERROR_CLASSES: dict[grpc.StatusCode, type[DomainError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.ABORTED: errors.Aborted,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: errors.ResourceExhausted,
    grpc.StatusCode.UNAUTHENTICATED: errors.Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: errors.PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: errors.DeadlineExceeded,
    grpc.StatusCode.CANCELLED: errors.Unavailable,
}


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]  # any protobuf message
    return packed


def to_grpc_status(error: DomainError) -> grpc.Status:
    """The rich gRPC status for a domain error."""
    code = GRPC_CODES[error.code]
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=dict(error.metadata)
            )
        )
    ]
    if isinstance(error, errors.InvalidArgument) and error.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                        for v in error.violations
                    ]
                )
            )
        )
    if isinstance(error, errors.ResourceExhausted):
        seconds = max(error.retry_after, 0.0)
        details.append(
            _pack(
                error_details_pb2.RetryInfo(
                    retry_delay=duration_pb2.Duration(
                        seconds=int(seconds), nanos=int((seconds - math.floor(seconds)) * 1e9)
                    )
                )
            )
        )
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    return rpc_status.to_status(status)


def from_rpc_error(exc: grpc.RpcError) -> DomainError:
    """Rebuild the domain error a server sent (UNAVAILABLE for transport failures)."""
    code: grpc.StatusCode = exc.code()
    message = str(exc.details() or code.name.lower())
    cls = _ERROR_CLASSES.get(code, errors.Internal)
    reason = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    retry_after = 1.0
    status = _status_from_trailers(exc)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_after = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
    if cls is errors.Internal:
        message = "internal error"
    if cls is errors.InvalidArgument:
        return errors.InvalidArgument(
            message=message, reason=reason, metadata=metadata, violations=violations
        )
    if cls is errors.ResourceExhausted:
        return errors.ResourceExhausted(
            message=message, reason=reason, metadata=metadata, retry_after=retry_after
        )
    return cls(message=message, reason=reason, metadata=metadata)


def _status_from_trailers(exc: grpc.RpcError) -> status_pb2.Status | None:
    trailers = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    pairs: list[tuple[str, str | bytes]] = list(trailers or ())  # type: ignore[arg-type]  # grpc-stubs
    for key, value in pairs:
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status()
            status.ParseFromString(value)
            if status.code == code_pb2.OK:
                return None
            return status
    return None
