"""Agents, tasks and runs: the resources, their rules, and prompt templates (DESIGN §2, §4)."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from libs.common.errors import InvalidArgument
from libs.common.etag import compute_etag
from libs.common.jsonvalue import JsonObject, JsonValue

__all__ = [
    "PROMPT_MAX_CHARS",
    "TEXT_MAX_CHARS",
    "Agent",
    "ModelSettings",
    "Run",
    "RunError",
    "RunErrorCode",
    "RunStatus",
    "Task",
    "Usage",
    "render_prompt",
    "template_variables",
]

TEXT_MAX_CHARS = 100_000
"""System prompts, instructions and templates."""
PROMPT_MAX_CHARS = 100_000
"""A run's prompt, and its rendered template."""
VARIABLES_MAX_BYTES = 100_000
DESCRIPTION_MAX_CHARS = 2_000
MODEL_MAX_CHARS = 200
LABELS_MAX = 32


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSettings:
    """Generation settings; None leaves the provider's default."""

    temperature: float | None = None
    """0-2."""
    max_tokens: int | None = None
    """1-1,000,000."""
    top_p: float | None = None
    """0-1."""
    timeout_s: float | None = None
    """Bound on the whole run (0.1-600 s); DEFAULT_TIMEOUT_S when unset."""
    seed: int | None = None
    """Reproducible sampling where supported."""
    presence_penalty: float | None = None
    """-2 to 2."""
    frequency_penalty: float | None = None
    """-2 to 2."""
    stop_sequences: tuple[str, ...] = ()
    """At most 8."""

    DEFAULT_TIMEOUT_S = 60.0

    def checked(self, *, field_path: str) -> ModelSettings:
        """Self, or INVALID_ARGUMENT naming the out-of-range setting."""
        ranges: dict[str, tuple[float, float]] = {
            "temperature": (0.0, 2.0),
            "max_tokens": (1, 1_000_000),
            "top_p": (0.0, 1.0),
            "timeout_s": (0.1, 600.0),
            "seed": (-(2**31), 2**31 - 1),
            "presence_penalty": (-2.0, 2.0),
            "frequency_penalty": (-2.0, 2.0),
        }
        for name, (low, high) in ranges.items():
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or not low <= value <= high):
                raise InvalidArgument.for_field(
                    f"{field_path}.{name}", f"must be between {low:g} and {high:g}"
                )
        if len(self.stop_sequences) > 8 or any(not s or len(s) > 100 for s in self.stop_sequences):
            raise InvalidArgument.for_field(
                f"{field_path}.stop_sequences", "at most 8 non-empty sequences of at most 100 characters"
            )
        return self

    def to_json(self) -> JsonObject:
        """Stored form (unset settings left out)."""
        values: JsonObject = {}
        for name in (
            "temperature",
            "max_tokens",
            "top_p",
            "timeout_s",
            "seed",
            "presence_penalty",
            "frequency_penalty",
        ):
            value = getattr(self, name)
            if value is not None:
                values[name] = value
        if self.stop_sequences:
            values["stop_sequences"] = list(self.stop_sequences)
        return values

    @classmethod
    def from_json(cls, value: Mapping[str, object]) -> ModelSettings:
        """Parse the stored form."""

        def number(name: str) -> float | None:
            raw = value.get(name)
            return float(raw) if isinstance(raw, (int, float)) else None

        def integer(name: str) -> int | None:
            raw = value.get(name)
            return int(raw) if isinstance(raw, (int, float)) else None

        stops = value.get("stop_sequences") or []
        return cls(
            temperature=number("temperature"),
            max_tokens=integer("max_tokens"),
            top_p=number("top_p"),
            timeout_s=number("timeout_s"),
            seed=integer("seed"),
            presence_penalty=number("presence_penalty"),
            frequency_penalty=number("frequency_penalty"),
            stop_sequences=tuple(str(s) for s in stops) if isinstance(stops, list) else (),
        )

    @property
    def run_timeout_s(self) -> float:
        """The bound on a whole run."""
        return self.timeout_s if self.timeout_s is not None else self.DEFAULT_TIMEOUT_S


