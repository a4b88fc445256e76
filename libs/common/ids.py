"""Opaque, time-ordered resource identifiers such as `prv_01JD7Q3S8X6M2V9T4K5R0B1C2D`."""

from __future__ import annotations

import os
import time

__all__ = ["new_id"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(prefix: str) -> str:
    """A ULID (48-bit milliseconds + 80 random bits, Crockford base32) with a prefix.

    Time-ordered ids keep B-tree inserts local; the prefix tells a reader which
    collection an id belongs to.
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"
