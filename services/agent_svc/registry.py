"""The agent registry (DESIGN §4): one built pydantic-ai agent per (agent version, task version).

- **Single flight per key**: concurrent requests for a cold key share one build; the
  build runs outside any lock, so requests for other keys are never held up by it.
- **Bounded memory**: an LRU keeps at most `capacity` entries; an entry pushed out while
  a run still holds it stays reachable through a weak reference until that run ends,
  so a concurrent request for the same key finds it instead of building a duplicate.
- **Eviction**: `evict(predicate)` drops matching entries (agent, task or provider
  changes, learned from events on every replica). Runs in flight keep the instance they
  started with; a build that was in progress when its key was evicted is handed to its
  waiters but not cached.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = ["Registry", "RegistryStats"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class RegistryStats:
    """Counters, for metrics and tests."""

    hits: int = 0
    misses: int = 0
    builds: int = 0
    build_failures: int = 0
    evictions: int = 0


class Registry(Generic[K, V]):
    """An async single-flight LRU cache with weak references for entries in use.

    `V` must support weak references (a plain class instance does).
    """

    def __init__(self, *, build: Callable[[K], Awaitable[V]], capacity: int) -> None:
        self._build = build
        self._capacity = capacity
        self._lru: OrderedDict[K, V] = OrderedDict()
        self._alive: weakref.WeakValueDictionary[K, V] = weakref.WeakValueDictionary()
        self._building: dict[K, asyncio.Future[V]] = {}
        self._generation: dict[K, int] = {}
        self.stats = RegistryStats()

    def __len__(self) -> int:
        return len(self._lru)

    def peek(self, key: K) -> V | None:
        """The cached value, without building or touching recency."""
        return self._lru.get(key) or self._alive.get(key)

    async def get(self, key: K) -> V:
        """The value for `key`, built at most once however many callers ask at once."""
        value = self._lru.get(key)
        if value is not None:
            self._lru.move_to_end(key)
            self.stats.hits += 1
            return value
        value = self._alive.get(key)
        if value is not None:  # pushed out of the LRU but still used by a run
            self._remember(key, value)
            self.stats.hits += 1
            return value
        pending = self._building.get(key)
        if pending is None:
            self.stats.misses += 1
            # The build is a task of its own: a caller that goes away (a cancelled RPC)
            # must not cancel the build the other callers wait for.
            pending = asyncio.ensure_future(self._build_once(key, self._generation.get(key, 0)))
            pending.add_done_callback(_retrieve)
            self._building[key] = pending
        else:
            self.stats.hits += 1
        return await asyncio.shield(pending)

    async def _build_once(self, key: K, generation: int) -> V:
        try:
            value = await self._build(key)
        except Exception:
            self.stats.build_failures += 1
            raise
        finally:
            self._building.pop(key, None)
        self.stats.builds += 1
        if self._generation.get(key, 0) == generation:
            self._remember(key, value)
        return value

    def _remember(self, key: K, value: V) -> None:
        self._lru[key] = value
        self._lru.move_to_end(key)
        self._alive[key] = value
        while len(self._lru) > self._capacity:
            self._lru.popitem(last=False)

    def evict(self, predicate: Callable[[K], bool]) -> int:
        """Drop every entry whose key matches; returns how many were cached."""
        dropped = 0
        for key in list(self._lru):
            if predicate(key):
                del self._lru[key]
                dropped += 1
        for key in list(self._alive.keys()):
            if predicate(key):
                self._alive.pop(key, None)
        for key in list(self._building):
            if predicate(key):
                self._generation[key] = self._generation.get(key, 0) + 1
        self.stats.evictions += dropped
        return dropped


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Every waiter re-raises a failed build; this only keeps asyncio from warning
    # when all of them went away first.
    if not future.cancelled():
        future.exception()
