"""The gateway's ASGI application: REST routes, WebSocket, Socket.IO, health, metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.auth import KeyStore
from libs.common.errors import FieldViolation, Internal, InvalidArgument
from libs.common.logging import get_logger
from libs.common.ratelimit import RateLimiter
from services.gateway.clients import Backends
from services.gateway.deps import CallerDep, GatewayError
from services.gateway.errors import error_response
from services.gateway.fastpath import FastRuns
from services.gateway.hub import EventHub
from services.gateway.routes import ERRORS, agents, providers, runs, tasks
from services.gateway.schemas import Me
from services.gateway.settings import GatewaySettings
from services.gateway.socketio_app import SocketIOBridge
from services.gateway.tracing import TracingMiddleware
from services.gateway.websocket import DirectWebSocket

__all__ = ["GatewayApp", "create_app"]

_log = get_logger(__name__)
REQUESTS = Counter("agentmgr_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "agentmgr_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

DESCRIPTION = """
agentmgr's REST API: providers, agents, versioned tasks and schema-validated runs.
Every call but health, metrics and these docs needs `Authorization: Bearer <API key>`.
Errors are `{"error": {"code", "message", "details"}}` with the HTTP status of the gRPC
code; `details` name the bad field. Real time: `GET /v1/ws` (WebSocket) and
`/socket.io`, topics `providers`, `agents`, `tasks`, `runs`.
"""


class BodyLimit:
    """413 for bodies larger than the limit, declared or streamed."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = {
            "error": {
                "code": "INVALID_ARGUMENT",
                "message": f"request body exceeds {self.max_bytes} bytes",
                "details": [],
            }
        }
        await JSONResponse(body, status_code=413)(scope, receive, send)


class _TooLarge(Exception):
    pass


