"""Token buckets keyed by a string (an API key id, a provider id)."""

from __future__ import annotations

import time
from collections import OrderedDict

__all__ = ["RateLimiter"]


class RateLimiter:
    """`rate` tokens per second up to `burst`, per key; memory bounded by `max_keys`.

    Per process: with N replicas a key may make up to N times the rate, which is the
    usual trade for not adding a network hop to every request.
    """

    def __init__(self, *, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, key: str) -> float | None:
        """Take a token: None when allowed, else seconds until one is available."""
        now = time.monotonic()
        tokens, last = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._buckets.move_to_end(key)
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            return None
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self._rate if self._rate > 0 else 60.0
