"""The agent registry: hit latency, and 1,000 concurrent cold requests for one key."""

from __future__ import annotations

import asyncio
import statistics
import time

from services.agent_svc.registry import Registry


class _Built:
    def __init__(self, key: str) -> None:
        self.key = key


async def run() -> list[str]:
    builds = 0

    async def build(key: str) -> _Built:
        nonlocal builds
        builds += 1
        await asyncio.sleep(0.05)  # a build that takes a while (model client, schema)
        return _Built(key)

    registry: Registry[str, _Built] = Registry(build=build, capacity=1000)
    started = time.perf_counter()
    values = await asyncio.gather(*(registry.get("cold") for _ in range(1000)))
    cold_ms = (time.perf_counter() - started) * 1000
    distinct = len({id(v) for v in values})

    samples = []
    for _ in range(20):
        begin = time.perf_counter_ns()
        for _ in range(10_000):
            await registry.get("cold")
        samples.append((time.perf_counter_ns() - begin) / 10_000)
    return [
        f"1000 concurrent cold requests for one key: {builds} build(s), "
        f"{distinct} instance(s), {cold_ms:.1f} ms",
        f"hit latency (await get): median {statistics.median(samples):.0f} ns",
    ]
