"""uvicorn's WebSocket protocol, with a way to write one prepared frame to many clients.

An event fanned out to 1,000 clients is the same WebSocket frame 1,000 times: the
server's frames are not masked, and without compression (`WS_COMPRESSION`, off by
default) nothing in a frame depends on the connection. So the hub encodes each event's
frame once (`text_frame`), and a connection that can take it now is written to at
once from the hub's callback (`FrameWriter`): no task wake-up, no ASGI message, no
per-client encoding. Measured per delivered message on the development machine, this
is what the fan-out latency is made of (docs/performance.md, "Event fan-out").

A connection that cannot take a frame now — compression negotiated, its write buffer
over the high-water mark, closing — says so, and the event goes the ordinary way
(the client's sender task and `websocket.send`), where waiting is paced and timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

from services.gateway.coalesce import CoalescingTransport

__all__ = ["WRITE_FRAME", "FanoutWebSocketProtocol", "FrameWriter", "text_frame"]

WRITE_FRAME = "agentmgr.websocket.write_frame"
"""The ASGI scope extension holding the connection's `FrameWriter`."""

FrameWriter = Callable[[bytes], bool]
"""Writes a frame from `text_frame` now and returns True, or returns False if it cannot."""


def text_frame(payload: bytes) -> bytes:
    """A complete, unmasked, uncompressed WebSocket text frame carrying `payload` (UTF-8)."""
    return Frame(Opcode.TEXT, payload).serialize(mask=False)


class FanoutWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's default (websockets sans-I/O) protocol; its scope offers a `FrameWriter`."""

    def connection_made(self, transport: asyncio.BaseTransport | CoalescingTransport) -> None:
        """Write straight to the socket, not through the HTTP side's per-turn coalescing.

        After an upgrade uvicorn hands over the transport the HTTP protocol wrote to —
        the coalescing proxy, which would hold every frame until the end of the loop
        turn (a scheduled callback per frame, per client).
        """
        super().connection_made(
            transport.unwrap() if isinstance(transport, CoalescingTransport) else transport
        )

    def handle_connect(self, event: Request) -> None:
        """As uvicorn's, and the accepted connection's scope gets the frame writer."""
        super().handle_connect(event)
        if self.response.status_code == 101:
            extensions = cast(dict[str, object], self.scope["extensions"])
            extensions[WRITE_FRAME] = self.write_frame

    def write_frame(self, frame: bytes) -> bool:
        """Write `frame` now if the connection is open, uncompressed and not backed up."""
        if (
            self.close_sent
            or self.disconnected
            or not self.handshake_complete
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.conn.extensions
            or self.conn.state is not State.OPEN
        ):
            return False
        self.transport.write(frame)
        return True
