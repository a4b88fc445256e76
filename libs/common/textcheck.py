"""Text PostgreSQL cannot store: find it in a request before it reaches the database.

Protobuf strings are valid UTF-8 by construction, but may contain NUL (U+0000), which
PostgreSQL refuses in `text` and `jsonb`. `find_nul` walks a request message (Structs
as JSON) and returns the path of the first string — or map key — that holds one, so
the caller gets INVALID_ARGUMENT naming the field instead of an internal error.
"""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

__all__ = ["find_nul"]

_STRUCT = "google.protobuf.Struct"
_VALUE = "google.protobuf.Value"
_LIST = "google.protobuf.ListValue"


def _json(message: Message, path: str) -> str | None:
    name = message.DESCRIPTOR.full_name
    if name == _STRUCT:
        for key, value in message.fields.items():  # type: ignore[attr-defined]
            if "\x00" in key:
                return f"{path}.{key!r}"
            found = _json(value, f"{path}.{key}")
            if found:
                return found
        return None
    if name == _LIST:
        for index, value in enumerate(message.values):  # type: ignore[attr-defined]
            found = _json(value, f"{path}[{index}]")
            if found:
                return found
        return None
    kind = message.WhichOneof("kind")
    if kind == "string_value":
        return path if "\x00" in message.string_value else None  # type: ignore[attr-defined]
    if kind in ("struct_value", "list_value"):
        return _json(getattr(message, kind), path)
    return None


def find_nul(message: Message, prefix: str = "") -> str | None:
    """The path of the first string holding a NUL character, or None."""
    if message.DESCRIPTOR.full_name in (_STRUCT, _VALUE, _LIST):
        return _json(message, prefix.rstrip("."))
    for field, value in message.ListFields():
        path = f"{prefix}{field.name}"
        if field.type == FieldDescriptor.TYPE_STRING:
            values = value if field.is_repeated else [value]
            for item in values:
                if "\x00" in item:
                    return path
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                for key, item in value.items():
                    if isinstance(key, str) and "\x00" in key:
                        return f"{path}.{key!r}"
                    if isinstance(item, str):
                        if "\x00" in item:
                            return f"{path}.{key}"
                    elif isinstance(item, Message):
                        found = find_nul(item, f"{path}.{key}.")
                        if found:
                            return found
            elif field.is_repeated:
                for index, item in enumerate(value):
                    found = find_nul(item, f"{path}[{index}].")
                    if found:
                        return found
            else:
                found = find_nul(value, f"{path}.")
                if found:
                    return found
    return None
