"""A local OpenAI-compatible HTTP server for tests.

Faked because a real LLM provider cannot run here; everything between agentmgr and
this server (HTTP, TLS-less TCP, the SSRF guard, timeouts) is real. The first path
segment picks a behaviour, so one server covers every case:

- `/v1/...`            normal: checks the bearer key
- `/slow/v1/...`       answers after `slow_seconds`
- `/ratelimited/v1/...` 429 with Retry-After
- `/broken/v1/...`     500
- `/html/v1/...`       200 with a non-JSON body
- `/redirect/v1/...`   302 to the metadata address
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route


@dataclass
class SeenRequest:
    """One request the stub received."""

    method: str
    path: str
    authorization: str
    headers: dict[str, str]


@dataclass
class LlmStub:
    """The stub's state: the accepted key, the models it lists, what it saw."""

    api_key: str = "sk-stub-correct-key-0001"
    models: tuple[str, ...] = ("stub-large", "stub-small")
    slow_seconds: float = 5.0
    seen: list[SeenRequest] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    def url(self, mode: str = "") -> str:
        """Base URL (ending in /v1) for a behaviour."""
        prefix = f"/{mode}" if mode else ""
        return f"http://127.0.0.1:{self.port}{prefix}/v1"

    async def _models(self, request: Request) -> Response:
        mode = request.path_params.get("mode", "")
        self.seen.append(
            SeenRequest(
                method=request.method,
                path=request.url.path,
                authorization=request.headers.get("authorization", ""),
                headers=dict(request.headers),
            )
        )
        if mode == "slow":
            await asyncio.sleep(self.slow_seconds)
        if mode == "ratelimited":
            return JSONResponse(
                {"error": {"message": "slow down"}}, status_code=429, headers={"retry-after": "1"}
            )
        if mode == "broken":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        if mode == "html":
            return PlainTextResponse("<html>hello</html>", media_type="text/html")
        if mode == "redirect":
            return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=302)
        presented = request.headers.get("authorization", "")
        if presented != f"Bearer {self.api_key}":
            # Like real providers, echo the bad key back: agentmgr must never repeat a body.
            return JSONResponse(
                {"error": {"message": f"Incorrect API key provided: {presented.removeprefix('Bearer ')}"}},
                status_code=401,
            )
        return JSONResponse({"object": "list", "data": [{"id": m, "object": "model"} for m in self.models]})

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(
            routes=[
                Route("/v1/models", self._models),
                Route("/{mode}/v1/models", self._models),
            ]
        )

    async def start(self) -> None:
        """Serve on a free loopback port in this event loop."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            self._server.force_exit = True
            await self._task
