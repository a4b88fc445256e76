"""FastAPI dependencies shared by every route: the caller, the backends, backend calls.

The gateway authenticates the key itself (from the same watched key bucket as the
services) so that a bad key is refused without a backend hop and rate limits apply
per key; the services authenticate it again — they never trust the gateway.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar

import grpc
from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from libs.common.auth import KeyStore, Principal
from libs.common.errors import DomainError, ResourceExhausted, Unauthenticated, Unavailable
from libs.common.ratelimit import RateLimiter
from services.gateway.clients import Backends, CallContext
from services.gateway.settings import GatewaySettings

__all__ = [
    "BackendsDep",
    "Caller",
    "CallerDep",
    "GatewayError",
    "SettingsDep",
    "authorize",
    "call",
    "etag_from",
]

T = TypeVar("T")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
_bearer = HTTPBearer(auto_error=False, description="an agentmgr API key (`agentmgr keys create`)")


class GatewayError(Exception):
    """A domain error or failed backend call, turned into an HTTP response by the app."""

    def __init__(self, error: DomainError | grpc.RpcError) -> None:
        super().__init__(str(error))
        self.error = error


class Caller:
    """The authenticated caller of a request and its call context."""

    def __init__(self, principal: Principal, context: CallContext) -> None:
        self.principal = principal
        self.context = context


# Dependencies are `async def` on purpose: FastAPI runs plain `def` dependencies in a
# thread pool, a thread hop per request for a dictionary lookup.


async def get_settings(request: Request) -> GatewaySettings:
    """The gateway's settings."""
    settings: GatewaySettings = request.app.state.settings
    return settings


async def get_backends(request: Request) -> Backends:
    """The gRPC backends."""
    backends: Backends = request.app.state.backends
    return backends


async def get_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    x_request_id: Annotated[str | None, Header()] = None,
) -> Caller:
    """Authenticate the bearer key and apply the per-key rate limit."""
    caller = authorize(request.app.state, credentials.credentials if credentials else None, x_request_id)
    request.state.request_id = caller.context.request_id
    return caller


def authorize(state: Any, api_key: str | None, x_request_id: str | None) -> Caller:
    """The caller of a request with bearer key `api_key`, rate limited; GatewayError otherwise.

    `state` is the app's state (keys, limiter, settings). Shared by the FastAPI
    dependency and the fast path (`services.gateway.fastpath`).
    """
    keys: KeyStore = state.keys
    limiter: RateLimiter | None = state.limiter
    settings: GatewaySettings = state.settings
    if not keys.ready.is_set():
        raise GatewayError(Unavailable("the gateway is starting; retry shortly"))
    if api_key is None:
        raise GatewayError(Unauthenticated("missing API key: send 'Authorization: Bearer <key>'"))
    try:
        principal = keys.authenticate(api_key)
    except DomainError as exc:
        raise GatewayError(exc) from None
    if limiter is not None:
        wait = limiter.acquire(principal.key_id)
        if wait is not None:
            raise GatewayError(ResourceExhausted("rate limit exceeded for this API key", retry_after=wait))
    # Forwarded as gRPC metadata, which takes printable ASCII only: anything else is replaced.
    request_id = (
        x_request_id[:128] if x_request_id and _REQUEST_ID.fullmatch(x_request_id[:128]) else uuid.uuid4().hex
    )
    return Caller(principal, CallContext(api_key, request_id, settings.request_timeout_s))


async def call(awaitable: Awaitable[T]) -> T:
    """Await a backend call; a failure becomes the matching HTTP error."""
    try:
        return await awaitable
    except grpc.aio.AioRpcError as exc:
        raise GatewayError(exc) from None


def etag_from(body_etag: str | None, if_match: str | None) -> str:
    """The etag of a body field or an `If-Match` header (quotes and `W/` removed)."""
    value = body_etag or if_match or ""
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')


CallerDep = Annotated[Caller, Depends(get_caller)]
BackendsDep = Annotated[Backends, Depends(get_backends)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
