"""The JSON value type, for typed code that carries arbitrary JSON."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TypeAlias

__all__ = ["JsonObject", "JsonValue", "fingerprint"]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"
JsonObject: TypeAlias = "dict[str, JsonValue]"


def fingerprint(body: Mapping[str, object]) -> str:
    """sha256 (hex) of `body`'s canonical JSON (sorted keys, compact).

    What a request_id's replay is compared with: one id reused for another request is refused.
    """
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()
