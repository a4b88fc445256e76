"""The floor under "agent_svc adds": its two unavoidable waits, measured on this machine.

Every `CreateRun` crosses one gRPC hop (the caller to agent_svc and back) and waits for
one durable statement (the run with its two outbox rows, committed with its WAL flush)
before it answers. Both are measured twice: back to back, and after a pause as long as
a model call takes here, which is what happens at concurrency 1 — the load generator,
agent_svc and PostgreSQL each sit idle while the model is asked, and on a VM waking an
idle process (and grpc's threads, several per call) costs far more than on a busy one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.common.clock import utcnow
from libs.common.db import create_engine, driver_connection
from libs.common.ids import new_id
from libs.common.outbox import Outbox
from services.agent_svc import repository

PAUSE_S = 0.010
"""About one model call against the stub here (the in-process run's p50 is ~10 ms)."""
CALLS = 600


async def _p50(call: Callable[[], Awaitable[object]], *, pause_s: float) -> float:
    latencies = []
    for _ in range(CALLS):
        started = time.perf_counter()
        await call()
        latencies.append((time.perf_counter() - started) * 1000)
        if pause_s:
            await asyncio.sleep(pause_s)
    return statistics.median(latencies[CALLS // 10 :])


async def run(*, agent_address: str, database_url: str, run_id: str) -> list[str]:
    """Rows for the report: each wait back to back and after a model call's pause.

    `run_id`: a stored run to copy; the copies are inserted with the statement agent_svc
    uses (and their events published by its outbox sweep, in a throwaway system).
    """
    engine = create_engine(database_url, pool_size=1, application_name="bench-floor")
    try:
        async with driver_connection(engine) as conn:  # as agent_svc's runs get theirs
            return await _measure(conn, agent_address=agent_address, run_id=run_id)
    finally:
        await engine.dispose()


async def _measure(conn: asyncpg.Connection, *, agent_address: str, run_id: str) -> list[str]:
    outbox = Outbox(repository.outbox, source="bench")
    runs = repository.RunRepository(outbox)
    base = await runs.get(conn, run_id)
    assert base is not None
    output = base.output or {}

    async def insert() -> None:
        run = dataclasses.replace(base, id=new_id("run"), create_time=utcnow())
        events = [
            outbox.event(
                collection="runs",
                resource="run",
                verb=verb,
                resource_id=run.id,
                project=run.project,
                actor="bench",
                data={"id": run.id, "output": output},
            )
            for verb in ("running", "succeeded")
        ]
        heads = (base.agent_version, base.task_version)
        stored = await runs.insert(
            conn, run, request_id=None, request_hash=None, heads=heads, messages=events
        )
        assert stored

    async with grpc.aio.insecure_channel(agent_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def hop() -> None:
            await health.Check(health_pb2.HealthCheckRequest())

        rows = []
        for label, call in (("gRPC hop (Health/Check)", hop), ("run insert + commit", insert)):
            busy = await _p50(call, pause_s=0)
            idle = await _p50(call, pause_s=PAUSE_S)
            rows.append(
                f"  {label:<26} p50 {busy:5.2f} ms back to back, "
                f"{idle:5.2f} ms after a {PAUSE_S * 1000:.0f} ms pause (as at c=1)"
            )
    return rows
