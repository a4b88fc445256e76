"""A minimal HTTP/1.1 client for the load generator, to measure what the gateway adds.

"Gateway adds" is `POST /v1/runs` p50 minus `CreateRun` p50. Both paths share the gRPC
hop to agent_svc (the gateway calls it with the same grpc client the gRPC load uses), so
the difference is the HTTP hop, the gateway's own work — and whatever the HTTP client
library spends on a request of its own. At concurrency 1 that last part is large:
aiohttp, a typical client, makes a request 0.6-1 ms slower than this client on this VM
(docs/performance.md, "How the gateway is measured"). So `make bench` runs both: this
client for the gateway's share, and aiohttp for what a typical client sees.

This client is httptools' parser (the C parser uvicorn uses) on an asyncio protocol,
with keep-alive connections reused from a pool. It sends the headers a typical client
sends, so the gateway parses as much as it would for aiohttp. It is a load generator:
`Content-Length` bodies only (what the gateway sends), one request at a time per
connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import httptools

__all__ = ["LeanHttpClient"]

IDLE_S = 3.0
"""Connections idle longer are not reused: uvicorn closes them after 5 s, and a POST
sent on a connection being closed would fail (it is not retried: not idempotent)."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; `request` sends bytes and awaits the whole response."""

    def __init__(self) -> None:
        self.transport: asyncio.BaseTransport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._body: list[bytes] = []
        self._waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False
        self.used_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop calls this a loop turn after create_connection

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionError("the server closed the connection"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._body = []

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            status = self._parser.get_status_code()
            self._waiter.set_result((status, b"".join(self._body), self._parser.should_keep_alive()))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    async def request(self, data: bytes) -> tuple[int, bytes, bool]:
        """Send a whole request; the status, the body and whether to keep the connection."""
        self._waiter = asyncio.get_running_loop().create_future()
        cast(asyncio.WriteTransport, self.transport).write(data)
        return await self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class LeanHttpClient:
    """`POST` JSON to one server over pooled keep-alive connections."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or url.hostname is None or url.port is None:
            raise ValueError(f"need http://host:port, not {base_url!r}")
        self._host, self._port = url.hostname, url.port
        self._idle: list[_Connection] = []

    async def post_json(self, path: str, body: object, *, key: str) -> tuple[int, Any]:
        """POST `body` as JSON with the API key; the status and the decoded answer."""
        payload = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\n"
            f"host: {self._host}:{self._port}\r\n"
            "user-agent: agentmgr-bench\r\n"
            "accept: */*\r\n"
            "accept-encoding: gzip, deflate\r\n"
            "content-type: application/json\r\n"
            f"authorization: Bearer {key}\r\n"
            f"content-length: {len(payload)}\r\n\r\n"
        ).encode()
        connection = await self._connection()
        try:
            status, answer, keep_alive = await connection.request(head + payload)
        except BaseException:
            connection.close()
            raise
        if keep_alive:
            connection.used_at = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return status, json.loads(answer) if answer else None

    async def _connection(self) -> _Connection:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed and now - connection.used_at < IDLE_S:
                return connection
            connection.close()
        transport, connection = await asyncio.get_running_loop().create_connection(
            _Connection, self._host, self._port
        )
        connection.transport = transport
        return connection

    async def close(self) -> None:
        """Close the idle connections."""
        while self._idle:
            self._idle.pop().close()

    async def __aenter__(self) -> LeanHttpClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
