"""OpenTelemetry tracing: off unless an OTLP endpoint is configured (docs/operations.md).

`configure_tracing(service)` runs once per process, after logging. With neither
`OTEL_EXPORTER_OTLP_ENDPOINT` nor `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set (or with
`OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none`) it does nothing: the SDK is not
even imported, the global tracer stays OpenTelemetry's no-op one, and the callers below
install no interceptor or middleware — tracing that is off costs nothing per request.

With an endpoint it installs an SDK tracer provider with a batching OTLP/HTTP exporter
(spans leave from a background thread, never from the event loop), configured by the
standard `OTEL_*` variables; `service.name` is `OTEL_SERVICE_NAME` or the service's own
name. Context crosses process boundaries as W3C `traceparent` (the global propagator,
`OTEL_PROPAGATORS`): in gRPC metadata here, in HTTP headers at the gateway.

What spans carry: method names, routes, status codes — never metadata or headers
(they hold API keys), never request bodies, prompts or answers.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = [
    "configure_tracing",
    "grpc_client_interceptors",
    "shutdown_tracing",
    "trace_server_stream",
    "trace_server_unary",
    "tracer",
    "tracing_enabled",
    "tracing_requested",
]


class _State:
    provider: TracerProvider | None = None


_state = _State()
_TRUE = ("1", "true", "yes", "on")
# OpenTelemetry semantic conventions for RPC: these codes make a server span an error;
# the others (NOT_FOUND, INVALID_ARGUMENT, …) are the caller's problem, not the server's.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_PROPAGATED = ("traceparent", "tracestate", "baggage")


def tracer() -> trace.Tracer:
    """The agentmgr tracer (OpenTelemetry's no-op tracer while tracing is off)."""
    return trace.get_tracer("agentmgr")


def tracing_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces to be exported."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def tracing_enabled() -> bool:
    """Whether `configure_tracing` installed an exporter in this process."""
    return _state.provider is not None


def configure_tracing(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Export traces over OTLP/HTTP when an endpoint is configured; returns whether it does.

    Raises ValueError, naming the variable, for a protocol other than `http/protobuf`.
    """
    env = os.environ if environ is None else environ
    if _state.provider is not None or not tracing_requested(env):
        return _state.provider is not None
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = env.get(variable, "").strip()
        if protocol and protocol != "http/protobuf":
            raise ValueError(f"{variable}: only 'http/protobuf' is supported (port 4318 of a collector)")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from libs.common.logging import redactor

    # Exporter headers (`OTEL_EXPORTER_OTLP_HEADERS=authorization=…`) are credentials.
    for variable in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        for pair in env.get(variable, "").split(","):
            redactor.register(pair.partition("=")[2].strip())
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _state.provider = provider
    return True


def shutdown_tracing() -> None:
    """Export the spans still buffered (blocks up to the exporter's timeout)."""
    if _state.provider is not None:
        _state.provider.shutdown()


# --- gRPC ------------------------------------------------------------------------


def _rpc_attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _set_grpc_status(span: Span, code: object, *, server: bool) -> None:
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.OK if code in (None, 0) else grpc.StatusCode.UNKNOWN
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK and (not server or code in _SERVER_ERRORS):
        span.set_status(Status(StatusCode.ERROR, code.name))


def _server_parent(metadata: Iterable[tuple[str, str | bytes]] | None) -> Any:
    carrier = {k: v for k, v in metadata or () if k in _PROPAGATED and isinstance(v, str)}
    return propagate.extract(carrier) if carrier else None


Context = Any  # grpc.aio.ServicerContext; the interceptor's wrappers are message-agnostic
UnaryBehavior = Callable[[object, Context], Awaitable[object]]
StreamBehavior = Callable[[object, Context], AsyncIterator[object]]


def _server_span(name: str, attributes: dict[str, str], context: Context) -> Any:
    """A SERVER span for one call, child of the caller's span when its metadata carries one."""
    return tracer().start_as_current_span(
        name,
        context=_server_parent(context.invocation_metadata()),
        kind=SpanKind.SERVER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    )


def trace_server_unary(method: str, behavior: UnaryBehavior) -> UnaryBehavior:
    """Wrap a unary handler in a server span continuing the caller's trace."""
    attributes = _rpc_attributes(method)
    name = method.lstrip("/")

    async def unary(request: object, context: Context) -> object:
        with _server_span(name, attributes, context) as span:
            try:
                return await behavior(request, context)
            finally:
                _set_grpc_status(span, context.code(), server=True)

    return unary


def trace_server_stream(method: str, behavior: StreamBehavior) -> StreamBehavior:
    """Wrap a server-streaming handler in a server span continuing the caller's trace."""
    attributes = _rpc_attributes(method)
    name = method.lstrip("/")

    async def stream(request: object, context: Context) -> AsyncIterator[object]:
        with _server_span(name, attributes, context) as span:
            try:
                async for item in behavior(request, context):
                    yield item
            finally:
                _set_grpc_status(span, context.code(), server=True)

    return stream


def _method_name(details: Any) -> str:
    method = details.method
    return method.decode() if isinstance(method, bytes) else str(method)


def _with_trace_context(details: Any, span: Span) -> Any:
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    metadata = grpc.aio.Metadata(*tuple(details.metadata or ()), *carrier.items())
    return details._replace(metadata=metadata)


# grpc-stubs makes the interceptor bases generic; at run time they are not.
if TYPE_CHECKING:
    _UnaryUnary = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
else:
    _UnaryUnary = grpc.aio.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.aio.UnaryStreamClientInterceptor


class _ClientTracing(_UnaryUnary, _UnaryStream):
    """A client span per call; its context goes to the server as `traceparent` metadata."""

    def _start(self, details: Any) -> Span:
        method = _method_name(details)
        attributes = _rpc_attributes(method)
        return tracer().start_span(method.lstrip("/"), kind=SpanKind.CLIENT, attributes=attributes)

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        span = self._start(client_call_details)
        code: object = grpc.StatusCode.CANCELLED
        try:
            call = await continuation(_with_trace_context(client_call_details, span), request)
            code = await call.code()
            return call
        finally:
            _set_grpc_status(span, code, server=False)
            span.end()

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        span = self._start(client_call_details)
        try:
            call = await continuation(_with_trace_context(client_call_details, span), request)
        except BaseException:
            _set_grpc_status(span, grpc.StatusCode.UNKNOWN, server=False)
            span.end()
            raise

        async def finish(done: Any) -> None:
            try:
                _set_grpc_status(span, await done.code(), server=False)
            finally:
                span.end()

        # The stream is read by the caller: the span ends when the call does.
        call.add_done_callback(lambda done: _spawn(finish(done)))
        return call


_background: set[asyncio.Future[None]] = set()


def _spawn(work: Awaitable[None]) -> None:
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


def grpc_client_interceptors() -> Sequence[Any] | None:
    """Interceptors for `grpc.aio` channels: tracing when on, none at all when off."""
    return [_ClientTracing()] if tracing_enabled() else None
