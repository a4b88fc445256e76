"""One TCP send per response: uvicorn's HTTP protocol with writes coalesced per loop turn.

uvicorn writes a response's status line and headers in one `transport.write` and its
body in another, and uvloop sends each at once: two TCP segments for every JSON answer,
and a client that reads the headers, then sleeps until the body arrives. On a VM,
waking a sleeping process costs more than the gateway's JSON work (docs/performance.md).
Here the writes made during one turn of the event loop are joined and sent together at
the end of it — a response's headers and body, which uvicorn writes without yielding in
between, leave in one `send`. Nothing waits longer than the rest of the current turn.

Everything else (reading, flow control, closing) goes to the real transport, after what
is buffered was written, so the order of bytes on the wire never changes. The WebSocket
protocol that takes over a connection after an upgrade takes the real transport
(`unwrap`): it writes each frame at once (services/gateway/ws_protocol.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpProtocol", "CoalescingTransport"]


class CoalescingTransport:
    """A transport proxy whose `write`s in one loop turn become one write."""

    __slots__ = ("_buffer", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Buffer `data`; the turn's writes go out together at its end."""
        if not data:
            return
        if not self._buffer:
            self._loop.call_soon(self.flush)
        self._buffer.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        """As `write`, for each chunk."""
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what is buffered now (in one write)."""
        if not self._buffer:
            return
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        self._buffer.clear()
        if not self._transport.is_closing():
            self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        """Bytes not yet sent: the real transport's and this turn's."""
        return self._transport.get_write_buffer_size() + sum(map(len, self._buffer))

    def write_eof(self) -> None:
        """Send what is buffered, then end the stream."""
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        """Send what is buffered, then close (as `close` sends what the transport holds)."""
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        """Drop what is buffered and close at once."""
        self._buffer.clear()
        self._transport.abort()

    def unwrap(self) -> asyncio.Transport:
        """Send what is buffered and return the real transport (for a protocol taking over)."""
        self.flush()
        return self._transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `CoalescingTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Wrap the connection's transport before uvicorn sees it."""
        proxy = CoalescingTransport(transport, self.loop)
        super().connection_made(proxy)  # type: ignore[arg-type]
