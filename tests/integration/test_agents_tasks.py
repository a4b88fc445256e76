"""AgentService and TaskService through real gRPC: versions, errors, events, provider rules."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from agentmgr.v1 import agent_pb2, provider_pb2, task_pb2
from libs.common.protojson import struct_to_dict
from tests.support.events import read_events
from tests.support.eventually import eventually
from tests.support.grpc_helpers import auth, bad_fields, error_of

pytestmark = pytest.mark.asyncio

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def _name(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def struct(value) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


async def expect(call, code):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, f"{info.value.code()} {info.value.details()}"
    return info.value


async def provider(stack, keys, project="default", type_="test"):
    reply = await stack.providers.CreateProvider(
        provider_pb2.CreateProviderRequest(
            provider=provider_pb2.Provider(name=_name("p"), type=type_, project=project)
        ),
        metadata=auth(keys.admin),
    )
    return reply.provider


async def agent(stack, keys, provider_id, **fields):
    fields.setdefault("name", _name("a"))
    fields.setdefault("model", "test")
    reply = await stack.agents.CreateAgent(
        agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(provider_id=provider_id, **fields)),
        metadata=auth(keys.admin),
    )
    return reply.agent


async def task(stack, keys, **fields):
    fields.setdefault("name", _name("t"))
    fields.setdefault("response_schema", struct(SCHEMA))
    reply = await stack.tasks.CreateTask(
        task_pb2.CreateTaskRequest(task=task_pb2.Task(**fields)), metadata=auth(keys.admin)
    )
    return reply.task


# --- agents --------------------------------------------------------------------------------


async def test_agent_versions_are_kept_and_readable(stack, keys, js):
    p = await provider(stack, keys)
    settings = agent_pb2.ModelSettings(temperature=0.2, max_tokens=100, stop_sequences=["END"])
    created = await agent(
        stack, keys, p.id, system_prompt="v1 prompt", model_settings=settings, labels={"team": "ml"}
    )
    assert created.version == 1
    assert created.output_retries == 2  # the default
    assert created.model_settings.temperature == pytest.approx(0.2)
    assert not created.model_settings.HasField("top_p")

    mask = field_mask_pb2.FieldMask(paths=["system_prompt", "output_retries"])
    updated = (
        await stack.agents.UpdateAgent(
            agent_pb2.UpdateAgentRequest(
                agent=agent_pb2.Agent(
                    id=created.id, etag=created.etag, system_prompt="v2 prompt", output_retries=0
                ),
                update_mask=mask,
            ),
            metadata=auth(keys.admin),
        )
    ).agent
    assert updated.version == 2 and updated.system_prompt == "v2 prompt" and updated.output_retries == 0
    assert updated.etag != created.etag and updated.create_time == created.create_time

    v1 = (
        await stack.agents.GetAgent(
            agent_pb2.GetAgentRequest(id=created.id, version=1), metadata=auth(keys.viewer)
        )
    ).agent
    assert v1.system_prompt == "v1 prompt" and v1.version == 1 and v1.output_retries == 2
    current = (
        await stack.agents.GetAgent(agent_pb2.GetAgentRequest(id=created.id), metadata=auth(keys.viewer))
    ).agent
    assert current == updated
    versions = await stack.agents.ListAgentVersions(
        agent_pb2.ListAgentVersionsRequest(id=created.id, page_size=1), metadata=auth(keys.viewer)
    )
    assert [a.version for a in versions.agents] == [2]
    older = await stack.agents.ListAgentVersions(
        agent_pb2.ListAgentVersionsRequest(id=created.id, page_size=1, page_token=versions.next_page_token),
        metadata=auth(keys.viewer),
    )
    assert [a.version for a in older.agents] == [1] and not older.next_page_token
    await expect(
        stack.agents.GetAgent(
            agent_pb2.GetAgentRequest(id=created.id, version=3), metadata=auth(keys.viewer)
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    # A stale etag is ABORTED; an update that changes nothing keeps the version.
    await expect(
        stack.agents.UpdateAgent(
            agent_pb2.UpdateAgentRequest(
                agent=agent_pb2.Agent(id=created.id, etag=created.etag, model="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["model"]),
            ),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.ABORTED,
    )
    same = await stack.agents.UpdateAgent(
        agent_pb2.UpdateAgentRequest(
            agent=agent_pb2.Agent(id=created.id, model="test"),
            update_mask=field_mask_pb2.FieldMask(paths=["model"]),
        ),
        metadata=auth(keys.admin),
    )
    assert same.agent.version == 2

    async def events():
        found = [
            e
            for e in await read_events(js, subject="agentmgr.events.agents.>")
            if e["subject"] == f"agents/{created.id}"
        ]
        assert [e["type"] for e in found] == ["agentmgr.agent.created", "agentmgr.agent.updated"]
        return found

    found = await eventually(events)
    assert found[1]["data"]["version"] == 2 and found[1]["data"]["system_prompt"] == "v2 prompt"


async def test_agent_list_filters_and_delete(stack, keys):
    project = _name("proj")
    p1 = await provider(stack, keys, project=project)
    p2 = await provider(stack, keys, project=project)
    a1 = await agent(stack, keys, p1.id, project=project, labels={"env": "prod"})
    a2 = await agent(stack, keys, p2.id, project=project, labels={"env": "dev"})
    by_provider = await stack.agents.ListAgents(
        agent_pb2.ListAgentsRequest(project=project, provider_id=p1.id), metadata=auth(keys.viewer)
    )
    assert [a.id for a in by_provider.agents] == [a1.id]
    by_label = await stack.agents.ListAgents(
        agent_pb2.ListAgentsRequest(project=project, label="env=dev"), metadata=auth(keys.viewer)
    )
    assert [a.id for a in by_label.agents] == [a2.id]
    error = await expect(
        stack.agents.ListAgents(agent_pb2.ListAgentsRequest(label="nolabel"), metadata=auth(keys.viewer)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["label"]
    await stack.agents.DeleteAgent(agent_pb2.DeleteAgentRequest(id=a1.id), metadata=auth(keys.admin))
    await expect(
        stack.agents.GetAgent(agent_pb2.GetAgentRequest(id=a1.id), metadata=auth(keys.admin)),
        grpc.StatusCode.NOT_FOUND,
    )
    # The name is free again.
    again = await agent(stack, keys, p1.id, project=project, name=a1.name)
    assert again.id != a1.id


async def test_agent_provider_must_exist_in_the_project(stack, keys):
    elsewhere = await provider(stack, keys, project="elsewhere")
    for provider_id in ("prv_nope", elsewhere.id, ""):
        error = await expect(
            stack.agents.CreateAgent(
                agent_pb2.CreateAgentRequest(
                    agent=agent_pb2.Agent(name=_name(), provider_id=provider_id, model="m")
                ),
                metadata=auth(keys.admin),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert bad_fields(error) == ["agent.provider_id"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "Bad Name"}, "agent.name"),
        ({"model": ""}, "agent.model"),
        ({"output_retries": 11}, "agent.output_retries"),
        ({"model_settings": agent_pb2.ModelSettings(temperature=3.0)}, "agent.model_settings.temperature"),
        ({"model_settings": agent_pb2.ModelSettings(timeout_s=0)}, "agent.model_settings.timeout_s"),
        ({"model_settings": agent_pb2.ModelSettings(max_tokens=0)}, "agent.model_settings.max_tokens"),
        ({"labels": {"Bad Key": "v"}}, "agent.labels.Bad Key"),
        ({"system_prompt": "x" * 100_001}, "agent.system_prompt"),
    ],
)
async def test_agent_fields_are_checked(stack, keys, fields, field):
    p = await provider(stack, keys)
    values = {"name": _name(), "model": "m", "provider_id": p.id, **fields}
    error = await expect(
        stack.agents.CreateAgent(
            agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(**values)), metadata=auth(keys.admin)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == [field]


async def test_agent_errors_and_permissions(stack, keys):
    p = await provider(stack, keys)
    created = await agent(stack, keys, p.id)
    await expect(
        stack.agents.CreateAgent(
            agent_pb2.CreateAgentRequest(
                agent=agent_pb2.Agent(name=created.name, provider_id=p.id, model="m")
            ),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    await expect(
        stack.agents.CreateAgent(
            agent_pb2.CreateAgentRequest(agent=agent_pb2.Agent(name=_name(), provider_id=p.id, model="m")),
            metadata=auth(keys.viewer),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect(stack.agents.ListAgents(agent_pb2.ListAgentsRequest()), grpc.StatusCode.UNAUTHENTICATED)
    await expect(
        stack.agents.GetAgent(agent_pb2.GetAgentRequest(id=created.id), metadata=auth(keys.team_viewer)),
        grpc.StatusCode.NOT_FOUND,
    )
    request_id = str(uuid.uuid4())
    first = await stack.agents.CreateAgent(
        agent_pb2.CreateAgentRequest(
            agent=agent_pb2.Agent(name=_name(), provider_id=p.id, model="m"), request_id=request_id
        ),
        metadata=auth(keys.admin),
    )
    second = await stack.agents.CreateAgent(
        agent_pb2.CreateAgentRequest(agent=first.agent, request_id=request_id), metadata=auth(keys.admin)
    )
    assert second.agent.id == first.agent.id


async def test_deleting_a_provider_in_use_needs_force(stack, keys):
    p = await provider(stack, keys)
    a = await agent(stack, keys, p.id)
    error = await expect(
        stack.providers.DeleteProvider(
            provider_pb2.DeleteProviderRequest(id=p.id), metadata=auth(keys.admin)
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error_of(error).reason == "PROVIDER_IN_USE"
    assert "1 agent" in (error.details() or "")
    await stack.agents.DeleteAgent(agent_pb2.DeleteAgentRequest(id=a.id), metadata=auth(keys.admin))
    await stack.providers.DeleteProvider(
        provider_pb2.DeleteProviderRequest(id=p.id), metadata=auth(keys.admin)
    )
    # force deletes even while used.
    p2 = await provider(stack, keys)
    await agent(stack, keys, p2.id)
    await stack.providers.DeleteProvider(
        provider_pb2.DeleteProviderRequest(id=p2.id, force=True), metadata=auth(keys.admin)
    )


# --- tasks ---------------------------------------------------------------------------------


async def test_task_versions_schema_and_variables(stack, keys, js):
    created = await task(stack, keys, prompt_template="Summarise {text} in {language}. Literal {{braces}}.")
    assert list(created.variables) == ["text", "language"]
    assert struct_to_dict(created.response_schema) == SCHEMA
    new_schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    updated = (
        await stack.tasks.UpdateTask(
            task_pb2.UpdateTaskRequest(
                task=task_pb2.Task(id=created.id, etag=created.etag, response_schema=struct(new_schema)),
                update_mask=field_mask_pb2.FieldMask(paths=["response_schema"]),
            ),
            metadata=auth(keys.admin),
        )
    ).task
    assert updated.version == 2
    v1 = (
        await stack.tasks.GetTask(
            task_pb2.GetTaskRequest(id=created.id, version=1), metadata=auth(keys.viewer)
        )
    ).task
    assert struct_to_dict(v1.response_schema) == SCHEMA
    assert struct_to_dict(updated.response_schema) == new_schema
    versions = await stack.tasks.ListTaskVersions(
        task_pb2.ListTaskVersionsRequest(id=created.id), metadata=auth(keys.viewer)
    )
    assert [t.version for t in versions.tasks] == [2, 1]

    async def events():
        found = [
            e
            for e in await read_events(js, subject="agentmgr.events.tasks.>")
            if e["subject"] == f"tasks/{created.id}"
        ]
        assert [e["type"] for e in found] == ["agentmgr.task.created", "agentmgr.task.updated"]

    await eventually(events)


@pytest.mark.parametrize(
    ("schema", "pointer"),
    [
        ({"type": "string"}, "/type"),
        (
            {"type": "object", "properties": {"a": {"type": "string", "minLength": -1}}},
            "/properties/a/minLength",
        ),
        ({"type": "object", "properties": {"a": {"not": {}}}}, "/properties/a/not"),
        (
            {"type": "object", "properties": {"a": {"$ref": "https://evil.example/s.json"}}},
            "/properties/a/$ref",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?=x)"}}},
            "/properties/a/pattern",
        ),
    ],
)
async def test_bad_schemas_name_the_place(stack, keys, schema, pointer):
    error = await expect(
        stack.tasks.CreateTask(
            task_pb2.CreateTaskRequest(task=task_pb2.Task(name=_name(), response_schema=struct(schema))),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["task.response_schema"]
    assert error_of(error).metadata["pointer"] == pointer
    verdict = await stack.tasks.CheckTaskSchema(
        task_pb2.CheckTaskSchemaRequest(response_schema=struct(schema)), metadata=auth(keys.viewer)
    )
    assert not verdict.valid
    assert [e.pointer for e in verdict.errors] == [pointer]


async def test_missing_schema_and_bad_templates(stack, keys):
    error = await expect(
        stack.tasks.CreateTask(
            task_pb2.CreateTaskRequest(task=task_pb2.Task(name=_name())), metadata=auth(keys.admin)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["task.response_schema"]
    for template in ("Hello {", "Hello {1abc}", "Hello {a.b}", "}"):
        error = await expect(
            stack.tasks.CreateTask(
                task_pb2.CreateTaskRequest(
                    task=task_pb2.Task(name=_name(), prompt_template=template, response_schema=struct(SCHEMA))
                ),
                metadata=auth(keys.admin),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert bad_fields(error) == ["task.prompt_template"]


async def test_check_schema_warns_about_provider_limits(stack, keys):
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "format": "email"},
            "b": {"oneOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["a"],
    }
    verdict = await stack.tasks.CheckTaskSchema(
        task_pb2.CheckTaskSchemaRequest(response_schema=struct(schema)), metadata=auth(keys.viewer)
    )
    assert verdict.valid and verdict.schema_hash
    messages = {(w.pointer, w.message.split(" ")[0]) for w in verdict.warnings}
    assert ("", "OpenAI") in messages
    assert any(w.pointer == "/properties/b/oneOf" and "openai" in w.provider_types for w in verdict.warnings)
    assert any(w.pointer == "/properties/a/format" for w in verdict.warnings)


# --- key order of a task's schema ------------------------------------------------------

# Neither sorted nor JSONB's order (shortest key first), nested, keywords out of order.
ORDERED: dict[str, Any] = {
    "type": "object",
    "required": ["zeta", "alpha"],
    "properties": {
        "zeta": {"type": "string", "description": "first"},
        "alpha": {
            "type": "object",
            "properties": {"zz": {"type": "integer"}, "a": {"type": "integer", "minimum": 1}},
        },
        "mid": {"type": "number"},
        "beta": {"type": "boolean"},
    },
    "additionalProperties": False,
}
REORDERED = {**ORDERED, "properties": dict(reversed(list(ORDERED["properties"].items())))}


def ordered(value) -> str:
    """Key order made visible: JSON text keeps it, `==` on dicts does not."""
    return json.dumps(value)


def schema_of(message: task_pb2.Task) -> dict:
    return json.loads(message.response_schema_json)


async def test_task_schema_keeps_the_authors_key_order(stack, keys, js):
    created = (
        await stack.tasks.CreateTask(
            task_pb2.CreateTaskRequest(
                task=task_pb2.Task(name=_name("ord"), response_schema_json=json.dumps(ORDERED))
            ),
            metadata=auth(keys.admin),
        )
    ).task
    assert ordered(schema_of(created)) == ordered(ORDERED)
    assert struct_to_dict(created.response_schema) == ORDERED  # still there for Struct clients
    got = (await stack.tasks.GetTask(task_pb2.GetTaskRequest(id=created.id), metadata=auth(keys.viewer))).task
    assert ordered(schema_of(got)) == ordered(ORDERED)
    listed = await stack.tasks.ListTasks(
        task_pb2.ListTasksRequest(page_size=1000), metadata=auth(keys.viewer)
    )
    (mine,) = [t for t in listed.tasks if t.id == created.id]
    assert ordered(schema_of(mine)) == ordered(ORDERED)

    # Reordering alone is a change (the model sees the new order): a new version. The
    # text field is also accepted as the mask path.
    def reorder(schema, etag, path="response_schema_json"):
        return stack.tasks.UpdateTask(
            task_pb2.UpdateTaskRequest(
                task=task_pb2.Task(id=created.id, etag=etag, response_schema_json=json.dumps(schema)),
                update_mask=field_mask_pb2.FieldMask(paths=[path]),
            ),
            metadata=auth(keys.admin),
        )

    updated = (await reorder(REORDERED, created.etag)).task
    assert updated.version == 2 and ordered(schema_of(updated)) == ordered(REORDERED)
    assert updated.response_schema == created.response_schema  # the same map
    again = (await reorder(REORDERED, updated.etag, path="response_schema")).task
    assert again.version == 2 and again.etag == updated.etag  # nothing changed: no version
    v1 = (
        await stack.tasks.GetTask(
            task_pb2.GetTaskRequest(id=created.id, version=1), metadata=auth(keys.viewer)
        )
    ).task
    assert ordered(schema_of(v1)) == ordered(ORDERED)
    versions = await stack.tasks.ListTaskVersions(
        task_pb2.ListTaskVersionsRequest(id=created.id), metadata=auth(keys.viewer)
    )
    assert [ordered(schema_of(t)) for t in versions.tasks] == [ordered(REORDERED), ordered(ORDERED)]

    async def events():
        found = [
            e
            for e in await read_events(js, subject="agentmgr.events.tasks.>")
            if e["subject"] == f"tasks/{created.id}"
        ]
        assert [e["type"] for e in found] == ["agentmgr.task.created", "agentmgr.task.updated"]
        # Events carry the ordered object as `response_schema`, not the wire's text field.
        assert [ordered(e["data"]["response_schema"]) for e in found] == [
            ordered(ORDERED),
            ordered(REORDERED),
        ]
        assert all("response_schema_json" not in e["data"] for e in found)

    await eventually(events)


async def test_schema_given_both_ways_must_agree(stack, keys):
    both = (
        await stack.tasks.CreateTask(
            task_pb2.CreateTaskRequest(
                task=task_pb2.Task(
                    name=_name("both"),
                    response_schema=struct(ORDERED),
                    response_schema_json=json.dumps(ORDERED),
                )
            ),
            metadata=auth(keys.admin),
        )
    ).task
    assert ordered(schema_of(both)) == ordered(ORDERED)  # the text decides the order

    other = json.dumps({**ORDERED, "required": ["zeta"]})
    error = await expect(
        stack.tasks.CreateTask(
            task_pb2.CreateTaskRequest(
                task=task_pb2.Task(
                    name=_name("both"), response_schema=struct(ORDERED), response_schema_json=other
                )
            ),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["task.response_schema_json"]
    assert "task.response_schema" in error.details()
    error = await expect(
        stack.tasks.UpdateTask(
            task_pb2.UpdateTaskRequest(
                task=task_pb2.Task(id=both.id, response_schema=struct(SCHEMA), response_schema_json=other),
                update_mask=field_mask_pb2.FieldMask(paths=["response_schema"]),
            ),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["task.response_schema_json"]
    error = await expect(
        stack.tasks.CheckTaskSchema(
            task_pb2.CheckTaskSchemaRequest(response_schema=struct(SCHEMA), response_schema_json=other),
            metadata=auth(keys.viewer),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["response_schema_json"]

    # Outside the mask, the schema fields are not read at all (AIP-134).
    renamed = (
        await stack.tasks.UpdateTask(
            task_pb2.UpdateTaskRequest(
                task=task_pb2.Task(id=both.id, description="d", response_schema_json="{"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            ),
            metadata=auth(keys.admin),
        )
    ).task
    assert renamed.version == 2 and ordered(schema_of(renamed)) == ordered(ORDERED)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ('{"type": "object", "type": "object"}', "duplicate key 'type'"),
        ('{"type": "object", "properties": {"a": {"maximum": NaN}}}', "NaN is not JSON"),
        ('{"type": "object", "properties": {"a": {"maximum": 1' + "0" * 400 + "}}}", "range of a double"),
        ("[" * 100_000, "nested too deeply"),
    ],
    ids=["syntax", "array", "duplicate", "nan", "huge", "deep"],
)
async def test_bad_schema_text_is_invalid_argument(stack, keys, text, problem):
    error = await expect(
        stack.tasks.CreateTask(
            task_pb2.CreateTaskRequest(task=task_pb2.Task(name=_name(), response_schema_json=text)),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["task.response_schema_json"]
    assert problem in error.details()
    error = await expect(
        stack.tasks.CheckTaskSchema(
            task_pb2.CheckTaskSchemaRequest(response_schema_json=text), metadata=auth(keys.viewer)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["response_schema_json"]


async def test_schema_text_is_checked_like_the_struct(stack, keys):
    # A problem inside the schema names the schema and its pointer, whichever field carried it.
    bad = {"type": "object", "properties": {"a": {"type": "string", "minLength": -1}}}
    error = await expect(
        stack.tasks.CreateTask(
            task_pb2.CreateTaskRequest(
                task=task_pb2.Task(name=_name(), response_schema_json=json.dumps(bad))
            ),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["task.response_schema"]
    assert error_of(error).metadata["pointer"] == "/properties/a/minLength"
    as_text = await stack.tasks.CheckTaskSchema(
        task_pb2.CheckTaskSchemaRequest(response_schema_json=json.dumps(REORDERED)),
        metadata=auth(keys.viewer),
    )
    as_struct = await stack.tasks.CheckTaskSchema(
        task_pb2.CheckTaskSchemaRequest(response_schema=struct(ORDERED)), metadata=auth(keys.viewer)
    )
    # Key order is not identity: one hash. `1.0` is read as `1`, as a Struct gives it.
    assert as_text.valid and as_text.schema_hash == as_struct.schema_hash
    with_float = json.dumps(ORDERED).replace('"minimum": 1', '"minimum": 1.0')
    assert '"minimum": 1.0' in with_float
    as_float = await stack.tasks.CheckTaskSchema(
        task_pb2.CheckTaskSchemaRequest(response_schema_json=with_float), metadata=auth(keys.viewer)
    )
    assert as_float.schema_hash == as_struct.schema_hash
