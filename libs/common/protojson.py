"""One JSON rendering of resources, shared by events, REST and WebSocket.

Protobuf's JSON mapping with the proto field names (snake_case), every field present,
and one fix: `google.protobuf.Struct` stores numbers as doubles, so integral values are
rendered as integers (`5`, not `5.0`) — the same number to JSON and JSON Schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from libs.common.jsonvalue import JsonObject, JsonValue

__all__ = [
    "dict_to_struct",
    "message_to_json",
    "normalize_numbers",
    "reference_message_to_json",
    "struct_to_dict",
]

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


def reference_message_to_json(message: Message) -> JsonObject:
    """The JSON object for a message, through protobuf's own JSON mapping (slow; the reference)."""
    raw = json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    result = normalize_numbers(raw)
    assert isinstance(result, dict)
    return result


def message_to_json(message: Message) -> JsonObject:
    """The JSON object for a message: `reference_message_to_json`, several times faster.

    protobuf's `MessageToDict` walks every field through generic reflection on every
    call, which costs more than the rest of a gateway request; this keeps a plan per
    message type and handles the field kinds agentmgr's protos use (scalars, optional
    scalars, nested messages, repeated and map fields, `Struct`, `Timestamp`). Anything
    else falls back to the reference. Tests hold the two equal on every resource type.
    """
    return _message(message)


# A plan entry: (name, kind, presence, element plan or None).
_SCALAR, _NUMBER, _LONG, _MESSAGE, _REPEATED_SCALAR, _REPEATED_MESSAGE, _MAP = range(7)
_Plan = list[tuple[str, int, bool]]
_PLANS: dict[str, _Plan | None] = {}
_KNOWN = {"google.protobuf.Struct", "google.protobuf.Timestamp"}
_DIRECT = {
    FieldDescriptor.CPPTYPE_STRING,
    FieldDescriptor.CPPTYPE_BOOL,
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_UINT32,
}


def _plan(descriptor: Any) -> _Plan | None:
    """How to render a message type; None when the reference must do it."""
    plan: _Plan = []
    for field in descriptor.fields:
        cpp, message_type = field.cpp_type, field.message_type
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_BYTES:
            return None
        if message_type is not None and message_type.GetOptions().map_entry:
            key, value = message_type.fields_by_name["key"], message_type.fields_by_name["value"]
            if key.cpp_type != FieldDescriptor.CPPTYPE_STRING or value.cpp_type not in _DIRECT:
                return None
            plan.append((field.name, _MAP, False))
        elif message_type is not None:
            if message_type.full_name.startswith("google.") and message_type.full_name not in _KNOWN:
                return None
            kind = _REPEATED_MESSAGE if repeated else _MESSAGE
            plan.append((field.name, kind, field.has_presence))
        elif cpp in _DIRECT:
            plan.append((field.name, _REPEATED_SCALAR if repeated else _SCALAR, field.has_presence))
        elif cpp == FieldDescriptor.CPPTYPE_DOUBLE and not repeated:
            plan.append((field.name, _NUMBER, field.has_presence))
        elif cpp in (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64) and not repeated:
            plan.append((field.name, _LONG, field.has_presence))
        else:  # enums, floats, repeated numbers: not used by agentmgr's protos
            return None
    return plan


def _number(value: float) -> int | float:
    if value.is_integer() and abs(value) <= _MAX_EXACT:
        return int(value)
    return value


def _struct_value(value: struct_pb2.Value) -> JsonValue:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return _number(value.number_value)
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {k: _struct_value(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_struct_value(v) for v in value.list_value.values]
    return None


def _message(message: Message) -> JsonObject:
    descriptor = message.DESCRIPTOR
    full_name = descriptor.full_name
    if full_name == "google.protobuf.Struct":
        return {k: _struct_value(v) for k, v in message.fields.items()}  # type: ignore[attr-defined]
    try:
        plan = _PLANS[full_name]
    except KeyError:
        plan = _PLANS[full_name] = _plan(descriptor) if not full_name.startswith("google.") else None
    if plan is None:
        return reference_message_to_json(message)
    out: JsonObject = {}
    for name, kind, presence in plan:
        if presence and not message.HasField(name):
            continue
        value = getattr(message, name)
        if kind == _SCALAR:
            out[name] = value
        elif kind == _MESSAGE:
            out[name] = _nested(value)
        elif kind == _NUMBER:
            out[name] = _number(value)
        elif kind == _LONG:
            out[name] = str(value)
        elif kind == _REPEATED_SCALAR:
            out[name] = list(value)
        elif kind == _REPEATED_MESSAGE:
            out[name] = [_nested(v) for v in value]
        else:  # _MAP
            out[name] = dict(value)
    return out


def _nested(message: Message) -> JsonValue:
    if message.DESCRIPTOR.full_name == "google.protobuf.Timestamp":
        return message.ToJsonString()  # type: ignore[attr-defined, no-any-return]
    return _message(message)


def struct_to_dict(struct: struct_pb2.Struct) -> JsonObject:
    """A Struct as a plain JSON object."""
    return {k: _struct_value(v) for k, v in struct.fields.items()}


def dict_to_struct(value: Mapping[str, object]) -> struct_pb2.Struct:
    """A JSON object as a Struct."""
    struct = struct_pb2.Struct()
    struct.update(value)  # type: ignore[arg-type]  # any JSON object; Struct checks at runtime
    return struct
