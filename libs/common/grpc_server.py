"""The gRPC server every agentmgr service runs (DESIGN §3).

One interceptor does, for every call: authentication (API key → principal, checked
against the method's required access), per-key rate limiting, a default deadline for
calls that arrive without one, structured logging, Prometheus metrics, and the
mapping of domain errors to rich statuses. Unexpected exceptions become INTERNAL with
a generic message (the traceback goes to the log, redacted), never UNKNOWN.

Every server also serves `grpc.health.v1` and reflection, and stops gracefully:
health turns NOT_SERVING first, new calls are refused, calls in flight get
`grace_s` to finish.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import structlog
from google.protobuf.message import Message
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram

from libs.common.activity import Activity
from libs.common.auth import Access, KeyStore, Principal
from libs.common.db import is_unavailable
from libs.common.errors import (
    DeadlineExceeded,
    DomainError,
    Internal,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from libs.common.grpc_errors import to_grpc_status
from libs.common.logging import get_logger
from libs.common.ratelimit import RateLimiter
from libs.common.telemetry import trace_server_stream, trace_server_unary
from libs.common.textcheck import find_nul

__all__ = ["LIVENESS", "AccessPolicy", "CallInterceptor", "GrpcServer", "current_principal"]

LIVENESS = "liveness"

_log = get_logger(__name__)
_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("agentmgr_principal")

RPC_TOTAL = Counter("agentmgr_grpc_server_handled_total", "RPCs completed", ["method", "code"])
RPC_SECONDS = Histogram(
    "agentmgr_grpc_server_handling_seconds",
    "RPC latency",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def current_principal() -> Principal:
    """The authenticated caller of the current RPC (set by CallInterceptor)."""
    return _principal.get()


@dataclass(frozen=True)
class AccessPolicy:
    """Required access per full method name (`/pkg.Service/Method`); unknown → denied."""

    methods: Mapping[str, Access]

    def access_for(self, method: str) -> Access | None:
        """The access a method needs, PUBLIC for health/reflection, None if unknown."""
        if method.startswith(_PUBLIC_PREFIXES):
            return Access.PUBLIC
        return self.methods.get(method)


def _bearer(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def _request_id(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "x-request-id" and isinstance(value, str):
            return value[:128]
    return None


Behavior = Callable[..., object]
# grpc-stubs types contexts and handlers generically; our wrappers are message-agnostic.
if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[object, object]
    Handler = grpc.RpcMethodHandler[object, object]
    _Interceptor = grpc.aio.ServerInterceptor[object, object]
else:
    Context = grpc.aio.ServicerContext
    Handler = grpc.RpcMethodHandler
    _Interceptor = grpc.aio.ServerInterceptor


class CallInterceptor(_Interceptor):
    """Auth, rate limit, deadline, logging, metrics and error mapping for every call."""

    def __init__(
        self,
        *,
        keys: KeyStore,
        policy: AccessPolicy,
        limiter: RateLimiter | None,
        default_timeout_s: float,
        method_timeouts: Mapping[str, float] | None = None,
        tracing: bool = False,
        activity: Activity | None = None,
    ) -> None:
        self._keys = keys
        # Unary calls in progress (what the outbox relay waits to see end before publishing).
        self._activity = activity or Activity()
        self._policy = policy
        self._limiter = limiter
        self._default_timeout_s = default_timeout_s
        self._method_timeouts = dict(method_timeouts or {})
        # Decided once: with tracing off no call pays for a span, not even a no-op one.
        self._tracing = tracing

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler:
        """Wrap the method's handler with admission, error mapping and metrics."""
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        access = self._policy.access_for(method)
        if handler is None or access is Access.PUBLIC:  # unknown method: gRPC answers UNIMPLEMENTED
            return handler
        if handler.unary_unary is not None:
            unary = self._wrap_unary(method, access, handler.unary_unary)
            return grpc.unary_unary_rpc_method_handler(
                trace_server_unary(method, unary) if self._tracing else unary,  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            stream = self._wrap_stream(method, access, handler.unary_stream)
            return grpc.unary_stream_rpc_method_handler(
                trace_server_stream(method, stream) if self._tracing else stream,  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        raise NotImplementedError(f"{method}: client-streaming methods are not used by agentmgr")

    @staticmethod
    def _check_text(request: object) -> None:
        if isinstance(request, Message):
            field = find_nul(request)
            if field is not None:
                raise InvalidArgument.for_field(field, "must not contain NUL characters")

    def _admit(self, method: str, access: Access | None, context: Context) -> Principal:
        metadata = context.invocation_metadata()
        principal = self._keys.authenticate(_bearer(metadata))
        if access is None:
            raise Internal(f"no access rule for {method}")
        principal.require(access)
        if self._limiter is not None and principal.role.value != "service":
            retry_after = self._limiter.acquire(principal.key_id)
            if retry_after is not None:
                raise ResourceExhausted("rate limit exceeded for this API key", retry_after=retry_after)
        _principal.set(principal)
        structlog.contextvars.bind_contextvars(
            rpc=method,
            key_id=principal.key_id,
            request_id=_request_id(metadata),
        )
        return principal

    def _timeout(self, method: str, context: Context) -> float:
        remaining: float | None = context.time_remaining()  # grpc-stubs says float; None without a deadline
        if remaining is not None:
            return remaining
        return self._method_timeouts.get(method, self._default_timeout_s)

    def _wrap_unary(self, method: str, access: Access | None, behavior: Behavior) -> Behavior:
        async def unary(request: object, context: Context) -> object:
            started = time.perf_counter()
            code = "OK"
            activity.enter()
            try:
                self._admit(method, access, context)
                self._check_text(request)
                async with asyncio.timeout(self._timeout(method, context)):
                    return await behavior(request, context)  # type: ignore[misc]
            except (grpc.aio.AbortError, asyncio.CancelledError):
                code = "ABORTED_BY_HANDLER"
                raise
            except Exception as exc:
                error = self._classify(method, exc)
                code = error.code.value
                # abort_with_status raises AbortError, which gRPC handles quietly.
                await context.abort_with_status(to_grpc_status(error))  # type: ignore[attr-defined]
                raise AssertionError("unreachable: abort raises") from exc
            finally:
                activity.leave()
                RPC_TOTAL.labels(method, code).inc()
                RPC_SECONDS.labels(method).observe(time.perf_counter() - started)

        activity = self._activity
        return unary

    def _wrap_stream(self, method: str, access: Access | None, behavior: Behavior) -> Behavior:
        async def stream(request: object, context: Context) -> AsyncIterator[object]:
            started = time.perf_counter()
            code = "OK"
            try:
                self._admit(method, access, context)
                self._check_text(request)
                # No default timeout here: a stream lives as long as its caller wants;
                # a deadline the caller set is enforced by gRPC itself.
                async for item in behavior(request, context):  # type: ignore[attr-defined]
                    yield item
            except (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit):
                code = "ABORTED_BY_HANDLER"
                raise
            except Exception as exc:
                error = self._classify(method, exc)
                code = error.code.value
                await context.abort_with_status(to_grpc_status(error))  # type: ignore[attr-defined]
                raise AssertionError("unreachable: abort raises") from exc
            finally:
                RPC_TOTAL.labels(method, code).inc()
                RPC_SECONDS.labels(method).observe(time.perf_counter() - started)

        return stream

    @staticmethod
    def _classify(method: str, exc: Exception) -> DomainError:
        """The domain error to answer with; unexpected ones are logged, never echoed."""
        if isinstance(exc, DomainError):
            if exc.code.value not in ("INTERNAL", "UNAVAILABLE"):
                _log.info("rpc_rejected", rpc=method, code=exc.code.value, reason=exc.reason)
            return exc
        if isinstance(exc, TimeoutError):
            return DeadlineExceeded("the deadline passed before the call finished")
        if is_unavailable(exc):
            _log.warning("rpc_dependency_unavailable", rpc=method, error=type(exc).__name__)
            return Unavailable("a dependency is unavailable; retry shortly")
        _log.exception("rpc_internal_error", rpc=method)
        return Internal("internal error")


class GrpcServer:
    """A grpc.aio server with health, reflection and graceful shutdown."""

    def __init__(
        self,
        *,
        interceptor: CallInterceptor,
        service_names: Iterable[str],
        max_message_bytes: int,
    ) -> None:
        self._server = grpc.aio.server(
            interceptors=[interceptor],
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.http2.max_pings_without_data", 0),
            ],
        )
        self._service_names = list(service_names)
        self._health = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            [*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )

    @property
    def server(self) -> grpc.aio.Server:
        """The underlying server, for `add_XServicer_to_server`."""
        return self._server

    async def start(self, address: str) -> int:
        """Bind (port 0 picks a free one) and start; returns the bound port."""
        port = self._server.add_insecure_port(address)
        if port == 0:
            raise OSError(f"cannot bind gRPC address {address}")
        await self._server.start()
        return port

    async def set_serving(self, serving: bool) -> None:
        """Readiness: SERVING / NOT_SERVING for the server ("") and each service."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self._service_names):
            await self._health.set(name, status)

    async def set_alive(self, alive: bool) -> None:
        """Liveness (health service name `liveness`): only the process's own state.

        A PostgreSQL or NATS outage turns readiness off but not liveness: restarting the
        pod would not bring the database back.
        """
        status = (
            health_pb2.HealthCheckResponse.SERVING if alive else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        await self._health.set(LIVENESS, status)

    async def stop(self, *, grace_s: float, drain_delay_s: float = 0.0) -> None:
        """NOT_SERVING, let load balancers notice, refuse new calls, finish in-flight ones."""
        await self.set_serving(False)
        if drain_delay_s > 0:
            await asyncio.sleep(drain_delay_s)
        await self._server.stop(grace_s)
