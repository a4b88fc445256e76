"""Registry eviction reaches every agent_svc replica (learned from the events)."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from agentmgr.v1 import agent_pb2, provider_pb2, run_pb2, run_pb2_grpc, task_pb2
from services.agent_svc.runs import RunKey
from services.agent_svc.server import AgentServer
from tests.conftest import agent_settings
from tests.support.eventually import eventually
from tests.support.grpc_helpers import auth

pytestmark = pytest.mark.asyncio


def struct(value) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


async def test_changes_made_through_one_replica_evict_on_the_other(
    stack, keys, database_url, nats_server, llm_stub
):
    md = auth(keys.admin)
    replica = AgentServer(
        agent_settings(
            database_url=database_url,
            nats_url=nats_server.url,
            service_key=keys.service,
            provider_address=f"127.0.0.1:{stack.provider.runtime.port}",
            internal_address=f"127.0.0.1:{stack.provider.runtime.internal_port}",
        )
    )
    await replica.start("127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{replica.runtime.port}")
    try:
        other_runs = run_pb2_grpc.RunServiceStub(channel)
        llm_stub.script("replicated", [{"ok": True}])
        provider = (
            await stack.providers.CreateProvider(
                provider_pb2.CreateProviderRequest(
                    provider=provider_pb2.Provider(
                        name=f"r-{uuid.uuid4().hex[:6]}", type="openai_compatible", base_url=llm_stub.url()
                    ),
                    api_key=llm_stub.api_key,
                ),
                metadata=md,
            )
        ).provider
        agent = (
            await stack.agents.CreateAgent(
                agent_pb2.CreateAgentRequest(
                    agent=agent_pb2.Agent(
                        name=f"r-{uuid.uuid4().hex[:6]}", provider_id=provider.id, model="replicated"
                    )
                ),
                metadata=md,
            )
        ).agent
        task = (
            await stack.tasks.CreateTask(
                task_pb2.CreateTaskRequest(
                    task=task_pb2.Task(
                        name=f"r-{uuid.uuid4().hex[:6]}",
                        prompt_template="go",
                        response_schema=struct({"type": "object", "properties": {"ok": {"type": "boolean"}}}),
                    )
                ),
                metadata=md,
            )
        ).task
        key = RunKey(agent.id, 1, task.id, 1, provider.id)
        run_input = run_pb2.RunInput(agent_id=agent.id, task_id=task.id)
        for runs in (stack.runs, other_runs):
            reply = await runs.CreateRun(run_pb2.CreateRunRequest(input=run_input), metadata=md)
            assert reply.run.status == "succeeded", reply.run.error
        assert replica.engine is not None and stack.agent.engine is not None
        here, there = replica.engine.registry, stack.agent.engine.registry
        assert here.peek(key) is not None
        assert there.peek(key) is not None

        # Change the agent through replica A: replica B's built agent goes.
        await stack.agents.UpdateAgent(
            agent_pb2.UpdateAgentRequest(
                agent=agent_pb2.Agent(id=agent.id, system_prompt="changed"),
                update_mask=field_mask_pb2.FieldMask(paths=["system_prompt"]),
            ),
            metadata=md,
        )

        async def evicted_everywhere():
            assert here.peek(key) is None
            assert there.peek(key) is None

        await eventually(evicted_everywhere, timeout=5)

        # A credential change (provider update) also evicts on the other replica.
        reply = await other_runs.CreateRun(run_pb2.CreateRunRequest(input=run_input), metadata=md)
        assert reply.run.agent_version == 2
        key2 = RunKey(agent.id, 2, task.id, 1, provider.id)
        assert here.peek(key2) is not None
        await stack.providers.UpdateProvider(
            provider_pb2.UpdateProviderRequest(
                provider=provider_pb2.Provider(id=provider.id),
                update_mask=field_mask_pb2.FieldMask(paths=["api_key"]),
                api_key="sk-rotated-key-000000000",
            ),
            metadata=md,
        )

        async def credential_evicted():
            assert here.peek(key2) is None

        await eventually(credential_evicted, timeout=5)
        reply = await other_runs.CreateRun(run_pb2.CreateRunRequest(input=run_input), metadata=md)
        assert reply.run.error.code == "PROVIDER_AUTH_FAILED"  # the new (wrong) key is used at once
    finally:
        await channel.close(None)
        await replica.stop()
