"""Registry eviction reaches every agent_svc replica (learned from the events)."""

from __future__ import annotations

import contextlib
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


@contextlib.asynccontextmanager
async def _second_replica(stack, keys, database_url, nats_server):
    """Another agent_svc on the same database and NATS, and a channel to it."""
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
        yield replica, channel
    finally:
        await channel.close(None)
        await replica.stop()


async def test_changes_made_through_one_replica_evict_on_the_other(
    stack, keys, database_url, nats_server, llm_stub
):
    md = auth(keys.admin)
    async with _second_replica(stack, keys, database_url, nats_server) as (replica, channel):
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
        built = here.peek(key)
        assert built is not None
        assert there.peek(key) is not None
        # Named after the agent (for traces; and pydantic-ai infers no name per run).
        assert built.agent.name == agent.name

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


async def test_a_run_uses_the_current_versions_even_when_its_replica_has_not_heard_yet(
    stack, keys, database_url, nats_server
):
    """Which version is current is a hint on each replica; the run's insert checks it."""
    md = auth(keys.admin)
    async with _second_replica(stack, keys, database_url, nats_server) as (replica, channel):
        other_runs = run_pb2_grpc.RunServiceStub(channel)
        tag = uuid.uuid4().hex[:6]
        provider = (
            await stack.providers.CreateProvider(
                provider_pb2.CreateProviderRequest(
                    provider=provider_pb2.Provider(name=f"h-{tag}", type="test")
                ),
                metadata=md,
            )
        ).provider
        agent = (
            await stack.agents.CreateAgent(
                agent_pb2.CreateAgentRequest(
                    agent=agent_pb2.Agent(name=f"h-{tag}", provider_id=provider.id, model="test")
                ),
                metadata=md,
            )
        ).agent
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        task = (
            await stack.tasks.CreateTask(
                task_pb2.CreateTaskRequest(
                    task=task_pb2.Task(name=f"h-{tag}", prompt_template="go", response_schema=struct(schema))
                ),
                metadata=md,
            )
        ).task
        run_input = run_pb2.RunInput(agent_id=agent.id, task_id=task.id)
        reply = await other_runs.CreateRun(run_pb2.CreateRunRequest(input=run_input), metadata=md)
        assert (reply.run.status, reply.run.task_version) == ("succeeded", 1)
        assert replica.runs is not None
        hints = replica.runs._heads

        async def stale(collection: str, resource_id: str, version: int) -> None:
            """The change event evicts the hint; put the old one back, as if it had not arrived."""

            async def forgotten() -> None:
                assert hints.get((collection, resource_id)) is None

            await eventually(forgotten, timeout=5)
            hints.put((collection, resource_id), version)

        # Task version 2 is made through the other replica; this one still believes in 1.
        await stack.tasks.UpdateTask(
            task_pb2.UpdateTaskRequest(
                task=task_pb2.Task(id=task.id, prompt_template="go on"),
                update_mask=field_mask_pb2.FieldMask(paths=["prompt_template"]),
            ),
            metadata=md,
        )
        await stale("tasks", task.id, 1)
        reply = await other_runs.CreateRun(run_pb2.CreateRunRequest(input=run_input), metadata=md)
        assert (reply.run.status, reply.run.task_version) == ("succeeded", 2)
        assert hints.get(("tasks", task.id)) == 2  # learned again from the database

        # The same for a started and a streamed run, and for an agent update.
        await stack.agents.UpdateAgent(
            agent_pb2.UpdateAgentRequest(
                agent=agent_pb2.Agent(id=agent.id, system_prompt="changed"),
                update_mask=field_mask_pb2.FieldMask(paths=["system_prompt"]),
            ),
            metadata=md,
        )
        await stale("agents", agent.id, 1)
        started = await other_runs.StartRun(run_pb2.StartRunRequest(input=run_input), metadata=md)
        assert (started.run.agent_version, started.run.task_version) == (2, 2)
        hints.put(("agents", agent.id), 1)
        streamed = [
            message
            async for message in other_runs.StreamRun(run_pb2.StreamRunRequest(input=run_input), metadata=md)
        ]
        final = streamed[-1].run
        assert (final.status, final.agent_version) == ("succeeded", 2)

        # A task deleted elsewhere: NOT_FOUND, whatever the hint says, and no run stored.
        runs_before = await stack.runs.ListRuns(run_pb2.ListRunsRequest(task_id=task.id), metadata=md)
        deleted = await stack.tasks.GetTask(task_pb2.GetTaskRequest(id=task.id), metadata=md)
        await stack.tasks.DeleteTask(
            task_pb2.DeleteTaskRequest(id=task.id, etag=deleted.task.etag), metadata=md
        )
        await stale("tasks", task.id, 2)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await other_runs.CreateRun(run_pb2.CreateRunRequest(input=run_input), metadata=md)
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        runs_after = await stack.runs.ListRuns(run_pb2.ListRunsRequest(task_id=task.id), metadata=md)
        assert len(runs_after.runs) == len(runs_before.runs)
