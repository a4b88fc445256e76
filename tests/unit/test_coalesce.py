"""`CoalescingTransport`: a loop turn's writes leave in one send, in order, never lost."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from services.gateway.coalesce import CoalescingTransport

pytestmark = pytest.mark.asyncio


class _Transport:
    """Records what reaches the socket."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closing = False
        self.events: list[str] = []
        self.extra = {"peername": ("127.0.0.1", 1234)}

    def write(self, data: bytes) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.events.append("close")
        self.closing = True

    def abort(self) -> None:
        self.events.append("abort")
        self.closing = True

    def write_eof(self) -> None:
        self.events.append("eof")

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


def _proxy() -> tuple[CoalescingTransport, _Transport]:
    real = _Transport()
    return CoalescingTransport(cast(asyncio.Transport, real), asyncio.get_running_loop()), real


async def _next_turn() -> None:
    await asyncio.sleep(0)


async def test_headers_and_body_written_in_one_turn_leave_in_one_send():
    proxy, real = _proxy()
    proxy.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    proxy.write(b"{}")
    assert real.sent == []  # nothing before the turn ends
    assert proxy.get_write_buffer_size() == 7 + 40
    await _next_turn()
    assert real.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


async def test_each_turn_sends_its_own_writes_in_order():
    proxy, real = _proxy()
    proxy.write(b"one")
    await _next_turn()
    proxy.writelines([b"two", bytearray(b"three"), memoryview(b"four")])
    proxy.write(b"")  # nothing to send, nothing scheduled for it
    await _next_turn()
    await _next_turn()
    assert real.sent == [b"one", b"twothreefour"]


async def test_close_and_eof_send_what_is_buffered_first():
    proxy, real = _proxy()
    proxy.write(b"last words")
    proxy.close()
    assert real.sent == [b"last words"] and real.events == ["close"]
    await _next_turn()  # the scheduled flush finds nothing left
    assert real.sent == [b"last words"]

    proxy, real = _proxy()
    proxy.write(b"tail")
    proxy.write_eof()
    assert real.sent == [b"tail"] and real.events == ["eof"]


async def test_abort_drops_the_buffer_and_nothing_is_written_to_a_closing_transport():
    proxy, real = _proxy()
    proxy.write(b"never sent")
    proxy.abort()
    await _next_turn()
    assert real.sent == [] and real.events == ["abort"]

    proxy, real = _proxy()
    proxy.write(b"too late")
    real.closing = True  # the peer went away meanwhile
    await _next_turn()
    assert real.sent == []


async def test_everything_else_goes_to_the_real_transport():
    proxy, real = _proxy()
    assert proxy.get_extra_info("peername") == ("127.0.0.1", 1234)
    assert proxy.is_closing() is False
    real.closing = True
    assert proxy.is_closing() is True
