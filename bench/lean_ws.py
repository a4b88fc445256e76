"""A minimal WebSocket client for the fan-out benchmark: it notes when bytes arrive, and
reads them afterwards.

In `make bench` 1,000 clients live in four processes on the two cores the gateway
uses. A client library's per-message work (aiohttp: ~50 µs of CPU per event, with the
JSON and the timestamp parsed — more than the gateway spends sending it) is then paid
in series: the 250th client of a process receives late because 249 frames were parsed
before it, and the gateway loses the CPU to its own load generator. Real clients are
1,000 separate machines. This client only stamps each chunk it receives with the time
(`data_received`, one callback per read) and keeps it; frames are taken apart after
the measurement (`frames`). What it measures is commit → the bytes are in the client's
process, which is the gateway's share of the latency.

The handshake is the standard one (RFC 6455): a `GET` with `Upgrade: websocket`, then a
`101`. The client sends one masked text frame (the subscription) and never answers the
server's pings: a run is shorter than the gateway's ping interval plus its timeout.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import cast

__all__ = ["FrameCatcher", "connect", "frames"]


class FrameCatcher(asyncio.Protocol):
    """One connection: the handshake, then every chunk received with its arrival time."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future[None] = loop.create_future()
        """Resolved by the `101` (or failed by anything else)."""
        self.first_frame: asyncio.Future[None] = loop.create_future()
        """Resolved when the first bytes after the handshake arrive (the subscription's acknowledgement)."""
        self.chunks: list[tuple[float, bytes]] = []
        """What arrived after the handshake: (time.time(), bytes), in order."""
        self._head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (uvloop's is not an `asyncio.Transport` subclass, but is one)."""
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        """Stamp and keep what arrived; nothing else, so that a client costs its process little."""
        if self.upgraded.done():
            self.chunks.append((time.time(), data))
            if not self.first_frame.done():
                self.first_frame.set_result(None)
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            return
        status = self._head.split(b"\r\n", 1)[0]
        if not status.startswith(b"HTTP/1.1 101"):
            self.upgraded.set_exception(ConnectionError(f"WebSocket upgrade refused: {status.decode()}"))
            return
        rest, self._head = self._head[end + 4 :], b""
        self.upgraded.set_result(None)
        if rest:
            self.data_received(rest)

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail whoever still waits: for the handshake, or (after it) for the first frame."""
        closed = ConnectionError("the connection closed")
        if not self.upgraded.done():
            self.upgraded.set_exception(closed)
        elif self.upgraded.exception() is None and not self.first_frame.done():
            self.first_frame.set_exception(closed)

    def send_text(self, text: str) -> None:
        """Send one text frame (masked, as a client must; the all-zero mask leaves the bytes as they are)."""
        payload = text.encode()
        length = len(payload)
        if length < 126:
            header = bytes((0x81, 0x80 | length))
        elif length < 1 << 16:
            header = bytes((0x81, 0x80 | 126)) + length.to_bytes(2, "big")
        else:
            header = bytes((0x81, 0x80 | 127)) + length.to_bytes(8, "big")
        assert self.transport is not None
        self.transport.write(header + b"\0\0\0\0" + payload)


async def connect(host: str, port: int, target: str) -> FrameCatcher:
    """Open a WebSocket to `ws://host:port{target}` (a path with its query)."""
    loop = asyncio.get_running_loop()
    transport, catcher = await loop.create_connection(FrameCatcher, host, port)
    catcher.transport = transport  # uvloop calls `connection_made` a loop turn later
    key = base64.b64encode(os.urandom(16)).decode()
    catcher.transport.write(
        (
            f"GET {target} HTTP/1.1\r\nhost: {host}:{port}\r\nupgrade: websocket\r\n"
            f"connection: Upgrade\r\nsec-websocket-key: {key}\r\nsec-websocket-version: 13\r\n\r\n"
        ).encode()
    )
    await catcher.upgraded
    return catcher


def frames(chunks: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """The text frames in `chunks` (server frames: unmasked), each with the arrival time of
    the chunk that completed it. Control and binary frames are skipped."""
    buffer = bytearray()
    found: list[tuple[float, bytes]] = []
    for stamp, data in chunks:
        buffer += data
        while len(buffer) >= 2:
            opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
            if buffer[1] & 0x80:
                raise ValueError("a server frame must not be masked")
            start = {126: 4, 127: 10}.get(length, 2)
            if len(buffer) < start:
                break
            if start > 2:
                length = int.from_bytes(buffer[2:start], "big")
            if len(buffer) < start + length:
                break
            if opcode == 0x1:
                found.append((stamp, bytes(buffer[start : start + length])))
            del buffer[: start + length]
    return found
