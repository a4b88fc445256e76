"""The REST shapes, as published in `/openapi.json`.

Responses are the protobuf JSON mapping of the gRPC resources (snake_case names, every
field present except unset optional ones), exactly what events and the WebSocket carry;
these models document that shape. Request models are strict: an unknown field, or a
value of the wrong type, is a 400 naming the field.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Agent",
    "AgentCreate",
    "AgentList",
    "AgentUpdate",
    "ErrorBody",
    "Me",
    "ModelSettings",
    "Provider",
    "ProviderCreate",
    "ProviderList",
    "ProviderUpdate",
    "Run",
    "RunCreate",
    "RunList",
    "SchemaCheck",
    "SchemaVerdict",
    "Task",
    "TaskCreate",
    "TaskList",
    "TaskUpdate",
]

ProviderType = Literal[
    "openai", "anthropic", "google", "groq", "mistral", "ollama", "openai_compatible", "test"
]
ValidationStatus = Literal[
    "unknown",
    "pending",
    "valid",
    "auth_failed",
    "unreachable",
    "rate_limited",
    "timeout",
    "unexpected_response",
]
RunStatus = Literal["queued", "running", "succeeded", "failed"]
Timestamp = Annotated[str, Field(description="RFC 3339, UTC", json_schema_extra={"format": "date-time"})]
JsonObject = dict[str, Any]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
Name = Annotated[str, Field(pattern=_NAME, description="unique in the project: 1-63 of a-z, 0-9, '-'")]
ProjectName = Annotated[str, Field(pattern=r"^$|" + _NAME, description="`default` when empty")]
Version = Annotated[int, Field(ge=0, le=2**31 - 1, description="0: the current version")]


def _bad_value(value: object, path: str, depth: int = 0) -> tuple[str, str] | None:
    """The first value a JSON body may not carry: lone surrogates, NUL, NaN/Infinity."""
    if depth > 64:
        return path, "is nested too deeply"
    if isinstance(value, str):
        if "\x00" in value:
            return path, "must not contain NUL characters"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, "is not valid Unicode (a lone surrogate)"
    elif isinstance(value, float) and not math.isfinite(value):
        return path, "must be a finite number"
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _bad_value(key, path, depth + 1) or _bad_value(
                item, f"{path}.{key}" if path else str(key), depth + 1
            )
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _bad_value(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
    return None


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _plain_json(cls, data: object) -> object:
        # Values protobuf cannot encode or PostgreSQL cannot store are refused here,
        # naming the field, instead of failing deeper with an internal error.
        found = _bad_value(data, "")
        if found:
            raise ValueError(f"{found[0] or 'body'} {found[1]}")
        return data


# --- errors ------------------------------------------------------------------------


class ErrorDetail(_Out):
    """One detail of an error: the reason, a bad field, or when to retry."""

    type: Literal["error_info", "field_violation", "retry_info"]
    reason: str | None = None
    domain: str | None = None
    metadata: dict[str, str] | None = None
    field: str | None = None
    description: str | None = None
    retry_after_s: float | None = None


class ErrorInfo(_Out):
    """What went wrong."""

    code: str = Field(description="the gRPC code name, e.g. INVALID_ARGUMENT")
    message: str
    details: list[ErrorDetail]


class ErrorBody(_Out):
    """The body of every error response."""

    error: ErrorInfo


class Me(_Out):
    """The calling API key."""

    key_id: str
    project: str = Field(description="the project it grants, or * for all")
    role: Literal["admin", "viewer", "service"]


# --- providers ---------------------------------------------------------------------


class ProviderValidation(_Out):
    """What the latest background validation found."""

    status: ValidationStatus
    detail: str
    checked_time: Timestamp | None = None
    models: list[str]


class Provider(_Out):
    """An LLM provider; its API key is never returned, only `api_key_hint`."""

    id: str
    project: str
    name: str
    type: ProviderType
    base_url: str
    api_key_hint: str
    config: JsonObject
    validation: ProviderValidation
    create_time: Timestamp
    update_time: Timestamp
    etag: str


class ProviderCreate(_In):
    """A provider to create."""

    name: Name
    type: ProviderType
    project: ProjectName = ""
    base_url: str = ""
    api_key: str = Field(default="", description="write-only; stored encrypted")
    config: JsonObject = Field(default_factory=dict)
    request_id: str = Field(default="", description="makes a retry idempotent")


class ProviderUpdate(_In):
    """The fields to change (present fields only); `etag` guards against lost updates."""

    name: Name | None = None
    type: ProviderType | None = None
    base_url: str | None = None
    api_key: str | None = Field(default=None, description="write-only; empty clears the key")
    config: JsonObject | None = None
    etag: str | None = None


class ProviderList(_Out):
    """A page of providers."""

    providers: list[Provider]
    next_page_token: str


# --- agents ------------------------------------------------------------------------


class ModelSettings(BaseModel):
    """Generation settings; unset ones use the provider's defaults."""

    model_config = ConfigDict(extra="forbid", strict=True)

    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    top_p: float | None = Field(default=None, ge=0, le=1)
    timeout_s: float | None = Field(default=None, ge=0.1, le=600)
    seed: Int32 | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    stop_sequences: list[str] = Field(default_factory=list)


