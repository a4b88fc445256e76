"""Provider types → pydantic-ai models (DESIGN §4, "Runs").

Hosted types use pydantic-ai's own model classes; `ollama` and `openai_compatible` go
through the OpenAI chat model with the provider's `base_url`; `test` is pydantic-ai's
`TestModel`, answering with a schema-valid example so the whole system works offline.
Every HTTP call goes through the SSRF-guarded clients (`libs.common.ssrf`), and SDK
retries are off: a provider failure ends the run at once with a clear error code.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import httpx2
from anthropic import AsyncAnthropic
from groq import AsyncGroq
from openai import AsyncOpenAI
from pydantic_ai.models import Model
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.google import GoogleModel
from pydantic_ai.models.groq import GroqModel
from pydantic_ai.models.mistral import MistralModel
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.models.test import TestModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.google import GoogleProvider
from pydantic_ai.providers.groq import GroqProvider
from pydantic_ai.providers.mistral import MistralProvider
from pydantic_ai.providers.ollama import OllamaProvider
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.settings import ModelSettings as PaiModelSettings

from libs.common.errors import FailedPrecondition
from services.agent_svc._openai_direct import DirectOpenAI
from services.agent_svc.domain import ModelSettings
from services.agent_svc.providers import ProviderCredential
from services.agent_svc.schema_compiler import CompiledSchema, example_instance

__all__ = ["HttpClients", "build_model", "model_settings"]


@dataclass(frozen=True, slots=True)
class HttpClients:
    """The guarded HTTP clients shared by every model of the process."""

    modern: httpx2.AsyncClient
    """httpx2: OpenAI, Anthropic, Google, Mistral SDKs."""
    legacy: httpx.AsyncClient
    """httpx: the Groq SDK."""


def _ollama_base(base_url: str) -> str:
    return base_url.rstrip("/").removesuffix("/v1") + "/v1"


def build_model(
    credential: ProviderCredential, model_name: str, *, schema: CompiledSchema, http: HttpClients
) -> Model:
    """The pydantic-ai model for a provider credential and a model name."""
    key, base = credential.api_key, credential.base_url or None
    match credential.type:
        case "test":
            return TestModel(custom_output_args=example_instance(schema), model_name=model_name or "test")
        case "openai":
            client = _openai(key, base, http)
            return OpenAIChatModel(model_name, provider=OpenAIProvider(openai_client=client))
        case "openai_compatible":
            # Local servers often need no key, but the SDK insists on one.
            client = _openai(key or "none", base, http)
            return OpenAIChatModel(model_name, provider=OpenAIProvider(openai_client=client))
        case "ollama":
            client = _openai(key or "ollama", _ollama_base(credential.base_url), http)
            return OpenAIChatModel(model_name, provider=OllamaProvider(openai_client=client))
        case "anthropic":
            anthropic = AsyncAnthropic(api_key=key, base_url=base, http_client=http.modern, max_retries=0)
            return AnthropicModel(model_name, provider=AnthropicProvider(anthropic_client=anthropic))
        case "google":
            return GoogleModel(
                model_name, provider=GoogleProvider(api_key=key, base_url=base, http_client=http.modern)
            )
        case "groq":
            groq = AsyncGroq(api_key=key, base_url=base, http_client=http.legacy, max_retries=0)
            return GroqModel(model_name, provider=GroqProvider(groq_client=groq))
        case "mistral":
            return MistralModel(
                model_name, provider=MistralProvider(api_key=key, base_url=base, http_client=http.modern)
            )
        case other:
            raise FailedPrecondition(f"provider type '{other}' is not supported by this agent_svc")


def _openai(key: str, base: str | None, http: HttpClients) -> AsyncOpenAI:
    return DirectOpenAI(api_key=key, base_url=base, http_client=http.modern, max_retries=0)


# SDKs built here with max_retries=0 (see build_model). Setting `max_retries` per request
# instead makes pydantic-ai copy the SDK client on every request (`with_options`), which
# costs more than a millisecond of CPU per model call.
_RETRIES_OFF_IN_CLIENT = frozenset({"openai", "openai_compatible", "ollama", "anthropic", "groq"})


def model_settings(settings: ModelSettings, provider_type: str) -> PaiModelSettings:
    """pydantic-ai settings for an agent's model settings (SDK retries off)."""
    result: PaiModelSettings = {"timeout": settings.run_timeout_s}
    if provider_type not in _RETRIES_OFF_IN_CLIENT:
        result["max_retries"] = 0
    if settings.temperature is not None:
        result["temperature"] = settings.temperature
    if settings.max_tokens is not None:
        result["max_tokens"] = settings.max_tokens
    if settings.top_p is not None:
        result["top_p"] = settings.top_p
    if settings.seed is not None:
        result["seed"] = settings.seed
    if settings.presence_penalty is not None:
        result["presence_penalty"] = settings.presence_penalty
    if settings.frequency_penalty is not None:
        result["frequency_penalty"] = settings.frequency_penalty
    if settings.stop_sequences:
        result["stop_sequences"] = list(settings.stop_sequences)
    return result
