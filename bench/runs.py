"""Run overhead: `CreateRun` over gRPC vs the same pydantic-ai agent in-process.

Both call the same local OpenAI-compatible stub (its own process) through pydantic-ai's
OpenAI chat model with the same compiled output type, so the difference is what
agentmgr adds: gRPC, auth, the registry, two transactions with their events, the
outbox relay. Targets (2 cores, everything on one machine): added p50 < 3 ms at
concurrency 1; CreateRun throughput at concurrency 64 >= 75% of in-process.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import grpc
import httpx2
from google.protobuf import struct_pb2
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from agentmgr.v1 import agent_pb2, agent_pb2_grpc, provider_pb2, provider_pb2_grpc, run_pb2, run_pb2_grpc, task_pb2, task_pb2_grpc
from bench.harness import ROOT, Result, System, load
from libs.common.embedded import free_port
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


def _struct(value: dict[str, object]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


async def _wait_http(port: int) -> None:
    async with httpx2.AsyncClient() as client:
        for _ in range(200):
            try:
                await client.get(f"http://127.0.0.1:{port}/v1/models", headers={"authorization": f"Bearer {STUB_KEY}"})
                return
            except httpx2.HTTPError:
                await asyncio.sleep(0.05)
    raise RuntimeError("stub did not start")


async def run(*, duration_s: float = 5.0) -> list[Result]:
    system = System()
    await system.start(
        {
            "provider_svc": ROOT / "services" / "provider_svc" / "migrations",
            "agent_svc": ROOT / "services" / "agent_svc" / "migrations",
        }
    )
    stub_port = free_port()
    stub = subprocess.Popen(
        [sys.executable, "-m", "tests.support.llm_stub", str(stub_port), STUB_KEY, f"bench={json.dumps(ANSWER)}"],
        cwd=ROOT,
    )
    try:
        await _wait_http(stub_port)
        provider_port = await system.service(
            "provider_svc", "PROVIDER_GRPC_PORT", {"VALIDATION_WORKER_ENABLED": "false", "SSRF_ALLOW_LOOPBACK": "true"}
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
        md = (("authorization", f"Bearer {system.admin_key}"),)
        base_url = f"http://127.0.0.1:{stub_port}/v1"
        results: list[Result] = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{provider_port}") as pch, grpc.aio.insecure_channel(
            f"127.0.0.1:{agent_port}"
        ) as ach:
            tag = uuid.uuid4().hex[:6]
            provider = await provider_pb2_grpc.ProviderServiceStub(pch).CreateProvider(
                provider_pb2.CreateProviderRequest(
                    provider=provider_pb2.Provider(name=f"stub-{tag}", type="openai_compatible", base_url=base_url),
                    api_key=STUB_KEY,
                ),
                metadata=md,
            )
            agent = await agent_pb2_grpc.AgentServiceStub(ach).CreateAgent(
                agent_pb2.CreateAgentRequest(
                    agent=agent_pb2.Agent(name=f"bench-{tag}", provider_id=provider.provider.id, model="bench", system_prompt="Classify.")
                ),
                metadata=md,
            )
            task = await task_pb2_grpc.TaskServiceStub(ach).CreateTask(
                task_pb2.CreateTaskRequest(
                    task=task_pb2.Task(
                        name=f"bench-{tag}", instructions="Answer with the schema.", prompt_template="Review: {text}", response_schema=_struct(SCHEMA)
                    )
                ),
                metadata=md,
            )
            runs = run_pb2_grpc.RunServiceStub(ach)
            request = run_pb2.CreateRunRequest(
                input=run_pb2.RunInput(agent_id=agent.agent.id, task_id=task.task.id, variables=_struct({"text": "Lovely tea."}))
            )

            async def create_run(_: int) -> None:
                reply = await runs.CreateRun(request, metadata=md)
                if reply.run.status != "succeeded":
                    raise RuntimeError(f"run failed: {reply.run.error}")

            compiled = SchemaCompiler().compile(SCHEMA)
            http = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=512, max_keepalive_connections=512))
            in_process = Agent(
                OpenAIChatModel("bench", provider=OpenAIProvider(base_url=base_url, api_key=STUB_KEY, http_client=http)),
                output_type=compiled.output_type,
                system_prompt="Classify.",
                instructions="Answer with the schema.",
                model_settings={"max_retries": 0},
            )

            async def direct(_: int) -> None:
                result = await in_process.run("Review: Lovely tea.")
                compiled.dump(result.output)

            for concurrency in LEVELS:
                results.append(await load("pydantic-ai in-process", direct, concurrency=concurrency, duration_s=duration_s))
                results.append(await load("agent_svc CreateRun (gRPC)", create_run, concurrency=concurrency, duration_s=duration_s))
            await http.aclose()
        return results
    finally:
        stub.terminate()
        stub.wait(10)
        system.stop()


def report(results: list[Result]) -> None:
    for result in results:
        print(result.row())
    by = {(r.label.split()[0], r.concurrency): r for r in results}
    for concurrency in LEVELS:
        direct, ours = by[("pydantic-ai", concurrency)], by[("agent_svc", concurrency)]
        added = ours.percentile(0.5) - direct.percentile(0.5)
        print(
            f"  c={concurrency:<3} added p50 {added:6.2f} ms   throughput {ours.rps / direct.rps * 100:5.1f}% of in-process"
        )
    print("targets: added p50 < 3 ms at c=1; CreateRun throughput at c=64 >= 75% of in-process")
