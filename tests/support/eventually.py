"""Bounded waiting for asynchronous effects, instead of bare sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition not met",
) -> T:
    """Call `probe` until it returns without raising AssertionError, within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await probe()
        except AssertionError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{message} within {timeout} s: {exc}") from exc
        await asyncio.sleep(interval)
