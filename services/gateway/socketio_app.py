"""`/socket.io`: the same topics for Socket.IO clients (python-socketio in the same app).

Connect with `auth={"api_key": ...}` (or `?api_key=`); emit `subscribe` / `unsubscribe`
with `{"topics": [...]}` (acknowledged with the current topics, or `{"error": ...}`);
receive `event` messages `{"topic", "event"}`. Same project filtering, pacing,
coalescing and slow-client policy as the WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs

import socketio

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

__all__ = ["SocketIOBridge"]

_MAX_QUEUED = 200


class SocketIOBridge:
    """A python-socketio server whose clients are hub subscribers."""

    def __init__(self, *, keys: KeyStore, hub: EventHub, settings: GatewaySettings) -> None:
        self._keys = keys
        self._hub = hub
        self._settings = settings
        self.server = socketio.AsyncServer(
            async_mode="asgi",
            cors_allowed_origins=settings.origins() or [],
            max_http_buffer_size=settings.ws_max_frame_bytes,
            logger=False,
            engineio_logger=False,
        )
        self._subscribers: dict[str, Subscriber] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.server.on("connect", self._connect)
        self.server.on("disconnect", self._disconnect)
        self.server.on("subscribe", self._subscribe)
        self.server.on("unsubscribe", self._unsubscribe)

    def asgi(self, other: object) -> socketio.ASGIApp:
        """The ASGI app: Socket.IO at /socket.io, everything else to `other`."""
        return socketio.ASGIApp(self.server, other_asgi_app=other, socketio_path="socket.io")

    def _queued(self, sid: str) -> int:
        # Engine.IO queues outgoing packets without bound; look at the queue to spot a
        # client that stopped reading.
        eio_sid = self.server.manager.eio_sid_from_sid(sid, "/")
        socket = self.server.eio.sockets.get(eio_sid) if eio_sid else None
        queue = getattr(socket, "queue", None)
        return int(queue.qsize()) if queue is not None else 0

    async def _connect(self, sid: str, environ: dict[str, object], auth: object = None) -> None:
        key = ""
        if isinstance(auth, dict):
            key = str(auth.get("api_key") or "")
        if not key:
            query = parse_qs(str(environ.get("QUERY_STRING", "")))
            key = (query.get("api_key") or [""])[0]
        try:
            principal = self._keys.authenticate(key)
        except DomainError as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.message) from None

        async def send(item: Outgoing) -> None:
            if self._queued(sid) > _MAX_QUEUED:
                raise SlowConsumer("slow consumer: the Socket.IO queue is full")
            await self.server.emit("event", {"topic": item.topic, "event": item.event}, to=sid)

        settings = self._settings
        subscriber = Subscriber(
            principal=principal,
            api_key=key,
            send=send,
            transport="socketio",
            rate=settings.ws_rate_per_topic,
            max_pending=settings.ws_max_pending,
            send_timeout_s=settings.ws_send_timeout_s,
        )
        self._subscribers[sid] = subscriber

        async def revoke() -> None:
            await self.server.disconnect(sid)

        self._hub.add(subscriber, revoke)
        self._tasks[sid] = asyncio.create_task(self._pump(sid, subscriber))

    async def _pump(self, sid: str, subscriber: Subscriber) -> None:
        try:
            await subscriber.run()
        except SlowConsumer:
            DISCONNECTS.labels("slow").inc()
            await self.server.disconnect(sid)

    async def _disconnect(self, sid: str, reason: object = None) -> None:
        subscriber = self._subscribers.pop(sid, None)
        if subscriber is not None:
            self._hub.remove(subscriber)
        task = self._tasks.pop(sid, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _subscribe(self, sid: str, data: object) -> dict[str, object]:
        subscriber = self._subscribers.get(sid)
        topics = parse_topics(data)
        if subscriber is None or isinstance(topics, str):
            return {"error": topics if isinstance(topics, str) else "not connected"}
        if not await self._hub.follow():
            return {"error": UNAVAILABLE}
        subscriber.subscribe(topics)
        return {"topics": sorted(subscriber.topics)}

    async def _unsubscribe(self, sid: str, data: object) -> dict[str, object]:
        subscriber = self._subscribers.get(sid)
        topics = parse_topics(data)
        if subscriber is None or isinstance(topics, str):
            return {"error": topics if isinstance(topics, str) else "not connected"}
        subscriber.unsubscribe(topics)
        return {"topics": sorted(subscriber.topics)}
