"""`DirectOpenAI` against the OpenAI SDK client it stands in for, under pydantic-ai.

Each case runs the same exchange twice over an httpx2 mock transport (the upstream
model, scripted): once with the SDK's `AsyncOpenAI`, once with `DirectOpenAI`. The
requests that leave and what pydantic-ai makes of the answer — the output, the usage,
or the error with its type, message and status — must be the same.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel
from pydantic_ai import Agent
from pydantic_ai.messages import ModelResponse
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings

from services.agent_svc._openai_direct import DirectOpenAI

KEY = "sk-direct-test-key-0001"
BASE = "http://llm.test/v1"
# Sent by the SDK per request (its retry count and read timeout); DirectOpenAI leaves them out.
PER_REQUEST_HEADERS = {"x-stainless-retry-count", "x-stainless-read-timeout", "content-length"}

Reply = Callable[[httpx2.Request], httpx2.Response]


class Review(BaseModel):
    label: str
    score: int


def _completion(arguments: str, *, content: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "m-2025",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "final_result", "arguments": arguments},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }


def answer(arguments: object) -> Reply:
    return lambda _: httpx2.Response(200, json=_completion(json.dumps(arguments)))


def status(code: int, body: object = None, **headers: str) -> Reply:
    payload = {"error": {"message": f"failure {code}", "type": "x"}} if body is None else body
    return lambda _: httpx2.Response(code, json=payload, headers=headers)


def raw(code: int, text: str, content_type: str, **headers: str) -> Reply:
    return lambda _: httpx2.Response(code, text=text, headers={"content-type": content_type, **headers})


def fail(error: type[httpx2.TransportError]) -> Reply:
    def reply(request: httpx2.Request) -> httpx2.Response:
        raise error("the upstream went away", request=request)

    return reply


@dataclass
class Upstream:
    """The scripted model: the n-th request gets the n-th reply (the last one repeats)."""

    replies: list[Reply]
    requests: list[httpx2.Request] = field(default_factory=list)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.replies[min(len(self.requests), len(self.replies)) - 1](request)


@dataclass
class Exchange:
    """What left for the upstream and what came back, comparable between the two clients."""

    requests: list[tuple[str, str, dict[str, str], Any]]
    outcome: Any


def _request(request: httpx2.Request) -> tuple[str, str, dict[str, str], Any]:
    headers = {k: v for k, v in request.headers.items() if k not in PER_REQUEST_HEADERS}
    return request.method, str(request.url), headers, json.loads(request.content)


def _response(message: ModelResponse) -> object:
    parts = [
        (type(p).__name__, getattr(p, "tool_name", None), getattr(p, "args", None)) for p in message.parts
    ]
    return (
        parts,
        message.usage,
        message.model_name,
        message.finish_reason,
        message.provider_response_id,
        message.provider_name,
    )


def _error(exc: BaseException) -> object:
    return (type(exc), str(exc), getattr(exc, "status_code", None), getattr(exc, "body", None))


Call = Callable[[AsyncOpenAI], Awaitable[object]]


def run_agent(settings: ModelSettings | None = None, *, stream: bool = False) -> Call:
    async def call(client: AsyncOpenAI) -> object:
        model = OpenAIChatModel("m", provider=OpenAIProvider(openai_client=client))
        agent = Agent(
            model,
            name="reviewer",
            output_type=Review,
            system_prompt="Classify the review.",
            model_settings=settings,
            retries={"output": 1, "tools": 0},
        )

        async def handler(_: object, events: Any) -> None:
            async for _event in events:
                pass

        result = await agent.run("Review: lovely tea.", event_stream_handler=handler if stream else None)
        responses = [_response(m) for m in result.all_messages() if isinstance(m, ModelResponse)]
        return result.output, result.usage, responses

    return call


async def exchange(client_class: type[AsyncOpenAI], replies: list[Reply], call: Call) -> Exchange:
    upstream = Upstream(replies)
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(upstream.handle)) as http:
        client = client_class(api_key=KEY, base_url=BASE, http_client=http, max_retries=0)
        try:
            outcome = await call(client)
        except Exception as exc:
            outcome = _error(exc)
    return Exchange([_request(r) for r in upstream.requests], outcome)


@pytest.fixture
def direct_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The requests that took the direct path."""
    calls: list[dict[str, Any]] = []
    send = DirectOpenAI.direct_chat_completion

    async def spy(self: DirectOpenAI, arguments: dict[str, Any]) -> object:
        calls.append(arguments)
        return await send(self, arguments)

    monkeypatch.setattr(DirectOpenAI, "direct_chat_completion", spy)
    return calls


