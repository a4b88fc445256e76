"""Runs end to end, side by side: pydantic-ai in-process, `CreateRun` over gRPC, `POST /v1/runs`.

All call the same local OpenAI-compatible stub (its own process) through pydantic-ai's
OpenAI chat model with the same compiled output type and the same OpenAI client
(`DirectOpenAI`, as agent_svc builds it), so the differences are what agentmgr adds:
for agent_svc, gRPC, auth, the registry, the run's statement with its events, the
outbox relay; for the gateway, one more hop (HTTP, JSON, auth).
`POST /v1/runs` is sent by two clients: a minimal one (`bench.lean_http`), whose
figure is the gateway's own share, and aiohttp, which adds what a typical client
library spends on a request of its own. pydantic-ai in-process with the OpenAI SDK's own
client runs beside them: what `DirectOpenAI` saves.
Targets (2 cores, everything on one machine): agent_svc adds p50 < 3 ms at c=1 and keeps
>= 75% of in-process throughput at c=64; the gateway adds < 1.5 ms p50 at c=1 and keeps
>= 85% of agent_svc's throughput.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx2
from google.protobuf import struct_pb2
from openai import AsyncOpenAI
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from agentmgr.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    provider_pb2,
    provider_pb2_grpc,
    run_pb2,
    run_pb2_grpc,
    task_pb2,
    task_pb2_grpc,
)
from bench import floor
from bench.harness import ROOT, Result, System, http_session, interleaved, post_json
from bench.lean_http import LeanHttpClient
from libs.common.embedded import free_port
from services.agent_svc._openai_direct import DirectOpenAI
from services.agent_svc.schema_compiler import SchemaCompiler

SCHEMA = {
    "type": "object",
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "topics": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
    },
    "required": ["sentiment", "score", "topics"],
    "additionalProperties": False,
}
ANSWER = {"sentiment": "positive", "score": 0.9, "topics": ["tea", "biscuits"]}
STUB_KEY = "sk-bench-stub-key-0000000000"
LEVELS = (1, 16, 64)
DIRECT = "pydantic-ai in-process"
SDK = "pydantic-ai in-process, SDK client"
GRPC = "agent_svc CreateRun (gRPC)"
LEAN = "gateway /v1/runs (lean client)"
AIOHTTP = "gateway /v1/runs (aiohttp)"
ROUNDS = {1: 6, 16: 3, 64: 2}
"""Alternating slices per level: short ones at c=1; at c=64 a call takes ~1 s, so longer."""
C1_SCALE = 3
"""At c=1 each load runs this many times longer, in twice the slices: the c=1 figures are
differences of p50s a fraction of a millisecond apart, and 6 s is only ~300 requests."""


def schedule(concurrency: int, duration_s: float) -> tuple[float, int]:
    """Seconds of load per call kind at `concurrency`, and in how many alternating slices."""
    if concurrency == 1:
        return duration_s * C1_SCALE, ROUNDS[1] * 2
    return duration_s, ROUNDS[concurrency]


def _struct(value: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


async def wait_http(url: str) -> None:
    async with httpx2.AsyncClient() as client:
        for _ in range(300):
            try:
                await client.get(url, headers={"authorization": f"Bearer {STUB_KEY}"})
                return
            except httpx2.HTTPError:
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


@dataclass
class Stack:
    """The system under test, with a task ready to run."""

    system: System
    stub: subprocess.Popen[bytes]
    stub_url: str
    agent_address: str
    gateway_url: str
    agent_id: str
    task_id: str

    def stop(self) -> None:
        self.stub.terminate()
        self.stub.wait(10)
        self.system.stop()


async def start(*, gateway: bool = True) -> Stack:
    """PostgreSQL, NATS, the stub, provider_svc, agent_svc (and the gateway), a task to run."""
    system = System()
    await system.start(
        {
            "provider_svc": ROOT / "services" / "provider_svc" / "migrations",
            "agent_svc": ROOT / "services" / "agent_svc" / "migrations",
        }
    )
    stub_port = free_port()
    stub = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.llm_stub",
            str(stub_port),
            STUB_KEY,
            f"bench={json.dumps(ANSWER)}",
        ],
        cwd=ROOT,
    )
    stub_url = f"http://127.0.0.1:{stub_port}/v1"
    try:
        await wait_http(f"{stub_url}/models")
        provider_port = await system.service(
            "provider_svc",
            "PROVIDER_GRPC_PORT",
            {"VALIDATION_WORKER_ENABLED": "false", "SSRF_ALLOW_LOOPBACK": "true"},
        )
        internal = system.last_env["PROVIDER_INTERNAL_GRPC_PORT"]
        agent_port = await system.service(
            "agent_svc",
            "AGENT_GRPC_PORT",
            {
                "PROVIDER_SVC_ADDRESS": f"127.0.0.1:{provider_port}",
                "PROVIDER_INTERNAL_ADDRESS": f"127.0.0.1:{internal}",
                "SSRF_ALLOW_LOOPBACK": "true",
                "DB_POOL_SIZE": "40",
            },
        )
        gateway_url = ""
        if gateway:
            http_port = await system.http_service(
                "gateway",
                "HTTP_PORT",
                {
                    "PROVIDER_SVC_ADDRESS": f"127.0.0.1:{provider_port}",
                    "AGENT_SVC_ADDRESS": f"127.0.0.1:{agent_port}",
                    "HTTP_BIND_HOST": "127.0.0.1",
                },
            )
            gateway_url = f"http://127.0.0.1:{http_port}"
        md = (("authorization", f"Bearer {system.admin_key}"),)
        tag = uuid.uuid4().hex[:6]
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{provider_port}") as pch,
            grpc.aio.insecure_channel(f"127.0.0.1:{agent_port}") as ach,
        ):
            provider = await provider_pb2_grpc.ProviderServiceStub(pch).CreateProvider(
                provider_pb2.CreateProviderRequest(
                    provider=provider_pb2.Provider(
                        name=f"stub-{tag}", type="openai_compatible", base_url=stub_url
                    ),
                    api_key=STUB_KEY,
                ),
                metadata=md,
            )
            agent = await agent_pb2_grpc.AgentServiceStub(ach).CreateAgent(
                agent_pb2.CreateAgentRequest(
                    agent=agent_pb2.Agent(
                        name=f"bench-{tag}",
                        provider_id=provider.provider.id,
                        model="bench",
                        system_prompt="Classify.",
                    )
                ),
                metadata=md,
            )
            task = await task_pb2_grpc.TaskServiceStub(ach).CreateTask(
                task_pb2.CreateTaskRequest(
                    task=task_pb2.Task(
                        name=f"bench-{tag}",
                        instructions="Answer with the schema.",
                        prompt_template="Review: {text}",
                        response_schema=_struct(SCHEMA),
                    )
                ),
                metadata=md,
            )
        return Stack(
            system, stub, stub_url, f"127.0.0.1:{agent_port}", gateway_url, agent.agent.id, task.task.id
        )
    except BaseException:
        stub.terminate()
        system.stop()
        raise


async def run(*, duration_s: float = 6.0) -> tuple[list[Result], list[str]]:
    """The loads side by side at each level; then the floor under agent_svc's share."""
    stack = await start()
    try:
        key = stack.system.admin_key
        md = (("authorization", f"Bearer {key}"),)
        request = run_pb2.CreateRunRequest(
            input=run_pb2.RunInput(
                agent_id=stack.agent_id, task_id=stack.task_id, variables=_struct({"text": "Lovely tea."})
            )
        )
        body = {"agent_id": stack.agent_id, "task_id": stack.task_id, "variables": {"text": "Lovely tea."}}
        compiled = SchemaCompiler().compile(SCHEMA)
        limits = httpx2.Limits(max_connections=512, max_keepalive_connections=512)
        results: list[Result] = []
        last_run: list[str] = []
        async with (
            grpc.aio.insecure_channel(stack.agent_address) as channel,
            httpx2.AsyncClient(limits=limits) as model_http,
            http_session(stack.gateway_url) as rest,
            LeanHttpClient(stack.gateway_url) as lean,
        ):
            runs = run_pb2_grpc.RunServiceStub(channel)

            def in_process(client_class: type[AsyncOpenAI]) -> Callable[[int], Awaitable[None]]:
                client = client_class(
                    base_url=stack.stub_url, api_key=STUB_KEY, http_client=model_http, max_retries=0
                )
                agent = Agent(
                    OpenAIChatModel("bench", provider=OpenAIProvider(openai_client=client)),
                    name="bench",  # as agent_svc names its agents
                    output_type=compiled.output_type,
                    system_prompt="Classify.",
                    instructions="Answer with the schema.",
                )

                async def call(_: int) -> None:
                    result = await agent.run("Review: Lovely tea.")
                    compiled.dump(result.output)

                return call

            # The baseline for "agent_svc adds" is pydantic-ai with the client agent_svc gives
            # it; the SDK's own client beside it shows what that client saves.
            direct, sdk = in_process(DirectOpenAI), in_process(AsyncOpenAI)

            async def create_run(_: int) -> None:
                reply = await runs.CreateRun(request, metadata=md)
                if reply.run.status != "succeeded":
                    raise RuntimeError(f"run failed: {reply.run.error}")
                last_run[:] = [reply.run.id]

            async def succeeded(reply: Awaitable[tuple[int, Any]]) -> None:
                status, answer = await reply
                if status != 201 or answer["status"] != "succeeded":
                    raise RuntimeError(f"run failed: {answer}")

            async def post_run(_: int) -> None:
                await succeeded(post_json(rest, "/v1/runs", body, key=key))

            async def post_run_lean(_: int) -> None:
                await succeeded(lean.post_json("/v1/runs", body, key=key))

            for concurrency in LEVELS:
                seconds, rounds = schedule(concurrency, duration_s)
                results += await interleaved(
                    [
                        (SDK, sdk),
                        (DIRECT, direct),
                        (GRPC, create_run),
                        (LEAN, post_run_lean),
                        (AIOHTTP, post_run),
                    ],
                    concurrency=concurrency,
                    duration_s=seconds,
                    rounds=rounds,
                )
        rows = await floor.run(
            agent_address=stack.agent_address, database_url=stack.system.database_url, run_id=last_run[0]
        )
        return results, rows
    finally:
        stack.stop()


