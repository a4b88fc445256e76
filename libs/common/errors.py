"""Domain errors: what went wrong, independent of the transport.

Domain code raises these; `libs.common.grpc_errors` maps them to gRPC status codes in
one place and the gateway maps gRPC codes to HTTP in one place. Messages are written
for the caller and must never contain a secret or an internal detail.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

__all__ = [
    "Aborted",
    "AlreadyExists",
    "DeadlineExceeded",
    "DomainError",
    "ErrorCode",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]


class ErrorCode(enum.Enum):
    """The canonical codes agentmgr uses (a subset of google.rpc.Code)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    ABORTED = "ABORTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One bad field of a request (google.rpc.BadRequest.FieldViolation)."""

    field: str
    """Path of the field in the request, for example `provider.base_url`."""
    description: str
    """Why it is wrong, for a human."""


@dataclass(eq=False)
class DomainError(Exception):
    """Base of every error a caller is meant to see."""

    message: str
    """Human-readable, secret-free explanation."""
    reason: str = ""
    """AIP-193 UPPER_SNAKE reason (see `agentmgr.v1.ErrorReason`); defaults per code."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    """Extra machine-readable facts (ErrorInfo metadata), e.g. a JSON pointer."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL
    default_reason: ClassVar[str] = "INTERNAL"

    def __post_init__(self) -> None:
        if not self.reason:
            self.reason = self.default_reason
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


@dataclass(eq=False)
class InvalidArgument(DomainError):
    """A request field is malformed. Always names the field."""

    violations: Sequence[FieldViolation] = ()
    """The bad fields; at least one."""

    code: ClassVar[ErrorCode] = ErrorCode.INVALID_ARGUMENT
    default_reason: ClassVar[str] = "INVALID_FIELD"

    @classmethod
    def for_field(
        cls, field_path: str, description: str, *, metadata: Mapping[str, str] | None = None
    ) -> InvalidArgument:
        """Build the common single-field error, message `<field>: <description>`."""
        return cls(
            message=f"{field_path}: {description}",
            violations=(FieldViolation(field_path, description),),
            metadata=dict(metadata or {}),
        )


@dataclass(eq=False)
class NotFound(DomainError):
    """The resource does not exist, or the caller may not see it."""

    code: ClassVar[ErrorCode] = ErrorCode.NOT_FOUND
    default_reason: ClassVar[str] = "NOT_FOUND"


@dataclass(eq=False)
class AlreadyExists(DomainError):
    """A resource with the same unique name exists."""

    code: ClassVar[ErrorCode] = ErrorCode.ALREADY_EXISTS
    default_reason: ClassVar[str] = "ALREADY_EXISTS"


@dataclass(eq=False)
class Aborted(DomainError):
    """A concurrency conflict, e.g. a stale etag (AIP-154)."""

    code: ClassVar[ErrorCode] = ErrorCode.ABORTED
    default_reason: ClassVar[str] = "ETAG_MISMATCH"


@dataclass(eq=False)
class FailedPrecondition(DomainError):
    """The system is not in a state that allows the operation."""

    code: ClassVar[ErrorCode] = ErrorCode.FAILED_PRECONDITION
    default_reason: ClassVar[str] = "FAILED_PRECONDITION"


@dataclass(eq=False)
class ResourceExhausted(DomainError):
    """A rate limit or quota was hit; retry after `retry_after` seconds."""

    retry_after: float = 1.0
    """Seconds after which a retry may succeed (RetryInfo / Retry-After)."""

    code: ClassVar[ErrorCode] = ErrorCode.RESOURCE_EXHAUSTED
    default_reason: ClassVar[str] = "RATE_LIMITED"


@dataclass(eq=False)
class Unauthenticated(DomainError):
    """No valid credential came with the request."""

    code: ClassVar[ErrorCode] = ErrorCode.UNAUTHENTICATED
    default_reason: ClassVar[str] = "UNAUTHENTICATED"


@dataclass(eq=False)
class PermissionDenied(DomainError):
    """The caller is known but may not do this."""

    code: ClassVar[ErrorCode] = ErrorCode.PERMISSION_DENIED
    default_reason: ClassVar[str] = "PERMISSION_DENIED"


@dataclass(eq=False)
class Unavailable(DomainError):
    """A dependency is unreachable; the call may be retried."""

    code: ClassVar[ErrorCode] = ErrorCode.UNAVAILABLE
    default_reason: ClassVar[str] = "UNAVAILABLE"


@dataclass(eq=False)
class DeadlineExceeded(DomainError):
    """The caller's deadline passed before the work finished."""

    code: ClassVar[ErrorCode] = ErrorCode.DEADLINE_EXCEEDED
    default_reason: ClassVar[str] = "DEADLINE_EXCEEDED"


@dataclass(eq=False)
class Internal(DomainError):
    """An unexpected failure; the message never carries internals."""

    code: ClassVar[ErrorCode] = ErrorCode.INTERNAL
    default_reason: ClassVar[str] = "INTERNAL"
