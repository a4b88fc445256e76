"""`Activity`: background work waits for a lull in calls, bounded by a timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

from libs.common.activity import Activity

pytestmark = pytest.mark.asyncio


async def test_a_quiet_process_has_its_lull_at_once():
    activity = Activity()
    started = time.perf_counter()
    await activity.lull(5.0)
    assert time.perf_counter() - started < 0.05


async def test_the_lull_comes_when_the_last_call_ends():
    activity = Activity()
    activity.enter()
    activity.enter()
    waiting = [asyncio.ensure_future(activity.lull(5.0)) for _ in range(2)]
    await asyncio.sleep(0.01)
    activity.leave()
    await asyncio.sleep(0.01)
    assert not any(w.done() for w in waiting)  # one call still in progress
    activity.leave()
    await asyncio.wait_for(asyncio.gather(*waiting), 1.0)
    assert activity.busy == 0


async def test_a_busy_process_waits_no_longer_than_the_timeout():
    activity = Activity()
    activity.enter()
    started = time.perf_counter()
    await activity.lull(0.05)
    assert 0.04 <= time.perf_counter() - started < 1.0
    # A cancelled waiter leaves nothing behind for the next lull.
    cancelled = asyncio.ensure_future(activity.lull(5.0))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    activity.leave()
    assert activity.busy == 0
