"""Readiness follows dependencies; liveness does not; writes during an outage are never half-done.

Own PostgreSQL and nats-server (they are stopped and restarted here).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from agentmgr.v1 import provider_pb2, provider_pb2_grpc
from libs.common.auth import ALL_PROJECTS, Role, create_api_key
from libs.common.crypto import generate_key
from libs.common.embedded import EmbeddedNats, EmbeddedPostgres
from libs.common.grpc_server import LIVENESS
from libs.common.messaging import close as close_nats
from libs.common.messaging import connect, ensure_api_key_bucket, ensure_streams
from libs.common.migrate import run_migrations
from services.provider_svc.repository import SCHEMA
from services.provider_svc.repository import providers as providers_table
from services.provider_svc.server import ProviderServer
from tests.conftest import MIGRATIONS, provider_settings
from tests.support.events import read_events
from tests.support.eventually import eventually
from tests.support.grpc_helpers import auth

pytestmark = pytest.mark.asyncio
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def own_pg(tmp_path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_nats(tmp_path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats")
    try:
        yield server
    finally:
        server.stop()


async def status(health: health_pb2_grpc.HealthStub, service: str = "") -> int:
    reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
    return int(reply.status)


async def within(seconds: float, health, expected: int, *, since: float) -> None:
    async def reached():
        assert await status(health) == expected
        assert await status(health, LIVENESS) == SERVING, "liveness must not follow dependencies"

    await eventually(reached, timeout=seconds + 1, interval=0.1)
    assert time.monotonic() - since < seconds + 0.5


async def test_readiness_follows_postgres_and_nats(own_pg, own_nats, log_tee):
    database_url = await asyncio.to_thread(own_pg.start)
    await asyncio.to_thread(
        run_migrations, migrations_dir=MIGRATIONS[SCHEMA], database_url=database_url, schema=SCHEMA
    )
    nats_url = await asyncio.to_thread(own_nats.start)
    nc = await connect(nats_url, name="test")
    js = nc.jetstream()
    await ensure_streams(js, replicas=1)
    admin, _ = await create_api_key(
        await ensure_api_key_bucket(js, replicas=1), name="a", project=ALL_PROJECTS, role=Role.ADMIN
    )
    server = ProviderServer(
        provider_settings(database_url=database_url, nats_url=nats_url, encryption_keys=generate_key())
    )
    await server.start("127.0.0.1:0", "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.runtime.port}")
    health = health_pb2_grpc.HealthStub(channel)
    providers = provider_pb2_grpc.ProviderServiceStub(channel)

    async def create() -> str | grpc.StatusCode:
        try:
            reply = await providers.CreateProvider(
                provider_pb2.CreateProviderRequest(
                    provider=provider_pb2.Provider(name=f"r-{uuid.uuid4().hex[:8]}", type="test")
                ),
                metadata=auth(admin),
                timeout=10,
            )
            return reply.provider.id
        except grpc.aio.AioRpcError as exc:
            return exc.code()

    async def read(provider_id: str) -> str | grpc.StatusCode:
        try:
            reply = await providers.GetProvider(
                provider_pb2.GetProviderRequest(id=provider_id), metadata=auth(admin), timeout=10
            )
            return reply.provider.id
        except grpc.aio.AioRpcError as exc:
            return exc.code()

    try:
        assert await status(health) == SERVING
        before = await create()
        assert isinstance(before, str) and await read(before) == before

        # PostgreSQL goes away: not ready within 5 s, writes and reads fail cleanly.
        stopped = time.monotonic()
        await asyncio.to_thread(own_pg.stop)
        await within(5, health, NOT_SERVING, since=stopped)
        during = [await create() for _ in range(5)] + [await read(before) for _ in range(3)]
        assert all(outcome == grpc.StatusCode.UNAVAILABLE for outcome in during), during
        started = time.monotonic()
        await asyncio.to_thread(own_pg.start)
        await within(5, health, SERVING, since=started)
        # Reads work again on fresh connections: the pooled ones died with the server.
        after = [await read(before) for _ in range(3)]
        assert after == [before] * 3, after

        # NATS goes away: not ready within 5 s; writes still land (the outbox keeps their events).
        stopped = time.monotonic()
        await asyncio.to_thread(own_nats.kill)
        await within(5, health, NOT_SERVING, since=stopped)

        async def lands() -> str:
            outcome = await create()
            assert isinstance(outcome, str), outcome
            return outcome

        written = [await eventually(lands, timeout=10) for _ in range(5)]
        started = time.monotonic()
        await asyncio.to_thread(own_nats.start)
        await within(5, health, SERVING, since=started)

        # Every committed write is in the database and its event in the stream; none half-done.
        engine = create_async_engine(database_url)
        async with engine.connect() as conn:
            stored = set((await conn.execute(select(providers_table.c.id))).scalars())
        await engine.dispose()
        assert set(written) <= stored

        async def all_events():
            subjects = {
                e["subject"] for e in await read_events(js, subject="agentmgr.events.providers.created")
            }
            assert {f"providers/{pid}" for pid in stored} <= subjects

        await eventually(all_events, timeout=20, interval=0.5)
    finally:
        await channel.close(None)
        await asyncio.wait_for(server.stop(), 60)
        await close_nats(nc)
