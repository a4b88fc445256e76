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

Chat completions (`POST .../v1/chat/completions`) answer by calling the request's
output tool with arguments scripted per model name: `stub.script("m", [a1, a2])` makes
attempt 1 answer `a1`, attempt 2 `a2` (the attempt is read from the conversation, so
the stub is stateless). A script entry may also be an `Http(status)` failure or
`Slow(seconds, answer)`. Streaming (`"stream": true`) sends the arguments in chunks.
Chats may sit under a first path segment too (`/<any>/v1/chat/completions`): they answer
the same way; the segment only tells base URLs apart (`seen` keeps the path).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class SeenRequest:
    """One request the stub received."""

    method: str
    path: str
    authorization: str
    headers: dict[str, str]


@dataclass(frozen=True)
class Http:
    """A scripted HTTP failure."""

    status: int
    retry_after: str | None = None


@dataclass(frozen=True)
class Slow:
    """A scripted answer that takes `seconds`."""

    seconds: float
    answer: object


def _completion(model: str, tool: str, arguments: str, usage: dict[str, int]) -> dict[str, object]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": tool, "arguments": arguments},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]},
    }


@dataclass
class LlmStub:
    """The stub's state: the accepted key, the models it lists, what it saw."""

    api_key: str = "sk-stub-correct-key-0001"
    models: tuple[str, ...] = ("stub-large", "stub-small")
    slow_seconds: float = 5.0
    seen: list[SeenRequest] = field(default_factory=list)
    chats: list[dict[str, object]] = field(default_factory=list)
    scripts: dict[str, list[object]] = field(default_factory=dict)
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

    def script(self, model: str, answers: list[object]) -> None:
        """Answers of the model named `model`, one per attempt (the last one repeats)."""
        self.scripts[model] = answers

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        presented = request.headers.get("authorization", "")
        self.seen.append(
            SeenRequest(
                method="POST", path=request.url.path, authorization=presented, headers=dict(request.headers)
            )
        )
        self.chats.append(body)
        if presented != f"Bearer {self.api_key}":
            return JSONResponse(
                {
                    "error": {
                        "message": f"Incorrect API key provided: {presented}",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
                status_code=401,
            )
        model = str(body.get("model", ""))
        answers = self.scripts.get(model) or [{}]
        attempt = sum(1 for m in body.get("messages", []) if m.get("role") == "assistant")
        answer = answers[min(attempt, len(answers) - 1)]
        if isinstance(answer, Slow):
            await asyncio.sleep(answer.seconds)
            answer = answer.answer
        if isinstance(answer, Http):
            headers = {"retry-after": answer.retry_after} if answer.retry_after else {}
            return JSONResponse(
                {"error": {"message": f"stub failure {answer.status}"}}, answer.status, headers
            )
        tools = body.get("tools") or [{}]
        tool = str(tools[0].get("function", {}).get("name", "final_result"))
        arguments = json.dumps(answer)
        usage = {"prompt_tokens": 11 + attempt, "completion_tokens": 7}
        if not body.get("stream"):
            return JSONResponse(_completion(model, tool, arguments, usage))

        async def chunks() -> AsyncIterator[bytes]:
            def chunk(delta: dict[str, object], finish: str | None = None, **extra: object) -> bytes:
                payload = {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                    **extra,
                }
                return f"data: {json.dumps(payload)}\n\n".encode()

            yield chunk(
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": tool, "arguments": ""},
                        }
                    ],
                }
            )
            step = max(1, len(arguments) // 8)
            for start in range(0, len(arguments), step):
                yield chunk(
                    {"tool_calls": [{"index": 0, "function": {"arguments": arguments[start : start + step]}}]}
                )
                await asyncio.sleep(0.01)
            yield chunk({}, "tool_calls")
            final = {**usage, "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}
            last = {
                "id": "chatcmpl-stub",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [],
                "usage": final,
            }
            yield f"data: {json.dumps(last)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(
            routes=[
                Route("/v1/models", self._models),
                Route("/{mode}/v1/models", self._models),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/{mode}/v1/chat/completions", self._chat, methods=["POST"]),
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


def main() -> None:
    """Serve the stub standalone (benchmarks).

    Usage: `python -m tests.support.llm_stub PORT KEY [MODEL=JSON ...]`.
    """
    import sys

    port, key = int(sys.argv[1]), sys.argv[2]
    stub = LlmStub(api_key=key)
    for spec in sys.argv[3:]:
        model, _, answer = spec.partition("=")
        stub.script(model, [json.loads(answer)])
    uvicorn.run(stub.app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
