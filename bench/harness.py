"""Shared pieces of the benchmarks: a throwaway system and a load loop."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.common.auth import ALL_PROJECTS, Role, create_api_key
from libs.common.crypto import generate_key
from libs.common.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from libs.common.messaging import connect, ensure_api_key_bucket, ensure_streams
from libs.common.migrate import run_migrations

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    """Latency and throughput of one load run."""

    label: str
    concurrency: int
    requests: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))]

    def row(self) -> str:
        return (
            f"{self.label:<34} c={self.concurrency:<3} n={self.requests:<6} "
            f"p50={self.percentile(0.50):7.2f} ms  p99={self.percentile(0.99):7.2f} ms  "
            f"{self.rps:8.0f} req/s"
        )


async def load(
    label: str,
    call: Callable[[int], Awaitable[object]],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
) -> Result:
    """Run `call(i)` from `concurrency` workers for `duration_s` (after a warm-up)."""
    latencies: list[float] = []
    counter = 0
    measuring = False
    stop_at = 0.0

    async def worker() -> None:
        nonlocal counter
        while time.perf_counter() < stop_at:
            counter += 1
            started = time.perf_counter()
            await call(counter)
            if measuring:
                latencies.append((time.perf_counter() - started) * 1000)

    stop_at = time.perf_counter() + warmup_s
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    measuring = True
    begin = time.perf_counter()
    stop_at = begin + duration_s
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - begin
    return Result(label, concurrency, len(latencies), elapsed, latencies)


async def interleaved(
    calls: list[tuple[str, Callable[[int], Awaitable[object]]]],
    *,
    concurrency: int,
    duration_s: float,
    rounds: int,
) -> list[Result]:
    """Load each of `calls` for `duration_s` in all, in `rounds` alternating slices.

    On a shared 2-vCPU machine the speed drifts by more than the differences measured
    here within seconds; alternating short slices gives every call the same conditions.
    """
    merged: dict[str, Result] = {}
    for round_ in range(rounds):
        for label, call in calls:
            warmup = 1.0 if round_ == 0 else 0.3
            part = await load(
                label, call, concurrency=concurrency, duration_s=duration_s / rounds, warmup_s=warmup
            )
            if label in merged:
                whole = merged[label]
                whole.requests += part.requests
                whole.seconds += part.seconds
                whole.latencies_ms.extend(part.latencies_ms)
            else:
                merged[label] = part
    return [merged[label] for label, _ in calls]


def http_session(base_url: str) -> aiohttp.ClientSession:
    """The load generator's typical HTTP client: aiohttp, keep-alive, up to 512 connections.

    aiohttp, not httpx: httpx spends about 2 ms of CPU per request here, aiohttp about
    1 ms. Even so, at c=1 aiohttp makes a request 0.6-1 ms slower than a minimal client,
    so the gateway's own share is measured with `bench.lean_http` as well.
    """
    # Idle connections are dropped before the server's keep-alive (uvicorn: 5 s) closes
    # them, or a POST could go out on a connection being closed (not retried: not idempotent).
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=512, keepalive_timeout=3.0)
    timeout = aiohttp.ClientTimeout(total=60)
    return aiohttp.ClientSession(base_url=base_url, connector=connector, timeout=timeout)


async def post_json(
    session: aiohttp.ClientSession, path: str, body: object, *, key: str
) -> tuple[int, dict[str, Any]]:
    """POST `body` as JSON with the API key; the status and the decoded answer."""
    async with session.post(path, json=body, headers={"authorization": f"Bearer {key}"}) as response:
        return response.status, await response.json(content_type=None)


class System:
    """Embedded PostgreSQL + NATS in a temporary directory, services as processes."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="agentmgr-bench-")
        self.root = Path(self._tmp.name)
        self.pg = EmbeddedPostgres(self.root / "pg")
        self.nats = EmbeddedNats(self.root / "nats")
        self.processes: list[subprocess.Popen[bytes]] = []
        self.database_url = ""
        self.nats_url = ""
        self.encryption_keys = generate_key()
        self.admin_key = ""
        self.service_key = ""
        self.last_env: dict[str, str] = {}

    async def start(self, schemas: dict[str, Path]) -> None:
        self.database_url = await asyncio.to_thread(self.pg.start)
        self.nats_url = await asyncio.to_thread(self.nats.start)
        for schema, path in schemas.items():
            await asyncio.to_thread(
                run_migrations, migrations_dir=path, database_url=self.database_url, schema=schema
            )
        nc = await connect(self.nats_url, name="bench")
        js = nc.jetstream()
        await ensure_streams(js, replicas=1)
        kv = await ensure_api_key_bucket(js, replicas=1)
        self.admin_key, _ = await create_api_key(kv, name="bench", project=ALL_PROJECTS, role=Role.ADMIN)
        self.service_key, _ = await create_api_key(
            kv, name="bench-svc", project=ALL_PROJECTS, role=Role.SERVICE
        )
        await nc.close()

    async def service(self, name: str, port_variable: str, extra: dict[str, str] | None = None) -> int:
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "NATS_URL": self.nats_url,
            "ENCRYPTION_KEYS": self.encryption_keys,
            "SERVICE_API_KEY": self.service_key,
            port_variable: str(port),
            "GRPC_BIND_HOST": "127.0.0.1",
            "PROVIDER_INTERNAL_GRPC_PORT": str(free_port()),
            "METRICS_PORT": "0",
            "RATE_LIMIT_RPS": "0",
            "LOG_LEVEL": "WARNING",
            **(extra or {}),
        }
        self.last_env = env
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"], env=env, cwd=ROOT, stdout=log, stderr=log
        )
        self.processes.append(process)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(300):
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return port
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{name} did not start; see {self.root / f'{name}.log'}")

    async def quiet(self, schemas: tuple[str, ...], *, timeout_s: float = 60.0) -> None:
        """Wait until the services' outboxes are empty: a phase starts with no relay work left
        over from the one before (a Create phase leaves up to a second of events to publish)."""
        conn = await asyncpg.connect(self.database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                counts = [await conn.fetchval(f"SELECT count(*) FROM {s}.outbox") for s in schemas]
                if not any(counts):
                    return
                await asyncio.sleep(0.1)
            raise RuntimeError(f"outboxes of {schemas} not drained within {timeout_s:g} s")
        finally:
            await conn.close()

    async def http_service(self, name: str, port_variable: str, extra: dict[str, str] | None = None) -> int:
        """Start an HTTP service (the gateway) and wait until it answers /healthz."""
        port = free_port()
        env = {
            **os.environ,
            "NATS_URL": self.nats_url,
            port_variable: str(port),
            "RATE_LIMIT_RPS": "0",
            "LOG_LEVEL": "WARNING",
            **(extra or {}),
        }
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"], env=env, cwd=ROOT, stdout=log, stderr=log
        )
        self.processes.append(process)
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        return port
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{name} did not start; see {self.root / f'{name}.log'}")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(30)
        self.nats.stop()
        self.pg.stop()
        self._tmp.cleanup()


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f}"
