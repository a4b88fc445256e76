"""The OpenAI SDK client agent_svc hands pydantic-ai: chat completions sent directly.

pydantic-ai's `OpenAIChatModel` asks `client.chat.completions.create(...)` with values
that are already JSON (plain dicts, lists, strings and numbers). For that one call the
SDK's generic pipeline — a recursive transform of the arguments against their
TypedDicts (which changes nothing for chat completions: none of their fields is renamed
or reformatted), per-request options, header merging, a generic response parser — costs
more CPU than the HTTP exchange itself: about a fifth of a whole run in agent_svc
(docs/performance.md, "Where a run's time goes").

`DirectOpenAI.chat.completions.create` sends the same JSON body with the same headers
over the same (SSRF-guarded) httpx client, and fails with the SDK's own exceptions, so
pydantic-ai maps errors exactly as it does for the SDK. A streamed request, or one with
an argument not listed in `_BODY_ARGUMENTS`, goes through the SDK unchanged.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import httpx2
from openai import NOT_GIVEN, APIConnectionError, APITimeoutError, AsyncOpenAI, NotGiven, Omit
from openai._models import construct_type
from openai._utils._json import openapi_dumps
from openai.resources.chat import AsyncChat, AsyncCompletions
from openai.types.chat import ChatCompletion

__all__ = ["DirectOpenAI"]

_BODY_ARGUMENTS = frozenset(
    {
        "model",
        "messages",
        "parallel_tool_calls",
        "tools",
        "tool_choice",
        "stream",
        "stop",
        "max_completion_tokens",
        "max_tokens",
        "response_format",
        "seed",
        "reasoning_effort",
        "user",
        "web_search_options",
        "service_tier",
        "prediction",
        "temperature",
        "top_p",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "store",
        "moderation",
        "verbosity",
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
    }
)
"""`create`'s arguments that go into the request body as they are."""
_OPTIONS = frozenset({"timeout", "extra_headers", "extra_body"})


def _given(value: object) -> bool:
    return not isinstance(value, Omit | NotGiven)


class DirectOpenAI(AsyncOpenAI):
    """`AsyncOpenAI` whose non-streamed chat completions skip the SDK's request pipeline."""

    @cached_property
    def chat(self) -> AsyncChat:
        return _DirectChat(self)

    @property
    def user_agent(self) -> str:
        return f"{AsyncOpenAI.__name__}/Python {self._version}"  # the SDK names its own class

    @cached_property
    def _chat_url(self) -> httpx2.URL:
        return self.base_url.join("chat/completions")

    @cached_property
    def _chat_headers(self) -> dict[str, str]:
        # What the SDK sends with every request, minus its per-request retry/timeout headers.
        headers = {name: value for name, value in self.default_headers.items() if isinstance(value, str)}
        return {**headers, **self.auth_headers}

    async def direct_chat_completion(self, arguments: dict[str, Any]) -> ChatCompletion | str:
        """POST /chat/completions as `create(**arguments)` would, without streaming."""
        body = {name: value for name, value in arguments.items() if name in _BODY_ARGUMENTS and _given(value)}
        if isinstance(extra_body := arguments.get("extra_body"), dict):
            body.update(extra_body)
        headers = httpx2.Headers(self._chat_headers)
        for name, value in (arguments.get("extra_headers") or {}).items():
            if _given(value):
                headers[name] = value
            else:  # an omitted header is not sent
                headers.pop(name, None)
        timeout = arguments.get("timeout", NOT_GIVEN)
        request = self._client.build_request(
            "POST",
            self._chat_url,
            content=openapi_dumps(body),  # the SDK's own encoding
            headers=headers,
            timeout=timeout if _given(timeout) else self.timeout,
        )
        try:
            response = await self._client.send(request)
        except httpx2.TimeoutException as exc:
            raise APITimeoutError(request=request) from exc
        except Exception as exc:  # as the SDK: any transport failure is a connection error
            raise APIConnectionError(request=request) from exc
        try:
            if not response.is_success:
                await response.aread()
                raise self._make_status_error_from_response(response)
            content_type = response.headers.get("content-type", "*").split(";")[0]
            if content_type.endswith("json"):
                data = response.json()  # a malformed body raises, as with the SDK
            else:
                try:
                    data = response.json()
                except ValueError:
                    return response.text  # as the SDK; pydantic-ai rejects it as "expected JSON data"
            completion: ChatCompletion = construct_type(type_=ChatCompletion, value=data)  # type: ignore[assignment]
            return completion
        finally:
            await response.aclose()


class _DirectChat(AsyncChat):
    def __init__(self, client: DirectOpenAI) -> None:
        super().__init__(client)
        self._direct = client

    @cached_property
    def completions(self) -> AsyncCompletions:
        return _DirectCompletions(self._direct)


class _DirectCompletions(AsyncCompletions):
    def __init__(self, client: DirectOpenAI) -> None:
        super().__init__(client)
        self._direct = client

    async def create(self, **arguments: Any) -> Any:
        direct = (
            not self._direct.default_query
            and arguments.get("stream") is not True
            and all(
                name in _BODY_ARGUMENTS or name in _OPTIONS or not _given(value)
                for name, value in arguments.items()
            )
        )
        if not direct:
            return await super().create(**arguments)
        return await self._direct.direct_chat_completion(arguments)
