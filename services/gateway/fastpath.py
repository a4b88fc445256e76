"""`POST /v1/runs` served below FastAPI's request machinery.

The busiest route. FastAPI's routing, dependency resolution and exception middleware
cost the gateway more CPU per run than everything else it does for one
(docs/performance.md), so this plain ASGI layer serves a run request itself when the
request is an ordinary one: a JSON body that validates, a bearer key. It uses the same
pieces as the FastAPI route — `authorize` (key, rate limit, request id), the same
`RunCreate` validation, `submit_run`, `resource_response`, `error_response` — so the
answer is byte for byte what the route would send.

Anything else (no bearer key, not JSON, a body that does not validate, a CORS request)
is handed on to FastAPI with the body replayed, which answers it with its usual error;
the route stays there for the OpenAPI document and as that fallback.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.errors import Internal
from libs.common.logging import get_logger
from services.gateway.deps import GatewayError, authorize
from services.gateway.errors import error_response
from services.gateway.routes import resource_response, runs
from services.gateway.routes.runs import submit_run
from services.gateway.schemas import RunCreate

__all__ = ["FastRuns"]

_log = get_logger(__name__)
_PATH = "/v1/runs"


class FastRuns:
    """Serves ordinary `POST /v1/runs` requests; passes everything else to `app`."""

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.state = api.state
        self.route = next(
            route
            for route in runs.router.routes
            if isinstance(route, APIRoute) and route.path == _PATH and "POST" in (route.methods or ())
        )
        # A CORS request goes through FastAPI, where the CORS middleware adds its headers.
        self.cors = bool(self.state.settings.origins())
        self.served = 0
        """Requests answered here rather than by FastAPI."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, or hand it on."""
        if scope["type"] != "http" or scope["path"] != _PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)  # as the route reads them: the first of repeated ones
        token = _bearer(headers.get("authorization"))
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if token is None or content_type != "application/json" or (self.cors and "origin" in headers):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before sending its request
        try:
            run = RunCreate.model_validate(json.loads(body))
        except (ValueError, ValidationError):  # FastAPI answers with the field named
            await self.app(scope, _replay(body, receive), send)
            return
        scope["route"] = self.route  # the metrics and trace label, as routing would set it
        self.served += 1
        await self._serve(scope, receive, send, body=run, token=token, request_id=headers.get("x-request-id"))

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        body: RunCreate,
        token: str,
        request_id: str | None,
    ) -> None:
        try:
            caller = authorize(self.state, token, request_id)
            scope.setdefault("state", {})["request_id"] = caller.context.request_id
            run, status = await submit_run(body, caller, self.state.backends, self.state.settings)
            response = resource_response(run, status_code=status)
        except GatewayError as exc:
            response = error_response(exc.error)
        except Exception:
            _log.exception("http_internal_error", path=_PATH)
            response = error_response(Internal("internal error"))
        await response(scope, receive, send)


def _bearer(authorization: str | None) -> str | None:
    """The key of `Bearer <key>`, read as FastAPI's HTTPBearer reads it; else None."""
    scheme, key = get_authorization_scheme_param(authorization)
    return key if scheme.lower() == "bearer" and key else None


async def _read_body(receive: Receive) -> bytes | None:
    """The whole body; None when the client disconnected first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` that first yields the body already read, then defers to the original."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: Any = await receive()
        return message  # type: ignore[no-any-return]

    return replayed
