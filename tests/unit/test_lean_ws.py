"""The fan-out benchmark's minimal WebSocket client, against the `websockets` library's server."""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.frames import Frame, Opcode

from bench import lean_ws


def _frame(opcode: Opcode, payload: bytes) -> bytes:
    return Frame(opcode, payload).serialize(mask=False)


def test_frames_are_taken_apart_across_chunks_with_the_time_of_the_chunk_that_completed_them():
    short, medium, long = b"a" * 10, b"b" * 300, b"c" * 70_000  # 7-bit, 16-bit and 64-bit lengths
    wire = _frame(Opcode.TEXT, short) + _frame(Opcode.PING, b"") + _frame(Opcode.TEXT, medium)
    wire += _frame(Opcode.TEXT, long)
    cut = [1, 13, 20, len(wire) - 3]  # in the first header, after the ping's first byte, in two payloads
    pieces = [wire[a:b] for a, b in zip([0, *cut], [*cut, len(wire)], strict=True)]
    chunks = [(float(i), piece) for i, piece in enumerate(pieces)]
    assert lean_ws.frames(chunks) == [(1.0, short), (3.0, medium), (4.0, long)]
    assert lean_ws.frames([(0.0, wire[:-1])])[-1] == (0.0, medium), "an incomplete frame waits"
    with pytest.raises(ValueError, match="masked"):
        lean_ws.frames([(0.0, Frame(Opcode.TEXT, short).serialize(mask=True))])


async def test_the_client_upgrades_sends_a_frame_and_keeps_what_arrives():
    async def echo_three_sizes(connection: ServerConnection) -> None:
        message = await connection.recv()
        assert isinstance(message, str)
        for size in (1, 200, 70_000):
            await connection.send(message * size)
        await connection.wait_closed()

    async with serve(echo_three_sizes, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        catcher = await lean_ws.connect("127.0.0.1", port, "/feed?x=1")
        catcher.send_text("hi")
        await asyncio.wait_for(catcher.first_frame, 5)
        for _ in range(100):
            if sum(len(data) for _, data in catcher.chunks) >= 2 * (1 + 200 + 70_000):
                break
            await asyncio.sleep(0.01)
        assert [payload for _, payload in lean_ws.frames(catcher.chunks)] == [
            b"hi",
            b"hi" * 200,
            b"hi" * 70_000,
        ]
        assert catcher.transport is not None
        catcher.transport.close()


async def test_a_refused_upgrade_is_an_error():
    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(ConnectionError, match="401"):
            await lean_ws.connect("127.0.0.1", port, "/v1/ws")
