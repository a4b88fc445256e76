from __future__ import annotations

import asyncio
import gc
import time

import pytest

from services.agent_svc.registry import Registry

pytestmark = pytest.mark.asyncio


class Built:
    """A value that supports weak references, like BuiltAgent."""

    def __init__(self, key: str) -> None:
        self.key = key


async def test_a_thousand_concurrent_cold_requests_build_once():
    builds: list[str] = []
    gate = asyncio.Event()

    async def build(key: str) -> Built:
        builds.append(key)
        await gate.wait()
        return Built(key)

    registry: Registry[str, Built] = Registry(build=build, capacity=10)
    waiters = [asyncio.ensure_future(registry.get("cold")) for _ in range(1000)]
    await asyncio.sleep(0.01)
    gate.set()
    values = await asyncio.gather(*waiters)
    assert builds == ["cold"]
    assert len({id(v) for v in values}) == 1
    assert registry.stats.builds == 1 and registry.stats.misses == 1 and registry.stats.hits == 999


async def test_other_keys_are_not_held_up_by_a_slow_build():
    slow = asyncio.Event()

    async def build(key: str) -> Built:
        if key == "slow":
            await slow.wait()
        return Built(key)

    registry: Registry[str, Built] = Registry(build=build, capacity=10)
    pending = asyncio.ensure_future(registry.get("slow"))
    await asyncio.sleep(0)
    started = time.perf_counter()
    fast = await asyncio.wait_for(registry.get("fast"), timeout=1)
    assert fast.key == "fast" and time.perf_counter() - started < 0.1
    assert not pending.done()
    slow.set()
    assert (await pending).key == "slow"


async def test_lru_cap_and_weak_references_for_entries_in_use():
    async def build(key: str) -> Built:
        return Built(key)

    registry: Registry[str, Built] = Registry(build=build, capacity=2)
    in_use = await registry.get("a")  # a run holds it
    await registry.get("b")
    await registry.get("c")  # pushes "a" out of the LRU
    assert len(registry) == 2
    again = await registry.get("a")
    assert again is in_use, "an entry still in use must be found, not rebuilt"
    assert registry.stats.builds == 3
    del in_use, again
    await registry.get("d")
    await registry.get("e")  # "a" is out of the LRU and nobody holds it any more
    gc.collect()
    assert registry.peek("a") is None
    await registry.get("a")
    assert registry.stats.builds == 6


async def test_eviction_drops_entries_and_discards_a_build_in_progress():
    gate = asyncio.Event()
    count = 0

    async def build(key: str) -> Built:
        nonlocal count
        count += 1
        if key == "building":
            await gate.wait()
        return Built(f"{key}-{count}")

    registry: Registry[str, Built] = Registry(build=build, capacity=10)
    first = await registry.get("ready")
    assert registry.evict(lambda key: key == "ready") == 1
    assert (await registry.get("ready")) is not first
    pending = asyncio.ensure_future(registry.get("building"))
    await asyncio.sleep(0)
    registry.evict(lambda key: key == "building")
    gate.set()
    stale = await pending
    fresh = await registry.get("building")
    assert fresh is not stale, "a build started before its eviction must not be cached"


async def test_a_failed_build_is_reported_to_every_waiter_and_retried_later():
    attempts = 0

    async def build(key: str) -> Built:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        if attempts == 1:
            raise RuntimeError("provider_svc unavailable")
        return Built(key)

    registry: Registry[str, Built] = Registry(build=build, capacity=10)
    results = await asyncio.gather(*(registry.get("k") for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert (await registry.get("k")).key == "k"
    assert attempts == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_build():
    gate = asyncio.Event()

    async def build(key: str) -> Built:
        await gate.wait()
        return Built(key)

    registry: Registry[str, Built] = Registry(build=build, capacity=10)
    first = asyncio.ensure_future(registry.get("k"))
    second = asyncio.ensure_future(registry.get("k"))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert (await second).key == "k"