@dataclass(frozen=True, slots=True, kw_only=True)
class Agent:
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
    labels: Mapping[str, str]
    version: int
    create_time: dt.datetime
    update_time: dt.datetime

    @property
    def etag(self) -> str:
        """Opaque tag of this version."""
        return compute_etag(self.id, self.version)


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One version of a task."""

    id: str
    project: str
    name: str
    description: str
    instructions: str
    prompt_template: str
    response_schema: JsonObject
    schema_hash: str
    version: int
    create_time: dt.datetime
    update_time: dt.datetime

    @property
    def etag(self) -> str:
        """Opaque tag of this version."""
        return compute_etag(self.id, self.version)

    @property
    def variables(self) -> tuple[str, ...]:
        """The placeholders of the prompt template, in order of first use."""
        return template_variables(self.prompt_template)


class RunStatus(enum.StrEnum):
    """Where a run is."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @classmethod
    def parse(cls, value: str, *, field_path: str) -> RunStatus:
        """The status named `value`, or INVALID_ARGUMENT listing the choices."""
        try:
            return cls(value)
        except ValueError:
            raise InvalidArgument.for_field(
                field_path, "must be one of " + ", ".join(s.value for s in cls)
            ) from None


class RunErrorCode(enum.StrEnum):
    """Why a run failed; stable, for programs to branch on."""

    PROVIDER_AUTH_FAILED = "PROVIDER_AUTH_FAILED"
    PROVIDER_RATE_LIMITED = "PROVIDER_RATE_LIMITED"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    PROVIDER_TIMEOUT = "PROVIDER_TIMEOUT"
    PROVIDER_UNREACHABLE = "PROVIDER_UNREACHABLE"
    PROVIDER_REJECTED = "PROVIDER_REJECTED"
    PROVIDER_NOT_FOUND = "PROVIDER_NOT_FOUND"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    OUTPUT_INVALID = "OUTPUT_INVALID"
    RUN_TIMEOUT = "RUN_TIMEOUT"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True, slots=True)
class RunError:
    """A stable code and a secret-free message."""

    code: RunErrorCode
    message: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Model requests and tokens of a run."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """A run, in any state."""

    id: str
    project: str
    agent_id: str
    agent_version: int
    task_id: str
    task_version: int
    variables: JsonObject = field(default_factory=dict)
    prompt: str = ""
    status: RunStatus = RunStatus.QUEUED
    output: JsonObject | None = None
    error: RunError | None = None
    usage: Usage = field(default_factory=Usage)
    attempts: int = 0
    latency_ms: int = 0
    create_time: dt.datetime
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None


# --- prompt templates --------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _scan(template: str, *, field_path: str) -> list[tuple[int, int, str | None]]:
    """(start, end, name) of every placeholder; name None for an escaped brace."""
    found: list[tuple[int, int, str | None]] = []
    for match in _PLACEHOLDER.finditer(template):
        text = match.group(0)
        if text in ("{{", "}}"):
            found.append((match.start(), match.end(), None))
            continue
        name = match.group(1)
        if name is None:
            raise InvalidArgument.for_field(
                field_path,
                f"unmatched '{text}' at character {match.start()}; write '{text}{text}' for a literal brace",
            )
        if not _IDENTIFIER.fullmatch(name):
            raise InvalidArgument.for_field(
                field_path,
                f"'{{{name}}}' at character {match.start()} is not a variable name "
                "(letters, digits and '_', not starting with a digit)",
            )
        found.append((match.start(), match.end(), name))
    return found


def template_variables(template: str, *, field_path: str = "task.prompt_template") -> tuple[str, ...]:
    """The variables a template uses, in order of first use (INVALID_ARGUMENT if malformed)."""
    seen: dict[str, None] = {}
    for _start, _end, name in _scan(template, field_path=field_path):
        if name is not None:
            seen.setdefault(name, None)
    return tuple(seen)


def _as_text(value: JsonValue) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def render_prompt(template: str, variables: Mapping[str, JsonValue]) -> str:
    """Fill `{name}` from `variables` (strings as-is, other JSON as JSON).

    Every placeholder needs a value and every value a placeholder: a missing or unknown
    variable is INVALID_ARGUMENT naming it, before any model is called.
    """
    pieces: list[str] = []
    position = 0
    used: set[str] = set()
    for start, end, name in _scan(template, field_path="task.prompt_template"):
        pieces.append(template[position:start])
        if name is None:
            pieces.append(template[start])
        else:
            if name not in variables:
                raise InvalidArgument.for_field(
                    f"input.variables.{name}", "required by the task's prompt template"
                )
            pieces.append(_as_text(variables[name]))
            used.add(name)
        position = end
    pieces.append(template[position:])
    unknown = sorted(set(variables) - used)
    if unknown:
        raise InvalidArgument.for_field(
            f"input.variables.{unknown[0]}", "not used by the task's prompt template"
        )
    rendered = "".join(pieces)
    if len(rendered) > PROMPT_MAX_CHARS:
        raise InvalidArgument.for_field(
            "input.variables", f"the rendered prompt exceeds {PROMPT_MAX_CHARS} characters"
        )
    return rendered