class Observe:
    """Request metrics and the `X-Request-ID` header, as plain ASGI.

    (Starlette's `@app.middleware("http")` runs every request through an extra task and
    memory streams, which cost more than the rest of the gateway's own work.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                request_id = scope.get("state", {}).get("request_id")
                if request_id:
                    message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], template, str(status)).inc()
            LATENCY.labels(scope["method"], template).observe(time.perf_counter() - started)


def _validation_error(exc: RequestValidationError) -> InvalidArgument:
    violations = []
    for error in exc.errors():
        location = [
            str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")
        ]
        field = ".".join(location) or "body"
        message = str(error.get("msg", "invalid"))
        if error.get("type") == "json_invalid":
            field, message = "body", "is not valid JSON"
        violations.append(FieldViolation(field, message))
    first = violations[0] if violations else FieldViolation("body", "invalid")
    return InvalidArgument(message=f"{first.field}: {first.description}", violations=violations)


WEB_DIST = Path(__file__).parent / "web" / "dist"
_NOT_CONSOLE = ("v1/", "docs", "openapi.json", "healthz", "readyz", "metrics", "socket.io")


def _mount_console(api: FastAPI) -> None:
    """Serve the web console (built into web/dist) at `/`; client-side routes get index.html."""
    index = WEB_DIST / "index.html"
    if (WEB_DIST / "assets").is_dir():
        api.mount("/assets", StaticFiles(directory=WEB_DIST / "assets"), name="assets")

    @api.get("/{path:path}", include_in_schema=False)
    async def console(path: str) -> Response:
        if path.startswith(_NOT_CONSOLE):
            return JSONResponse(
                {"error": {"code": "NOT_FOUND", "message": f"no route /{path}", "details": []}},
                status_code=404,
            )
        candidate = (WEB_DIST / path).resolve()
        if path and candidate.is_file() and WEB_DIST.resolve() in candidate.parents:
            return FileResponse(candidate)
        if index.is_file():
            return FileResponse(index, headers={"Cache-Control": "no-cache"})
        return HTMLResponse(
            "<h1>agentmgr</h1><p>The console is not built. <code>make run</code> builds it; "
            "the API is at <a href='/docs'>/docs</a>.</p>",
            status_code=503,
        )


@dataclass(frozen=True)
class GatewayApp:
    """The FastAPI app and the ASGI app actually served (Socket.IO and the body limit around it)."""

    api: FastAPI
    asgi: ASGIApp
    socketio: SocketIOBridge
    fast_runs: FastRuns


_HTTP_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
}


def _clean_openapi(api: FastAPI) -> None:
    """Publish what the API really does: no 422 (validation errors are 400 with our body)."""
    original = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = original()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    if isinstance(operation, dict):
                        operation.get("responses", {}).pop("422", None)
            components = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                components.pop(name, None)
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented customisation


def create_app(
    *,
    settings: GatewaySettings,
    backends: Backends,
    keys: KeyStore,
    hub: EventHub,
    nats_connected: Callable[[], bool],
    tracing: bool = False,
) -> GatewayApp:
    """Build the app (with `tracing`, a server span per HTTP request)."""
    api = FastAPI(
        title="agentmgr",
        version="1.0.0",
        description=DESCRIPTION,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        # FastAPI's own OpenTelemetry spans, metrics and logs stay off: `TracingMiddleware`
        # makes the one server span per request and records no query string (a WebSocket
        # URL may carry `?api_key=`) and no exception message; Prometheus has the metrics.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    api.state.settings = settings
    api.state.backends = backends
    api.state.keys = keys
    api.state.hub = hub
    api.state.limiter = (
        RateLimiter(rate=settings.rate_limit_rps, burst=settings.rate_limit_burst)
        if settings.rate_limit_rps > 0
        else None
    )
    api.state.draining = False
    for router in (providers.router, agents.router, tasks.router, runs.router):
        api.include_router(router)

    @api.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError) -> JSONResponse:
        return error_response(exc.error)

    @api.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(_validation_error(exc))

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Framework-level refusals (unparseable body, unknown method) get the same body.
        code = _HTTP_CODES.get(exc.status_code, "INVALID_ARGUMENT" if exc.status_code < 500 else "INTERNAL")
        body = {"error": {"code": code, "message": str(exc.detail), "details": []}}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @api.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("http_internal_error", path=request.url.path)
        return error_response(Internal("internal error"))

    @api.get("/v1/me", tags=["system"], summary="Who am I", responses={200: {"model": Me}, **ERRORS})
    async def me(caller: CallerDep) -> JSONResponse:
        """The calling key: its id, the project it grants (`*` for all) and its role."""
        p = caller.principal
        return JSONResponse({"key_id": p.key_id, "project": p.project, "role": p.role.value})

    @api.get("/healthz", tags=["system"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        """The process is up (no dependency is checked)."""
        return {"status": "ok"}

    @api.get("/readyz", tags=["system"], summary="Readiness")
    async def readyz() -> JSONResponse:
        """The backends are SERVING and NATS is connected."""
        checks: dict[str, bool] = dict(await backends.ready(timeout_s=1.0))
        checks["nats"] = nats_connected()
        checks["keys"] = keys.ready.is_set()
        ok = all(checks.values()) and not api.state.draining
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
        )

    @api.get(
        "/metrics",
        tags=["system"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def metrics() -> Response:
        """Requests, latencies, real-time clients, events fanned out."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if settings.origins():
        api.add_middleware(
            CORSMiddleware,
            allow_origins=settings.origins(),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["ETag", "X-Request-ID", "Retry-After"],
        )
    _mount_console(api)
    _clean_openapi(api)
    bridge = SocketIOBridge(keys=keys, hub=hub, settings=settings)
    fast_runs = FastRuns(bridge.asgi(api), api)
    asgi: ASGIApp = DirectWebSocket(Observe(BodyLimit(fast_runs, max_bytes=settings.max_body_bytes)), api)
    return GatewayApp(
        api=api, asgi=TracingMiddleware(asgi) if tracing else asgi, socketio=bridge, fast_runs=fast_runs
    )
