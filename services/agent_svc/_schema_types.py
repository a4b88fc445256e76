"""Types shared by the schema compiler's modules: the budget and the error.

They are re-exported by `services.agent_svc.schema_compiler`, which is where callers
import them from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

__all__ = ["Draft", "SchemaBudget", "SchemaError", "escape_pointer_token", "join_pointer"]

Draft: TypeAlias = Literal["2020-12", "draft-07"]
"""The JSON Schema dialects the compiler accepts."""

_PUBLIC_MODULE: Final = "services.agent_svc.schema_compiler"


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaBudget:
    """Limits a schema must stay within before any real work is done on it.

    Every limit is checked by one iterative walk that stops at the first violation, so
    a hostile schema costs at most the budget, never its own size or depth. The
    defaults fit any schema a person writes for an LLM answer by a wide margin.
    """

    max_depth: int = 32
    """Deepest nesting of subschemas (the root is depth 1), and of JSON containers
    inside data keywords (`enum`, `const`, `default`, `examples`). Also bounds chains of
    `$ref`/`anyOf`/`oneOf` that stay on the same instance value."""

    max_nodes: int = 5_000
    """Subschemas in the whole document, `$defs` included."""

    max_properties: int = 200
    """Entries in one `properties` object, and names in one `required` list."""

    max_enum_values: int = 1_000
    """Values in one `enum`."""

    max_refs: int = 500
    """`$ref` keywords in the whole document."""

    max_pattern_length: int = 1_000
    """Characters in one `pattern`."""

    max_pattern_cost: int = 50_000
    """Estimated size of the automaton one `pattern` compiles to (character-class ranges
    times repetition counts; about 0.6 ms of compile time per 1,000). `^\\w{1,64}$`
    costs 47,000; the limit keeps `(\\w{100}){100}` from costing seconds."""

    max_total_pattern_cost: int = 150_000
    """The same estimate summed over all patterns of the schema (~100 ms at most)."""

    max_schema_bytes: int = 256 * 1024
    """UTF-8 size of the canonical JSON serialization of the schema."""

    max_instance_depth: int = 64
    """Deepest nesting of arrays/objects in an instance (a model's answer). Deeper
    answers are rejected; pydantic's JSON parser refuses more than 200 levels anyway."""

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SchemaBudget.{name} must be a positive integer, got {value!r}")


SchemaBudget.__module__ = _PUBLIC_MODULE


class SchemaError(Exception):
    """A schema the compiler refuses, with where and why.

    The agent service maps this to gRPC INVALID_ARGUMENT on the field
    `response_schema`, carrying `pointer` so that a client can highlight the spot.
    """

    pointer: str
    """RFC 6901 JSON pointer into the schema ("" is the root), for example
    `/properties/address/properties/zip/pattern`."""

    message: str
    """Short human-readable reason that names the offending keyword."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(pointer, message)
        self.pointer = pointer
        self.message = message

    def __str__(self) -> str:
        return f"{self.pointer or '(root)'}: {self.message}"

    def __repr__(self) -> str:
        return f"SchemaError(pointer={self.pointer!r}, message={self.message!r})"


SchemaError.__module__ = _PUBLIC_MODULE


def escape_pointer_token(token: str | int) -> str:
    """Escape one reference token for an RFC 6901 JSON pointer."""
    text = str(token)
    if "~" in text or "/" in text:
        text = text.replace("~", "~0").replace("/", "~1")
    return text


def join_pointer(base: str, *tokens: str | int) -> str:
    """Append reference tokens to a JSON pointer."""
    for token in tokens:
        base = f"{base}/{escape_pointer_token(token)}"
    return base
