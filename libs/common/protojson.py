"""One JSON rendering of resources, shared by events, REST and WebSocket.

Protobuf's JSON mapping with the proto field names (snake_case), every field present,
and one fix: `google.protobuf.Struct` stores numbers as doubles, so integral values are
rendered as integers (`5`, not `5.0`) — the same number to JSON and JSON Schema.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

from libs.common.jsonvalue import JsonObject, JsonValue

__all__ = ["dict_to_struct", "message_to_json", "normalize_numbers", "struct_to_dict"]

_MAX_EXACT = 2**53


def normalize_numbers(value: JsonValue) -> JsonValue:
    """Integral floats (within ±2^53) become ints, recursively."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= _MAX_EXACT:
            return int(value)
        return value
    if isinstance(value, dict):
        return {k: normalize_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize_numbers(v) for v in value]
    return value


def message_to_json(message: Message) -> JsonObject:
    """The JSON object for a message."""
    raw = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    result = normalize_numbers(raw)
    assert isinstance(result, dict)
    return result


def struct_to_dict(struct: struct_pb2.Struct) -> JsonObject:
    """A Struct as a plain JSON object."""
    result = normalize_numbers(json_format.MessageToDict(struct))
    assert isinstance(result, dict)
    return result


def dict_to_struct(value: Mapping[str, object]) -> struct_pb2.Struct:
    """A JSON object as a Struct."""
    struct = struct_pb2.Struct()
    struct.update(value)  # type: ignore[arg-type]  # any JSON object; Struct checks at runtime
    return struct