class Agent(_Out):
    """One version of an agent."""

    id: str
    project: str
    name: str
    description: str
    provider_id: str
    model: str
    system_prompt: str
    model_settings: ModelSettings
    output_retries: int
    labels: dict[str, str]
    version: int
    create_time: Timestamp
    update_time: Timestamp
    etag: str


class AgentCreate(_In):
    """An agent to create."""

    name: Name
    provider_id: str
    model: str
    project: ProjectName = ""
    description: str = ""
    system_prompt: str = ""
    model_settings: ModelSettings = Field(default_factory=ModelSettings)
    output_retries: Int32 | None = Field(default=None, description="0-10, default 2")
    labels: dict[str, str] = Field(default_factory=dict)
    request_id: str = ""


class AgentUpdate(_In):
    """The fields to change (present fields only); each change makes a new version."""

    name: Name | None = None
    description: str | None = None
    provider_id: str | None = None
    model: str | None = None
    system_prompt: str | None = None
    model_settings: ModelSettings | None = None
    output_retries: Int32 | None = None
    labels: dict[str, str] | None = None
    etag: str | None = None


class AgentList(_Out):
    """A page of agents (or of one agent's versions)."""

    agents: list[Agent]
    next_page_token: str


# --- tasks -------------------------------------------------------------------------


class Task(_Out):
    """One version of a task."""

    id: str
    project: str
    name: str
    description: str
    instructions: str
    prompt_template: str
    response_schema: JsonObject
    variables: list[str]
    version: int
    create_time: Timestamp
    update_time: Timestamp
    etag: str


class TaskCreate(_In):
    """A task to create."""

    name: Name
    response_schema: JsonObject
    project: ProjectName = ""
    description: str = ""
    instructions: str = ""
    prompt_template: str = ""
    request_id: str = ""


class TaskUpdate(_In):
    """The fields to change (present fields only); each change makes a new version."""

    name: Name | None = None
    description: str | None = None
    instructions: str | None = None
    prompt_template: str | None = None
    response_schema: JsonObject | None = None
    etag: str | None = None


class TaskList(_Out):
    """A page of tasks (or of one task's versions)."""

    tasks: list[Task]
    next_page_token: str


class SchemaCheck(_In):
    """A schema to check without saving."""

    response_schema: JsonObject


class SchemaIssue(_Out):
    """A problem or caveat at a JSON pointer."""

    pointer: str
    message: str
    provider_types: list[str]


class SchemaVerdict(_Out):
    """What a save would say, plus provider caveats."""

    valid: bool
    errors: list[SchemaIssue]
    warnings: list[SchemaIssue]
    schema_hash: str


# --- runs --------------------------------------------------------------------------


class RunError(_Out):
    """Why a run failed."""

    code: str
    message: str


class Usage(_Out):
    """What a run consumed."""

    requests: int
    input_tokens: int
    output_tokens: int


class Run(_Out):
    """A run; `output` validates against the pinned task version's schema."""

    id: str
    project: str
    agent_id: str
    agent_version: int
    task_id: str
    task_version: int
    variables: JsonObject
    prompt: str
    status: RunStatus
    output: JsonObject | None = None
    error: RunError | None = None
    usage: Usage
    attempts: int
    latency_ms: int
    create_time: Timestamp
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None


class RunCreate(_In):
    """A run to make. `wait: false` returns at once (202) with the queued run."""

    agent_id: str
    task_id: str
    agent_version: Version = 0
    task_version: Version = 0
    variables: JsonObject = Field(default_factory=dict)
    prompt: str = ""
    wait: bool = True
    request_id: str = ""


class RunList(_Out):
    """A page of runs, newest first."""

    runs: list[Run]
    next_page_token: str
