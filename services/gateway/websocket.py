"""`GET /v1/ws`: events over a plain WebSocket (DESIGN §3).

The key comes as `?api_key=` (browsers cannot set headers on a WebSocket) or as an
`Authorization: Bearer` header; without a valid one the upgrade is refused with 401.
Client frames: `{"type": "subscribe" | "unsubscribe", "topics": [...]}` and
`{"type": "ping"}`. Server frames: `{"type": "event", "topic", "event"}`,
`subscribed`/`unsubscribed` acknowledgements, `pong`, and `{"type": "error", "message"}`.
Close codes: 4001 key revoked, 4008 too slow to keep up, 1009 frame too large (uvicorn),
1013 events unavailable for now (NATS unreachable when the client subscribed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from libs.common.auth import KeyStore
from libs.common.errors import DomainError
from services.gateway.hub import (
    DISCONNECTS,
    UNAVAILABLE,
    EventHub,
    Outgoing,
    SlowConsumer,
    Subscriber,
    parse_topics,
)
from services.gateway.settings import GatewaySettings
from services.gateway.ws_protocol import WRITE_FRAME

__all__ = ["CLOSE_REVOKED", "CLOSE_SLOW", "CLOSE_TRY_LATER", "PATH", "DirectWebSocket", "websocket_endpoint"]

CLOSE_REVOKED = 4001
CLOSE_SLOW = 4008
CLOSE_TRY_LATER = 1013
PATH = "/v1/ws"


class DirectWebSocket:
    """Hands `GET /v1/ws` connections straight to `websocket_endpoint`; anything else to `app`.

    A WebSocket lives for minutes or hours, and every ASGI layer it passes keeps a
    coroutine (and its closures) alive that long. Through the gateway's middleware and
    FastAPI's routing, an open connection held 216 objects for the garbage collector to
    walk; with 1,000 clients a full collection stopped the event loop — every client and
    every REST call — for 180–250 ms (docs/performance.md, "Fan-out"). None of those
    layers does anything for a WebSocket: the endpoint authenticates by itself.
    """

    def __init__(self, app: ASGIApp, api: FastAPI) -> None:
        self.app = app
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the live feed, or hand on."""
        if scope["type"] == "websocket" and scope["path"] == PATH:
            scope["app"] = self.api  # what `websocket.app.state` reads, as FastAPI would set it
            await websocket_endpoint(WebSocket(scope, receive, send))
            return
        await self.app(scope, receive, send)


def _key(websocket: WebSocket) -> str:
    if key := websocket.query_params.get("api_key"):
        return key
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def websocket_endpoint(websocket: WebSocket) -> None:
    """One client connection."""
    state = websocket.app.state
    keys: KeyStore = state.keys
    hub: EventHub = state.hub
    settings: GatewaySettings = state.settings
    api_key = _key(websocket)
    try:
        principal = keys.authenticate(api_key)
    except DomainError as exc:
        body: dict[str, object] = {"error": {"code": exc.code.value, "message": exc.message, "details": []}}
        await websocket.send_denial_response(JSONResponse(body, status_code=401))
        return
    await websocket.accept()

    async def send(item: Outgoing) -> None:
        await websocket.send_text(item.frame)

    subscriber = Subscriber(
        principal=principal,
        api_key=api_key,
        send=send,
        transport="websocket",
        rate=settings.ws_rate_per_topic,
        max_pending=settings.ws_max_pending,
        send_timeout_s=settings.ws_send_timeout_s,
        write_frame=websocket.scope.get("extensions", {}).get(WRITE_FRAME),
    )

    async def revoke() -> None:
        with contextlib.suppress(Exception):
            await websocket.close(code=CLOSE_REVOKED, reason="API key revoked")

    hub.add(subscriber, revoke)
    sender = asyncio.create_task(subscriber.run())
    try:
        while True:
            receiver = asyncio.ensure_future(websocket.receive_text())
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done:
                receiver.cancel()
                if isinstance(sender.exception(), SlowConsumer):
                    DISCONNECTS.labels("slow").inc()
                    await websocket.close(code=CLOSE_SLOW, reason="too slow to keep up")
                return
            await _handle(websocket, hub, subscriber, receiver.result())
    except (WebSocketDisconnect, RuntimeError):
        pass  # the client went away (or the socket was closed under us)
    finally:
        hub.remove(subscriber)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender


async def _handle(websocket: WebSocket, hub: EventHub, subscriber: Subscriber, text: str) -> None:
    try:
        frame = json.loads(text)
    except ValueError:
        await websocket.send_json({"type": "error", "message": "frames are JSON objects"})
        return
    if not isinstance(frame, dict):
        await websocket.send_json({"type": "error", "message": "frames are JSON objects"})
        return
    kind = frame.get("type")
    if kind == "ping":
        await websocket.send_json({"type": "pong"})
        return
    if kind not in ("subscribe", "unsubscribe"):
        await websocket.send_json(
            {"type": "error", "message": "'type' must be 'subscribe', 'unsubscribe' or 'ping'"}
        )
        return
    topics = parse_topics(frame)
    if isinstance(topics, str):
        await websocket.send_json({"type": "error", "message": topics})
        return
    if kind == "subscribe":
        if not await hub.follow():  # the client reconnects later, as after any drop
            await websocket.send_json({"type": "error", "message": UNAVAILABLE})
            await websocket.close(code=CLOSE_TRY_LATER, reason="events unavailable")
            return
        subscriber.subscribe(topics)
        await websocket.send_json({"type": "subscribed", "topics": sorted(subscriber.topics)})
    else:
        subscriber.unsubscribe(topics)
        await websocket.send_json({"type": "unsubscribed", "topics": sorted(subscriber.topics)})
