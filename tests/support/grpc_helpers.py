"""Helpers for calling agentmgr over real gRPC in tests."""

from __future__ import annotations

import grpc

from libs.common.errors import DomainError, InvalidArgument
from libs.common.grpc_errors import from_rpc_error


def auth(key: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying an API key."""
    return (("authorization", f"Bearer {key}"),)


def error_of(exc: grpc.RpcError) -> DomainError:
    """The domain error a failed call carried."""
    return from_rpc_error(exc)


def bad_fields(exc: grpc.RpcError) -> list[str]:
    """The fields an INVALID_ARGUMENT names."""
    error = from_rpc_error(exc)
    assert isinstance(error, InvalidArgument), f"not INVALID_ARGUMENT: {error!r}"
    return [v.field for v in error.violations]
