"""The benchmark's minimal HTTP client: answers decoded, connections reused and retired."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bench import lean_http
from bench.lean_http import LeanHttpClient


class Server:
    """An HTTP/1.1 server that answers each request with `reply(request) -> (status, body, close)`."""

    def __init__(self, reply: Callable[[bytes], tuple[int, object, bool]]) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                status, body, close = self.reply(request)
                if status == 0:  # hang up without answering
                    writer.close()
                    return
                data = json.dumps(body).encode()
                ending = "connection: close\r\n" if close else ""
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(data)}\r\n{ending}\r\n".encode()
                    + data
                )
                await writer.drain()
                if close:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Server], Awaitable[str]]]:
    servers: list[asyncio.Server] = []

    async def start(server: Server) -> str:
        listening = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        servers.append(listening)
        return f"http://127.0.0.1:{listening.sockets[0].getsockname()[1]}"

    yield start
    for listening in servers:
        listening.close()


async def test_posts_json_and_reuses_the_connection(serve: Callable[[Server], Awaitable[str]]) -> None:
    server = Server(lambda request: (201, {"echo": json.loads(request.split(b"\r\n\r\n", 1)[1])}, False))
    async with LeanHttpClient(await serve(server)) as client:
        for i in range(3):
            status, answer = await client.post_json("/v1/runs", {"n": i}, key="k1")
            assert (status, answer) == (201, {"echo": {"n": i}})
    assert server.connections == 1
    head = server.requests[0].split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("POST /v1/runs HTTP/1.1\r\n")
    assert "authorization: Bearer k1" in head
    assert "content-type: application/json" in head


async def test_a_closed_or_idle_connection_is_not_reused(
    serve: Callable[[Server], Awaitable[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Server(lambda request: (400, {"error": "bad"}, b'"close"' in request))
    async with LeanHttpClient(await serve(server)) as client:
        assert await client.post_json("/x", "close", key="k") == (400, {"error": "bad"})
        assert await client.post_json("/x", "keep", key="k") == (400, {"error": "bad"})
        assert server.connections == 2  # the server said `connection: close`
        monkeypatch.setattr(lean_http, "IDLE_S", 0.0)
        await client.post_json("/x", "keep", key="k")
        assert server.connections == 3  # idle too long: a fresh one


async def test_a_server_hanging_up_fails_the_request(serve: Callable[[Server], Awaitable[str]]) -> None:
    server = Server(lambda request: (0, None, True))
    async with LeanHttpClient(await serve(server)) as client:
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(client.post_json("/x", {}, key="k"), timeout=5)


def test_needs_an_http_url() -> None:
    with pytest.raises(ValueError, match="http://host:port"):
        LeanHttpClient("https://example.com")