async def same(replies: list[Reply], call: Call) -> Exchange:
    sdk = await exchange(AsyncOpenAI, replies, call)
    direct = await exchange(DirectOpenAI, replies, call)
    assert direct.requests == sdk.requests
    assert direct.outcome == sdk.outcome
    return direct


SETTINGS: ModelSettings = {
    "temperature": 0.2,
    "max_tokens": 300,
    "top_p": 0.9,
    "seed": 7,
    "presence_penalty": 0.1,
    "frequency_penalty": 0.3,
    "stop_sequences": ["\n\n"],
    "timeout": 12.5,
}


@pytest.mark.parametrize("settings", [None, SETTINGS], ids=["defaults", "every-agent-setting"])
async def test_an_answer_is_asked_for_and_read_as_the_sdk_does(settings, direct_calls):
    result = await same([answer({"label": "positive", "score": 5})], run_agent(settings))
    assert result.outcome[0] == Review(label="positive", score=5)
    assert len(direct_calls) == 1
    assert result.requests[0][2]["authorization"] == f"Bearer {KEY}"


async def test_a_retry_conversation_is_the_same(direct_calls):
    replies = [answer({"label": "positive"}), answer({"label": "positive", "score": 4})]
    result = await same(replies, run_agent())
    assert len(result.requests) == 2 and len(direct_calls) == 2
    assert result.outcome[0] == Review(label="positive", score=4)


@pytest.mark.parametrize(
    "reply",
    [
        status(400),
        status(401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}),
        status(403),
        status(404),
        status(429, **{"retry-after": "3"}),
        status(500),
        status(503, "overloaded"),
        raw(502, "<html>bad gateway</html>", "text/html"),
        raw(302, "", "text/plain", location="http://169.254.169.254/"),
        raw(200, "<html>hello</html>", "text/html"),
        raw(200, "{not json", "application/json"),
        raw(200, '{"id": "x"}', "application/json"),
        fail(httpx2.ConnectError),
        fail(httpx2.ReadTimeout),
        fail(httpx2.RemoteProtocolError),
    ],
    ids=[
        "400",
        "401",
        "403",
        "404",
        "429",
        "500",
        "503-text-body",
        "502-html",
        "302",
        "200-html",
        "200-malformed-json",
        "200-not-a-completion",
        "refused",
        "timeout",
        "protocol-error",
    ],
)
async def test_a_failure_is_the_same_error(reply, direct_calls):
    result = await same([reply], run_agent())
    assert isinstance(result.outcome, tuple) and isinstance(result.outcome[0], type)
    assert issubclass(result.outcome[0], Exception)
    assert direct_calls


async def test_a_streamed_run_goes_through_the_sdk(direct_calls):
    arguments = json.dumps({"label": "positive", "score": 5})
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "m-2025",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "final_result", "arguments": arguments},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    sse = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
    result = await same([raw(200, sse, "text/event-stream")], run_agent(stream=True))
    assert result.outcome[0] == Review(label="positive", score=5)
    assert result.requests[0][3]["stream"] is True
    assert direct_calls == []


async def test_an_argument_it_does_not_send_itself_goes_through_the_sdk(direct_calls):
    async def call(client: AsyncOpenAI) -> object:
        completion = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], n=2, metadata={"k": "v"}
        )
        return completion.model_dump()

    result = await same([answer({"label": "x", "score": 1})], call)
    assert result.requests[0][3]["n"] == 2
    assert direct_calls == []
