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
    """Call `probe` until it returns without raising AssertionError, within `timeout`.

    A probe that hangs counts as a failed attempt once the time is up (each attempt may
    take what is left of `timeout`, at least a second), so a stuck call fails the test
    with a message instead of hanging it.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 1.0)):
                return await probe()
        except (AssertionError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"{message} within {timeout} s: {exc or type(exc).__name__}") from exc
        await asyncio.sleep(interval)
