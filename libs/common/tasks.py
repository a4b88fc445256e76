"""Stopping background tasks without letting shutdown hang on one of them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from libs.common.logging import get_logger

__all__ = ["cancel_and_wait"]

_log = get_logger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, timeout_s: float) -> None:
    """Cancel `tasks` and wait for them, at most `timeout_s`.

    A task's clean-up can wait on something that no longer answers (a NATS watcher's
    unsubscribe while the server is going away); shutdown must still finish within the
    grace period, so such a task is logged and left to die with the process. A task
    that failed is logged too.
    """
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    done, stuck = await asyncio.wait(pending, timeout=timeout_s) if pending else (set(), set())
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            _log.error("background_job_failed", job=task.get_name(), error=type(task.exception()).__name__)
    for task in stuck:
        _log.warning("background_job_stuck_on_shutdown", job=task.get_name(), waited_s=timeout_s)