def report(results: list[Result], floor_rows: list[str]) -> None:
    for result in results:
        print(result.row())
    by = {(r.label, r.concurrency): r for r in results}
    for concurrency in LEVELS:
        sdk, direct, ours = by[(SDK, concurrency)], by[(DIRECT, concurrency)], by[(GRPC, concurrency)]
        saved_ms = sdk.percentile(0.5) - direct.percentile(0.5)
        svc_ms = ours.percentile(0.5) - direct.percentile(0.5)
        print(
            f"  c={concurrency:<3} agentmgr's OpenAI client saves p50 {saved_ms:6.2f} ms in-process, "
            f"throughput {direct.rps / sdk.rps * 100:5.1f}% of the SDK client's"
        )
        print(
            f"        agent_svc adds p50 {svc_ms:6.2f} ms, "
            f"throughput {ours.rps / direct.rps * 100:5.1f}% of in-process"
        )
        for label, client in ((LEAN, "lean client"), (AIOHTTP, "aiohttp    ")):
            rest = by[(label, concurrency)]
            gw_ms = rest.percentile(0.5) - ours.percentile(0.5)
            print(
                f"        gateway adds p50 {gw_ms:6.2f} ms ({client}), "
                f"throughput {rest.rps / ours.rps * 100:5.1f}% of agent_svc"
            )
    print(
        "targets: agent_svc adds p50 < 3 ms at c=1 and keeps >= 75% at c=64; "
        "gateway adds < 1.5 ms at c=1 and keeps >= 85% of agent_svc\n"
        "  (the lean client's figure is the gateway's own share; aiohttp's adds that "
        "client's own cost per request)"
    )
    print('the two waits every CreateRun has (docs/performance.md, "The floor"):')
    print("\n".join(floor_rows))
