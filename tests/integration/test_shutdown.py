"""Graceful shutdown: SIGTERM with 100 calls in flight, for each service (separate processes).

Health turns NOT_SERVING (readiness 503 for the gateway) first, every call started before
the signal completes, and the process exits 0 within its grace period.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmgr.v1 import agent_pb2, provider_pb2, provider_pb2_grpc, run_pb2, run_pb2_grpc, task_pb2
from libs.common.embedded import free_port
from tests.conftest import start_gateway
from tests.support.eventually import eventually
from tests.support.grpc_helpers import auth
from tests.support.llm_stub import Slow
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.asyncio

GRACE_S = 10.0
DRAIN_S = 1.0
IN_FLIGHT = 100


def _env(database_url: str, nats_url: str, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_url,
        "GRPC_BIND_HOST": "127.0.0.1",
        "METRICS_PORT": "0",
        "RATE_LIMIT_RPS": "0",
        "SHUTDOWN_GRACE_S": str(GRACE_S),
        "SHUTDOWN_DRAIN_DELAY_S": str(DRAIN_S),
        **extra,
    }


async def _watch_health(port: int, service: str = "") -> list[tuple[float, int]]:
    """Health statuses seen until the server goes away."""
    seen: list[tuple[float, int]] = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=0.5)
            except grpc.aio.AioRpcError:
                return seen
            seen.append((time.monotonic(), reply.status))
            await asyncio.sleep(0.05)


async def _terminate_during(process: ServiceProcess, calls: list[asyncio.Task[object]]) -> float:
    await asyncio.sleep(0.3)  # the calls are on their way
    signalled = time.monotonic()
    process.signal(signal.SIGTERM)
    results = await asyncio.gather(*calls, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"{len(failures)} in-flight calls failed: {failures[:3]}"
    code = await process.stop(timeout=GRACE_S + DRAIN_S + 10)
    assert code == 0, process.log_text()[-2000:]
    return signalled


async def test_provider_svc_drains_in_flight_calls(
    tmp_path, database_url, nats_server, encryption_keys, keys
):
    port = free_port()
    service = ServiceProcess(
        "provider_svc",
        env=_env(
            database_url,
            nats_server.url,
            ENCRYPTION_KEYS=encryption_keys,
            PROVIDER_GRPC_PORT=str(port),
            PROVIDER_INTERNAL_GRPC_PORT="0",
            VALIDATION_WORKER_ENABLED="false",
        ),
        port=port,
        log=tmp_path / "provider.log",
    )
    service.start()
    await service.wait_serving()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = provider_pb2_grpc.ProviderServiceStub(channel)
        health = asyncio.create_task(_watch_health(port))

        async def create(i: int) -> object:
            # Many writes at once queue on the database pool: they really are in flight.
            return await stub.CreateProvider(
                provider_pb2.CreateProviderRequest(
                    provider=provider_pb2.Provider(name=f"sd-{i}-{uuid.uuid4().hex[:6]}", type="test")
                ),
                metadata=auth(keys.admin),
                timeout=30,
            )

        calls = [asyncio.create_task(create(i)) for i in range(IN_FLIGHT)]
        signalled = await _terminate_during(service, calls)
        statuses = await health
    assert time.monotonic() - signalled < GRACE_S + DRAIN_S + 5
    not_serving = [t for t, s in statuses if s == health_pb2.HealthCheckResponse.NOT_SERVING]
    assert not_serving and not_serving[0] >= signalled, (
        "health turned NOT_SERVING after the signal, before exit"
    )


async def test_agent_svc_drains_in_flight_runs(tmp_path, stack, database_url, nats_server, keys, llm_stub):
    md = auth(keys.admin)
    provider = await stack.providers.CreateProvider(
        provider_pb2.CreateProviderRequest(
            provider=provider_pb2.Provider(
                name=f"sd-{uuid.uuid4().hex[:6]}", type="openai_compatible", base_url=llm_stub.url()
            ),
            api_key=llm_stub.api_key,
        ),
        metadata=md,
    )
    llm_stub.script("drain", [Slow(2.0, {"ok": True})])
    agent = await stack.agents.CreateAgent(
        agent_pb2.CreateAgentRequest(
            agent=agent_pb2.Agent(
                name=f"sd-{uuid.uuid4().hex[:6]}", provider_id=provider.provider.id, model="drain"
            )
        ),
        metadata=md,
    )
    schema = struct_pb2.Struct()
    schema.update({"type": "object", "properties": {"ok": {"type": "boolean"}}})
    task = await stack.tasks.CreateTask(
        task_pb2.CreateTaskRequest(
            task=task_pb2.Task(
                name=f"sd-{uuid.uuid4().hex[:6]}", prompt_template="go", response_schema=schema
            )
        ),
        metadata=md,
    )
    port = free_port()
    service = ServiceProcess(
        "agent_svc",
        env=_env(
            database_url,
            nats_server.url,
            SERVICE_API_KEY=keys.service,
            AGENT_GRPC_PORT=str(port),
            PROVIDER_SVC_ADDRESS=f"127.0.0.1:{stack.provider.runtime.port}",
            PROVIDER_INTERNAL_ADDRESS=f"127.0.0.1:{stack.provider.runtime.internal_port}",
            SSRF_ALLOW_LOOPBACK="true",
            DB_POOL_SIZE="20",
        ),
        port=port,
        log=tmp_path / "agent.log",
    )
    service.start()
    await service.wait_serving()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        runs = run_pb2_grpc.RunServiceStub(channel)
        health = asyncio.create_task(_watch_health(port))

        async def run_once() -> object:
            reply = await runs.CreateRun(
                run_pb2.CreateRunRequest(
                    input=run_pb2.RunInput(agent_id=agent.agent.id, task_id=task.task.id)
                ),
                metadata=md,
                timeout=60,
            )
            assert reply.run.status == "succeeded", reply.run.error
            return reply

        calls = [asyncio.create_task(run_once()) for _ in range(IN_FLIGHT)]
        signalled = await _terminate_during(service, calls)
        statuses = await health
    not_serving = [t for t, s in statuses if s == health_pb2.HealthCheckResponse.NOT_SERVING]
    assert not_serving and not_serving[0] >= signalled


async def test_gateway_drains_in_flight_requests(tmp_path, stack, nats_server, keys, llm_stub):
    md = auth(keys.admin)
    provider = await stack.providers.CreateProvider(
        provider_pb2.CreateProviderRequest(
            provider=provider_pb2.Provider(
                name=f"gw-{uuid.uuid4().hex[:6]}", type="openai_compatible", base_url=llm_stub.url()
            ),
            api_key=llm_stub.api_key,
        ),
        metadata=md,
    )
    llm_stub.script("gw-drain", [Slow(2.0, {"ok": True})])
    agent = await stack.agents.CreateAgent(
        agent_pb2.CreateAgentRequest(
            agent=agent_pb2.Agent(
                name=f"gw-{uuid.uuid4().hex[:6]}", provider_id=provider.provider.id, model="gw-drain"
            )
        ),
        metadata=md,
    )
    schema = struct_pb2.Struct()
    schema.update({"type": "object", "properties": {"ok": {"type": "boolean"}}})
    task = await stack.tasks.CreateTask(
        task_pb2.CreateTaskRequest(
            task=task_pb2.Task(
                name=f"gw-{uuid.uuid4().hex[:6]}", prompt_template="go", response_schema=schema
            )
        ),
        metadata=md,
    )
    port = free_port()
    gateway = ServiceProcess(
        "gateway",
        env=_env(
            "",
            nats_server.url,
            HTTP_PORT=str(port),
            HTTP_BIND_HOST="127.0.0.1",
            PROVIDER_SVC_ADDRESS=f"127.0.0.1:{stack.provider.runtime.port}",
            AGENT_SVC_ADDRESS=f"127.0.0.1:{stack.agent.runtime.port}",
        ),
        port=port,
        log=tmp_path / "gateway.log",
    )
    gateway.start()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:

        async def ready() -> None:
            try:
                response = await http.get("/readyz")
            except httpx.HTTPError as exc:
                raise AssertionError(str(exc)) from exc
            assert response.status_code == 200

        await eventually(ready, timeout=30)
        readiness: list[tuple[float, int]] = []

        async def watch() -> None:
            while True:
                try:
                    response = await http.get("/readyz", timeout=0.5)
                except httpx.HTTPError:
                    return
                readiness.append((time.monotonic(), response.status_code))
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        body = {"agent_id": agent.agent.id, "task_id": task.task.id}

        async def post() -> object:
            response = await http.post(
                "/v1/runs", json=body, headers={"authorization": f"Bearer {keys.admin}"}
            )
            assert response.status_code == 201 and response.json()["status"] == "succeeded", response.text
            return response

        calls = [asyncio.create_task(post()) for _ in range(IN_FLIGHT)]
        signalled = await _terminate_during(gateway, calls)
        watcher.cancel()
    not_ready = [t for t, s in readiness if s == 503]
    assert not_ready and not_ready[0] >= signalled, "readiness turned 503 after the signal"


async def test_the_gateway_keeps_its_own_signal_handlers_while_it_serves_and_stops(stack, nats_server):
    """uvicorn does not take SIGTERM over, so it cannot put back the default (fatal) one.

    It used to: a SIGTERM arriving while the gateway closed its jobs and channels, after
    uvicorn had stopped, killed the process (exit -15) instead of letting it finish.
    """
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    handle = await start_gateway(stack, nats_server.url)
    try:
        response = await handle.http.get("/healthz")
        assert response.status_code == 200
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    finally:
        await handle.http.aclose()
        await handle.server.stop()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
