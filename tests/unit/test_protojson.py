"""The fast `message_to_json` equals protobuf's own JSON mapping on every agentmgr message."""

from __future__ import annotations

import random
from typing import Any

import pytest
from google.protobuf import struct_pb2
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from agentmgr.v1 import agent_pb2, common_pb2, credential_pb2, event_pb2, provider_pb2, run_pb2, task_pb2
from libs.common.protojson import message_to_json, reference_message_to_json, struct_to_dict

MODULES = (agent_pb2, common_pb2, credential_pb2, event_pb2, provider_pb2, run_pb2, task_pb2)
MESSAGES = sorted(
    (getattr(module, name) for module in MODULES for name in module.DESCRIPTOR.message_types_by_name),
    key=lambda cls: cls.DESCRIPTOR.full_name,
)


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["str", "int", "float", "bool", "null"] + (["obj", "list"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "str":
        return rng.choice(["", "tea", "ünïcode ✓", "a\nb"])
    if kind == "int":
        return rng.choice([0, 1, -7, 2**53, 2**40 + 1])
    if kind == "float":
        return rng.choice([0.5, -1.25, 1e-9, 3.0, 1e300])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "obj":
        return {f"k{i}": _json_value(rng, depth + 1) for i in range(rng.randint(0, 3))}
    return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def _fill(message: Message, rng: random.Random, depth: int = 0) -> None:
    name = message.DESCRIPTOR.full_name
    if name == "google.protobuf.Struct":
        message.update({f"f{i}": _json_value(rng) for i in range(rng.randint(0, 4))})  # type: ignore[attr-defined]
        return
    if name == "google.protobuf.Timestamp":
        micros = rng.choice([0, 1_700_000_000_000_000, 1_700_000_000_123_000, 1_700_000_000_123_456])
        message.FromMicroseconds(micros)  # type: ignore[attr-defined]
        return
    if name == "google.protobuf.FieldMask":
        message.paths.extend(rng.sample(["name", "labels", "model_settings.temperature"], 2))  # type: ignore[attr-defined]
        return
    oneofs_done: set[str] = set()
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.3:
            continue  # left unset
        oneof = field.containing_oneof
        if oneof is not None and not oneof.name.startswith("_"):
            if oneof.name in oneofs_done:
                continue
            oneofs_done.add(oneof.name)
        value_type = field.message_type
        if value_type is not None and value_type.GetOptions().map_entry:
            target = getattr(message, field.name)
            for i in range(rng.randint(0, 3)):
                target[f"key{i}"] = rng.choice(["", "v", "✓"])
        elif value_type is not None:
            if field.is_repeated:
                for _ in range(rng.randint(0, 2) if depth < 3 else 0):
                    _fill(getattr(message, field.name).add(), rng, depth + 1)
            elif depth < 4:
                sub = getattr(message, field.name)
                sub.SetInParent()
                _fill(sub, rng, depth + 1)
        else:
            values = {
                FieldDescriptor.CPPTYPE_STRING: lambda: rng.choice(["", "x", "ünïcode", "projects/p"]),
                FieldDescriptor.CPPTYPE_BOOL: lambda: rng.random() < 0.5,
                FieldDescriptor.CPPTYPE_INT32: lambda: rng.choice([0, 1, -3, 2**31 - 1]),
                FieldDescriptor.CPPTYPE_DOUBLE: lambda: rng.choice([0.0, 0.7, 1.0, 2.0, -0.25, 1e20]),
            }[field.cpp_type]
            if field.is_repeated:
                getattr(message, field.name).extend(values() for _ in range(rng.randint(0, 3)))
            else:
                setattr(message, field.name, values())


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda cls: cls.DESCRIPTOR.full_name)
def test_fast_json_equals_the_reference(cls: type[Message]) -> None:
    assert message_to_json(cls()) == reference_message_to_json(cls())
    rng = random.Random(cls.DESCRIPTOR.full_name)
    for _ in range(60):
        message = cls()
        _fill(message, rng)
        assert message_to_json(message) == reference_message_to_json(message), message


def test_struct_to_dict_normalizes_integral_numbers() -> None:
    struct = struct_pb2.Struct()
    struct.update({"a": 5, "b": 0.5, "c": [1.0, {"d": 2**60}], "e": None})
    assert struct_to_dict(struct) == {"a": 5, "b": 0.5, "c": [1, {"d": float(2**60)}], "e": None}
    assert isinstance(struct_to_dict(struct)["a"], int)
