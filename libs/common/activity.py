"""How many calls a process is serving, so background work can wait for a lull.

The gRPC interceptor counts unary calls in and out. Work that must happen soon but not
on a caller's critical path (the outbox relay's publishing) waits for `lull()`: the
moment no call is being served — right after the last one handed its answer to gRPC —
or `timeout_s`, whichever comes first. On a busy process the timeout bounds the delay
(and the work batches up meanwhile); on a quiet one it runs at once.
"""

from __future__ import annotations

import asyncio

__all__ = ["Activity"]


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Activity:
    """A count of calls in progress, with waiters for the count to reach zero."""

    def __init__(self) -> None:
        self._busy = 0
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def busy(self) -> int:
        """Calls being served now."""
        return self._busy

    def enter(self) -> None:
        """A call started."""
        self._busy += 1

    def leave(self) -> None:
        """A call ended (its answer is being sent): wake the waiters if it was the last."""
        self._busy -= 1
        if self._busy == 0 and self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                _settle(waiter)

    async def lull(self, timeout_s: float) -> None:
        """Return when no call is being served, or after `timeout_s` at the latest."""
        if self._busy == 0:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        deadline = loop.call_later(timeout_s, _settle, waiter)
        try:
            await waiter
        finally:
            deadline.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
