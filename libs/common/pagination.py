"""AIP-158 pagination: page sizes and opaque keyset page tokens.

A token carries the sort key of the last item returned and a fingerprint of the
list's filters; reusing a token with other filters is INVALID_ARGUMENT, as AIP-158
asks. Tokens are not secret (positions are bound as SQL parameters, and visibility is
still checked on every page).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence

from libs.common.errors import InvalidArgument

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "decode_page_token", "encode_page_token", "page_size"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

Position = Sequence[str | int]


def page_size(value: int, *, field_path: str = "page_size") -> int:
    """0 → default; above the maximum → the maximum (AIP-158); negative → INVALID_ARGUMENT."""
    if value < 0:
        raise InvalidArgument.for_field(field_path, "must not be negative")
    if value == 0:
        return DEFAULT_PAGE_SIZE
    return min(value, MAX_PAGE_SIZE)


def _fingerprint(filters: Mapping[str, object]) -> str:
    canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_page_token(position: Position, filters: Mapping[str, object]) -> str:
    """Token for the page after `position` of the list with `filters`."""
    body = json.dumps({"p": list(position), "f": _fingerprint(filters)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_page_token(
    token: str, filters: Mapping[str, object], *, arity: int, field_path: str = "page_token"
) -> list[str | int] | None:
    """The position in `token` (None for an empty token), validated against `filters`."""
    if not token:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position = raw["p"]
        fingerprint = raw["f"]
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgument.for_field(field_path, "is not a token this API issued") from None
    if (
        not isinstance(position, list)
        or len(position) != arity
        or not all(isinstance(p, (str, int)) for p in position)
    ):
        raise InvalidArgument.for_field(field_path, "is not a token this API issued")
    if fingerprint != _fingerprint(filters):
        raise InvalidArgument.for_field(field_path, "belongs to a list with other filters")
    return list(position)
