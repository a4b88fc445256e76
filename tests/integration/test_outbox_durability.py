"""No event is lost and none is duplicated: NATS outages, writer crashes, re-publishes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agentmgr.v1 import provider_pb2 as P
from libs.common.activity import Activity
from libs.common.embedded import free_port
from libs.common.messaging import ensure_streams
from libs.common.outbox import Outbox, OutboxMessage, OutboxRelay
from services.provider_svc.repository import outbox as outbox_table
from tests.support.events import read_events
from tests.support.eventually import eventually
from tests.support.grpc_helpers import auth
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.asyncio


async def _backlog(database_url: str) -> int:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(outbox_table))).scalar_one())
    finally:
        await engine.dispose()


def _created(outbox: Outbox, provider_ids: list[str]) -> list[OutboxMessage]:
    """`providers.created` events for these ids (only their subjects matter)."""
    return [
        outbox.event(
            collection="providers",
            resource="provider",
            verb="created",
            resource_id=provider_id,
            project="default",
            actor="tests",
            data={},
        )
        for provider_id in provider_ids
    ]


async def _created_events(js) -> dict[str, list[dict[str, object]]]:
    by_subject: dict[str, list[dict[str, object]]] = collections.defaultdict(list)
    for event in await read_events(js, subject="agentmgr.events.providers.created"):
        by_subject[event["subject"]].append(event)
    return by_subject


async def test_nats_killed_during_500_writes_loses_and_duplicates_nothing(
    provider_svc, providers, keys, nats_server, js, database_url
):
    assert nats_server.embedded is not None, "this test kills the module's own nats-server"
    committed: list[str] = []
    failed = 0
    total = 500

    async def writer(worker: int) -> None:
        nonlocal failed
        for i in range(total // 10):
            try:
                reply = await providers.CreateProvider(
                    P.CreateProviderRequest(
                        provider=P.Provider(name=f"d-{worker}-{i}-{uuid.uuid4().hex[:6]}", type="test")
                    ),
                    metadata=auth(keys.admin),
                )
                committed.append(reply.provider.id)
            except grpc.aio.AioRpcError:
                failed += 1

    async def chaos() -> None:
        while len(committed) < 100:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(nats_server.embedded.kill)
        await asyncio.sleep(1.5)
        await asyncio.to_thread(nats_server.embedded.start)

    await asyncio.gather(*(writer(w) for w in range(10)), chaos())
    # Writes need PostgreSQL only: a NATS outage does not fail them.
    assert failed == 0
    assert len(committed) == total

    async def drained() -> None:
        assert await _backlog(database_url) == 0

    await eventually(drained, timeout=60, interval=0.5)

    async def all_arrived():
        by_subject = await _created_events(js)
        missing = [pid for pid in committed if f"providers/{pid}" not in by_subject]
        assert not missing, f"{len(missing)} events missing"
        return by_subject

    by_subject = await eventually(all_arrived, timeout=30, interval=0.5)
    for pid in committed:
        assert len(by_subject[f"providers/{pid}"]) == 1, f"duplicate created events for {pid}"
    ids = [e["id"] for events in by_subject.values() for e in events]
    assert len(ids) == len(set(ids))


async def test_writer_crash_between_commit_and_publish_loses_nothing(
    tmp_path, fresh_database_url, nats_server, keys, encryption_keys, js
):
    """Writes commit in a process that never publishes; it is killed; another relays them."""
    port = free_port()
    env = {
        "DATABASE_URL": fresh_database_url,
        "NATS_URL": nats_server.url,
        "ENCRYPTION_KEYS": encryption_keys,
        "PROVIDER_GRPC_PORT": str(port),
        "GRPC_BIND_HOST": "127.0.0.1",
        "PROVIDER_INTERNAL_GRPC_PORT": "0",
        "METRICS_PORT": "0",
        "OUTBOX_RELAY_ENABLED": "false",
        "VALIDATION_WORKER_ENABLED": "false",
        "RATE_LIMIT_RPS": "0",
    }
    writer = ServiceProcess("provider_svc", env=env, port=port, log=tmp_path / "writer.log")
    writer.start()
    await writer.wait_serving()
    ids = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        from agentmgr.v1 import provider_pb2_grpc

        stub = provider_pb2_grpc.ProviderServiceStub(channel)
        for i in range(50):
            reply = await stub.CreateProvider(
                P.CreateProviderRequest(
                    provider=P.Provider(name=f"crash-{i}-{uuid.uuid4().hex[:6]}", type="test")
                ),
                metadata=auth(keys.admin),
            )
            ids.append(reply.provider.id)
    writer.kill()  # SIGKILL: no shutdown hook runs
    assert await _backlog(fresh_database_url) == 100  # created + validated per test provider

    relay_port = free_port()
    relay = ServiceProcess(
        "provider_svc",
        env={**env, "PROVIDER_GRPC_PORT": str(relay_port), "OUTBOX_RELAY_ENABLED": "true"},
        port=relay_port,
        log=tmp_path / "relay.log",
    )
    relay.start()
    try:
        await relay.wait_serving()

        async def arrived():
            by_subject = await _created_events(js)
            for pid in ids:
                assert len(by_subject.get(f"providers/{pid}", [])) == 1, pid

        await eventually(arrived, timeout=30, interval=0.5)
    finally:
        assert await relay.stop() == 0


async def test_republished_rows_are_dropped_as_duplicates(fresh_database_url, nats_server, js):
    """A relay that crashed after publishing but before deleting publishes again: no duplicate."""
    engine = create_async_engine(fresh_database_url)
    outbox = Outbox(outbox_table, source="//tests")
    messages = _created(outbox, [f"prv_dup{i}" for i in range(20)])
    try:
        async with engine.begin() as conn:
            await outbox.add(conn, *messages)
        # The "first relay": it published every row, then died before deleting them.
        for message in messages:
            await js.publish(message.subject, message.payload, headers={"Nats-Msg-Id": message.id})
        relay = OutboxRelay(engine=engine, table=outbox_table, js=js)
        assert await relay.relay_batch() == 20
        events = [e for e in await read_events(js) if e["subject"].startswith("providers/prv_dup")]
        assert sorted(e["subject"] for e in events) == sorted(f"providers/prv_dup{i}" for i in range(20))
    finally:
        await engine.dispose()


async def test_two_relays_claim_disjoint_rows(fresh_database_url, nats_server, js):
    """Several replicas relay at once; SKIP LOCKED means no row goes out twice from them."""
    engines = [create_async_engine(fresh_database_url) for _ in range(2)]
    outbox = Outbox(outbox_table, source="//tests")
    messages = _created(outbox, [f"prv_two{i}" for i in range(400)])
    try:
        async with engines[0].begin() as conn:
            await outbox.add(conn, *messages)
        relays = [OutboxRelay(engine=e, table=outbox_table, js=js, batch_size=25) for e in engines]

        async def drain(relay: OutboxRelay) -> int:
            sent = 0
            while n := await relay.relay_batch():
                sent += n
            return sent

        counts = await asyncio.gather(*(drain(r) for r in relays))
        assert sum(counts) == 400
        assert all(counts), "both relays should have taken part"
        assert await _backlog(fresh_database_url) == 0
        events = [e for e in await read_events(js) if e["subject"].startswith("providers/prv_two")]
        assert len(events) == 400
    finally:
        for engine in engines:
            await engine.dispose()


@contextlib.asynccontextmanager
async def _memory_relay(database_url: str, js, **options) -> AsyncIterator[tuple[AsyncEngine, Outbox]]:
    """A running relay with a memory path; a sweep would only take rows older than a minute,
    so whatever it publishes and deletes, the memory path did."""
    await ensure_streams(js, replicas=1)
    engine = create_async_engine(database_url)
    outbox = Outbox(outbox_table, source="//tests")
    relay = OutboxRelay(engine=engine, table=outbox_table, js=js, outbox=outbox, claim_after_s=60, **options)
    running = asyncio.create_task(relay.run())
    try:
        yield engine, outbox
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await engine.dispose()


async def _commit(engine: AsyncEngine, outbox: Outbox, messages: list[OutboxMessage]) -> None:
    async with engine.begin() as conn:
        await outbox.add(conn, *messages)
    outbox.committed(*messages)


async def test_fresh_messages_go_out_from_memory_and_their_rows_are_deleted(
    fresh_database_url, nats_server, js
):
    """The memory path: published once each, rows deleted in batches long before any sweep."""
    sent: list[str] = []
    async with _memory_relay(fresh_database_url, js, delete_interval_s=0.05) as (engine, outbox):
        for wave in range(5):
            # 1, 8, 15, ... messages per commit
            messages = _created(outbox, [f"prv_mem{wave}x{i}" for i in range(wave * 7 + 1)])
            await _commit(engine, outbox, messages)
            sent += [m.id for m in messages]
            await asyncio.sleep(0.01 * wave)

        async def deleted() -> None:
            assert await _backlog(fresh_database_url) == 0

        await eventually(deleted, timeout=10, interval=0.05)
        events = [e for e in await read_events(js) if e["subject"].startswith("providers/prv_mem")]
        assert sorted(e["id"] for e in events) == sorted(sent)


async def test_fresh_messages_wait_for_a_lull_in_calls_but_no_longer_than_the_linger(
    fresh_database_url, nats_server, js
):
    """The relay publishes when the calls in progress have answered, or after `linger_s`."""
    activity = Activity()

    async def published(provider_id: str) -> bool:
        return bool((await _created_events(js)).get(f"providers/{provider_id}"))

    async def out(provider_id: str) -> None:
        assert await published(provider_id)

    async with _memory_relay(fresh_database_url, js, linger_s=2.0, activity=activity) as (engine, outbox):
        activity.enter()  # a call in progress commits
        await _commit(engine, outbox, _created(outbox, ["prv_lull1"]))
        await asyncio.sleep(0.3)
        assert not await published("prv_lull1")
        activity.leave()  # it answered: published at once
        await eventually(lambda: out("prv_lull1"), timeout=1.0, interval=0.02)
        activity.enter()  # a call that never ends: the linger bounds the wait
        await _commit(engine, outbox, _created(outbox, ["prv_lull2"]))
        await eventually(lambda: out("prv_lull2"), timeout=6, interval=0.05)
        activity.leave()
