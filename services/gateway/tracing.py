"""The gateway's HTTP server spans (installed only when tracing is on; docs/operations.md).

A pure ASGI middleware around the whole app: one SERVER span per HTTP request, named
`METHOD /route/{template}` once routing has happened, continuing the caller's trace
when it sent a W3C `traceparent`. The backend calls made while serving the request
(gRPC, traced by `libs.common.telemetry`) become its children.

Only the method, the path, the route template and the status are recorded: never
headers (the API key), the query string (`?api_key=` on WebSocket URLs) or bodies.
WebSocket connections and the health/metrics endpoints get no span.
"""

from __future__ import annotations

from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.telemetry import tracer

__all__ = ["TracingMiddleware"]

_UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})
_PROPAGATED = (b"traceparent", b"tracestate", b"baggage")


class TracingMiddleware:
    """One server span per HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http" or scope["path"] in _UNTRACED:
            await self.app(scope, receive, send)
            return
        carrier = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope.get("headers") or ()
            if key in _PROPAGATED
        }
        method = str(scope["method"])
        status = 500

        async def traced_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with tracer().start_as_current_span(
            method,
            context=propagate.extract(carrier) if carrier else None,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": str(scope["path"])},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self.app(scope, receive, traced_send)
            finally:
                # Routing stored the matched route in the scope; its template names the span.
                template = getattr(scope.get("route"), "path", None)
                if template:
                    span.update_name(f"{method} {template}")
                    span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
