from __future__ import annotations

import uuid

import jsonschema
from google.protobuf import struct_pb2

from agentmgr.v1 import agent_pb2, provider_pb2, run_pb2, task_pb2
from libs.common.protojson import struct_to_dict
from tests.support.grpc_helpers import auth

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 3},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
    },
    "required": ["title", "score"],
    "additionalProperties": False,
}


def struct(value) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


async def test_test_provider_run(stack, keys):
    md = auth(keys.admin)
    p = await stack.providers.CreateProvider(
        provider_pb2.CreateProviderRequest(
            provider=provider_pb2.Provider(name=f"t-{uuid.uuid4().hex[:6]}", type="test")
        ),
        metadata=md,
    )
    a = await stack.agents.CreateAgent(
        agent_pb2.CreateAgentRequest(
            agent=agent_pb2.Agent(name="a1", provider_id=p.provider.id, model="test", system_prompt="be nice")
        ),
        metadata=md,
    )
    t = await stack.tasks.CreateTask(
        task_pb2.CreateTaskRequest(
            task=task_pb2.Task(
                name="t1",
                instructions="rate it",
                prompt_template="Rate {thing}",
                response_schema=struct(SCHEMA),
            )
        ),
        metadata=md,
    )
    assert list(t.task.variables) == ["thing"]
    r = await stack.runs.CreateRun(
        run_pb2.CreateRunRequest(
            input=run_pb2.RunInput(agent_id=a.agent.id, task_id=t.task.id, variables=struct({"thing": "x"}))
        ),
        metadata=md,
    )
    print(r.run)
    assert r.run.status == "succeeded", r.run.error
    jsonschema.validate(struct_to_dict(r.run.output), SCHEMA)
