"""Runs end to end: the real pydantic-ai OpenAI chat model against a local OpenAI-compatible
stub (a real LLM cannot run here), and the offline `test` provider."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import socket
import uuid

import grpc
import jsonschema
import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from agentmgr.v1 import agent_pb2, provider_pb2, run_pb2, task_pb2
from libs.common.protojson import struct_to_dict
from tests.support.events import read_events
from tests.support.eventually import eventually
from tests.support.grpc_helpers import auth, bad_fields
from tests.support.llm_stub import Http, Slow

pytestmark = pytest.mark.asyncio

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 3},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
    "required": ["title", "score"],
    "additionalProperties": False,
}
VALID = {"title": "A fine piece", "score": 7, "tags": ["x"]}
INVALID = {"title": "no", "score": 99}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def struct(value) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(value)
    return s


class World:
    """A provider on the stub, plus helpers to make agents, tasks and runs."""

    def __init__(self, stack, keys, stub, provider_id: str):
        self.stack, self.keys, self.stub, self.provider_id = stack, keys, stub, provider_id
        self.md = auth(keys.admin)

    async def agent(
        self, model: str, *, provider_id: str | None = None, retries: int = 2, timeout_s: float | None = None
    ):
        settings = agent_pb2.ModelSettings()
        if timeout_s is not None:
            settings.timeout_s = timeout_s
        reply = await self.stack.agents.CreateAgent(
            agent_pb2.CreateAgentRequest(
                agent=agent_pb2.Agent(
                    name=_name("a"),
                    provider_id=provider_id or self.provider_id,
                    model=model,
                    system_prompt="You rate things.",
                    output_retries=retries,
                    model_settings=settings,
                )
            ),
            metadata=self.md,
        )
        return reply.agent

    async def task(self, schema=SCHEMA, template="Rate {thing}."):
        reply = await self.stack.tasks.CreateTask(
            task_pb2.CreateTaskRequest(
                task=task_pb2.Task(
                    name=_name("t"),
                    instructions="Answer with the schema.",
                    prompt_template=template,
                    response_schema=struct(schema),
                )
            ),
            metadata=self.md,
        )
        return reply.task

    async def start(self, agent, task):
        """StartRun: the run, queued."""
        return await self.stack.runs.StartRun(
            run_pb2.StartRunRequest(
                input=run_pb2.RunInput(agent_id=agent.id, task_id=task.id, variables=struct({"thing": "x"}))
            ),
            metadata=self.md,
        )

    async def run(self, agent, task, variables=None, **kwargs):
        reply = await self.stack.runs.CreateRun(
            run_pb2.CreateRunRequest(
                input=run_pb2.RunInput(
                    agent_id=agent.id, task_id=task.id, variables=struct(variables or {"thing": "tea"})
                ),
                **kwargs,
            ),
            metadata=self.md,
        )
        return reply.run


@pytest.fixture(scope="module")
async def world(stack, keys, llm_stub):
    reply = await stack.providers.CreateProvider(
        provider_pb2.CreateProviderRequest(
            provider=provider_pb2.Provider(
                name=_name("stub"), type="openai_compatible", base_url=llm_stub.url()
            ),
            api_key=llm_stub.api_key,
        ),
        metadata=auth(keys.admin),
    )
    return World(stack, keys, llm_stub, reply.provider.id)


async def test_valid_answer(world):
    world.stub.script("valid", [VALID])
    agent, task = await world.agent("valid"), await world.task()
    run = await world.run(agent, task)
    assert run.status == "succeeded", run.error
    assert struct_to_dict(run.output) == VALID
    assert run.attempts == 1
    assert run.usage.requests == 1 and run.usage.input_tokens > 0 and run.usage.output_tokens == 7
    assert run.agent_version == 1 and run.task_version == 1
    assert run.latency_ms >= 0 and run.end_time.ToDatetime() >= run.start_time.ToDatetime()
    chat = world.stub.chats[-1]
    assert chat["model"] == "valid"
    texts = str(chat["messages"])
    assert "You rate things." in texts and "Rate tea." in texts and "Answer with the schema." in texts
    assert f"Bearer {world.stub.api_key}" == world.stub.seen[-1].authorization


async def test_invalid_then_valid_takes_two_attempts(world):
    world.stub.script("twice", [INVALID, VALID])
    run = await world.run(await world.agent("twice"), await world.task())
    assert run.status == "succeeded", run.error
    assert run.attempts == 2
    assert struct_to_dict(run.output) == VALID
    retry_prompt = str(world.stub.chats[-1]["messages"])
    assert "score" in retry_prompt  # the validation errors went back to the model


async def test_always_invalid_fails_after_the_retries(world):
    world.stub.script("never", [INVALID])
    run = await world.run(await world.agent("never", retries=1), await world.task())
    assert run.status == "failed"
    assert run.error.code == "OUTPUT_INVALID"
    assert run.attempts == 2
    assert not run.HasField("output")


@pytest.mark.parametrize(
    ("script", "code"),
    [
        ([Http(429, retry_after="1")], "PROVIDER_RATE_LIMITED"),
        ([Http(500)], "PROVIDER_ERROR"),
        ([Http(503)], "PROVIDER_ERROR"),
        ([Http(404)], "MODEL_NOT_FOUND"),
        ([Http(400)], "PROVIDER_REJECTED"),
    ],
)
async def test_provider_failures_end_the_run_failed(world, script, code):
    model = _name("fail")
    world.stub.script(model, script)
    run = await world.run(await world.agent(model), await world.task())
    assert run.status == "failed"
    assert run.error.code == code, run.error
    assert world.stub.api_key not in run.error.message


async def test_wrong_key_is_auth_failed_without_the_key(world):
    wrong = "sk-wrong-" + uuid.uuid4().hex
    provider = await world.stack.providers.CreateProvider(
        provider_pb2.CreateProviderRequest(
            provider=provider_pb2.Provider(
                name=_name("bad"), type="openai_compatible", base_url=world.stub.url()
            ),
            api_key=wrong,
        ),
        metadata=world.md,
    )
    world.stub.script("keyed", [VALID])
    run = await world.run(await world.agent("keyed", provider_id=provider.provider.id), await world.task())
    assert run.status == "failed"
    assert run.error.code == "PROVIDER_AUTH_FAILED"
    assert wrong not in run.error.message and wrong not in str(run)


async def test_slow_beyond_timeout(world):
    world.stub.script("slow", [Slow(3.0, VALID)])
    run = await world.run(await world.agent("slow", timeout_s=0.5), await world.task())
    assert run.status == "failed"
    assert run.error.code in ("RUN_TIMEOUT", "PROVIDER_TIMEOUT")
    assert run.latency_ms < 2500


async def test_connection_refused(world):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    provider = await world.stack.providers.CreateProvider(
        provider_pb2.CreateProviderRequest(
            provider=provider_pb2.Provider(
                name=_name("off"), type="openai_compatible", base_url=f"http://127.0.0.1:{closed}/v1"
            )
        ),
        metadata=world.md,
    )
    run = await world.run(await world.agent("any", provider_id=provider.provider.id), await world.task())
    assert run.status == "failed"
    assert run.error.code == "PROVIDER_UNREACHABLE", run.error


async def test_missing_variable_is_rejected_before_any_model_call(world):
    world.stub.script("never-called", [VALID])
    agent, task = await world.agent("never-called"), await world.task(template="Rate {thing} for {audience}.")
    before = len(world.stub.chats)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await world.run(agent, task, {"thing": "tea"})
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(info.value) == ["input.variables.audience"]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await world.run(agent, task, {"thing": "tea", "audience": "kids", "typo": 1})
    assert bad_fields(info.value) == ["input.variables.typo"]
    assert len(world.stub.chats) == before


async def test_non_string_variables_render_as_json(world):
    world.stub.script("json-vars", [VALID])
    agent, task = await world.agent("json-vars"), await world.task(template="Items: {items}; n={n}")
    run = await world.run(agent, task, {"items": ["a", "b"], "n": 3})
    assert run.status == "succeeded"
    assert 'Items: ["a","b"]; n=3' in str(world.stub.chats[-1]["messages"])


async def test_version_pinning(world):
    """A run started before a schema change finishes on the old version; one after uses the new."""
    old_answer = {"title": "pinned", "score": 1}
    world.stub.script("pin", [Slow(1.0, old_answer)])
    agent, task = await world.agent("pin"), await world.task()
    early = asyncio.ensure_future(world.run(agent, task))
    await asyncio.sleep(0.3)
    new_schema = {
        "type": "object",
        "properties": {"verdict": {"type": "string", "enum": ["yes", "no"]}},
        "required": ["verdict"],
    }
    updated = await world.stack.tasks.UpdateTask(
        task_pb2.UpdateTaskRequest(
            task=task_pb2.Task(id=task.id, response_schema=struct(new_schema)),
            update_mask=field_mask_pb2.FieldMask(paths=["response_schema"]),
        ),
        metadata=world.md,
    )
    assert updated.task.version == 2
    first = await early
    assert first.status == "succeeded", first.error
    assert first.task_version == 1
    assert struct_to_dict(first.output) == old_answer
    world.stub.script("pin", [{"verdict": "yes"}])
    later = await world.run(agent, task)
    assert later.task_version == 2 and later.status == "succeeded", later.error
    assert struct_to_dict(later.output) == {"verdict": "yes"}
    # Pinning an explicit old version still works.
    world.stub.script("pin", [old_answer])
    pinned = await world.stack.runs.CreateRun(
        run_pb2.CreateRunRequest(
            input=run_pb2.RunInput(
                agent_id=agent.id, task_id=task.id, task_version=1, variables=struct({"thing": "x"})
            )
        ),
        metadata=world.md,
    )
    assert pinned.run.task_version == 1 and pinned.run.status == "succeeded"


async def _run_states(js, run_id: str) -> list[str]:
    events = await read_events(js, subject="agentmgr.events.runs.>")
    return [e["type"].rsplit(".", 1)[1] for e in events if e["subject"] == f"runs/{run_id}"]


async def test_a_quick_run_is_stored_once_ended_with_both_states(world, js):
    """A CreateRun that answers within RECORD_RUNNING_AFTER_S is stored once, ended; its
    `running` event still comes before the outcome's."""
    world.stub.script("quick", [VALID])
    agent, task = await world.agent("quick"), await world.task()
    run = await world.run(agent, task)
    assert run.status == "succeeded", run.error

    async def both() -> None:
        assert await _run_states(js, run.id) == ["running", "succeeded"]

    await eventually(both)
    stored = await world.stack.runs.GetRun(run_pb2.GetRunRequest(id=run.id), metadata=world.md)
    assert stored.run == run


async def test_a_slow_run_can_be_seen_running(world, js):
    """A CreateRun still waiting for the model after RECORD_RUNNING_AFTER_S is recorded as
    running: listed and readable while it runs."""
    world.stub.script("seen", [Slow(1.5, VALID)])
    agent, task = await world.agent("seen"), await world.task()
    waiting = asyncio.ensure_future(world.run(agent, task))

    async def listed_running() -> str:
        reply = await world.stack.runs.ListRuns(
            run_pb2.ListRunsRequest(agent_id=agent.id, status="running"), metadata=world.md
        )
        assert len(reply.runs) == 1, reply
        return reply.runs[0].id

    run_id = await eventually(listed_running, timeout=1.2, interval=0.02)
    run = await waiting
    assert run.id == run_id and run.status == "succeeded", run
    assert await _run_states(js, run.id) == ["running", "succeeded"]


async def test_a_change_while_a_quick_run_is_unrecorded_keeps_its_versions(world):
    """A run pins what was current when it began, also when it is stored only at its end:
    a task update during it changes nothing for it, and the model is asked once."""
    world.stub.script("during", [Slow(0.06, VALID)])
    agent, task = await world.agent("during"), await world.task()
    asked = len(world.stub.chats)
    running = asyncio.ensure_future(world.run(agent, task))

    async def asked_now() -> None:
        assert len(world.stub.chats) > asked

    await eventually(asked_now, timeout=5, interval=0.002)
    updated = await world.stack.tasks.UpdateTask(
        task_pb2.UpdateTaskRequest(
            task=task_pb2.Task(id=task.id, instructions="Answer briefly."),
            update_mask=field_mask_pb2.FieldMask(paths=["instructions"]),
        ),
        metadata=world.md,
    )
    assert updated.task.version == 2
    run = await running
    assert run.status == "succeeded" and run.task_version == 1, run
    assert len(world.stub.chats) == asked + 1
    world.stub.script("during", [VALID])
    assert (await world.run(agent, task)).task_version == 2


async def test_credential_change_reaches_the_registry(world):
    world.stub.script("rotate", [VALID])
    provider = await world.stack.providers.CreateProvider(
        provider_pb2.CreateProviderRequest(
            provider=provider_pb2.Provider(
                name=_name("rot"), type="openai_compatible", base_url=world.stub.url()
            ),
            api_key="sk-not-yet-right-000000",
        ),
        metadata=world.md,
    )
    agent, task = await world.agent("rotate", provider_id=provider.provider.id), await world.task()
    assert (await world.run(agent, task)).error.code == "PROVIDER_AUTH_FAILED"
    await world.stack.providers.UpdateProvider(
        provider_pb2.UpdateProviderRequest(
            provider=provider_pb2.Provider(id=provider.provider.id),
            update_mask=field_mask_pb2.FieldMask(paths=["api_key"]),
            api_key=world.stub.api_key,
        ),
        metadata=world.md,
    )

    async def works():
        run = await world.run(agent, task)
        assert run.status == "succeeded", run.error

    await eventually(works, timeout=10, interval=0.2)


async def test_start_run_proceeds_in_the_background(world, js):
    world.stub.script("bg", [Slow(0.5, VALID)])
    agent, task = await world.agent("bg"), await world.task()
    started = await world.start(agent, task)
    assert started.run.status == "queued"

    async def finished():
        run = (await world.stack.runs.GetRun(run_pb2.GetRunRequest(id=started.run.id), metadata=world.md)).run
        assert run.status == "succeeded", run
        return run

    run = await eventually(finished, timeout=20)
    assert struct_to_dict(run.output) == VALID

    async def states():
        events = [
            e
            for e in await read_events(js, subject="agentmgr.events.runs.>")
            if e["subject"] == f"runs/{run.id}"
        ]
        assert [e["type"] for e in events] == [
            "agentmgr.run.queued",
            "agentmgr.run.running",
            "agentmgr.run.succeeded",
        ]
        return events

    events = await eventually(states)
    assert events[-1]["data"]["output"] == VALID
    assert world.stub.api_key not in str(events)


async def test_a_run_ends_once_when_the_reaper_and_its_execution_race(world, js):
    """A run reaped as interrupted while an execution of it is still going (a replica that
    took over a redelivered job) keeps the first end: one final state, one final event."""
    world.stub.script("race", [Slow(1.0, VALID)])
    agent, task = await world.agent("race"), await world.task()
    started = await world.start(agent, task)

    async def get() -> run_pb2.Run:
        reply = await world.stack.runs.GetRun(run_pb2.GetRunRequest(id=started.run.id), metadata=world.md)
        return reply.run

    async def running() -> None:
        assert (await get()).status == "running"

    await eventually(running, timeout=10, interval=0.02)
    service = world.stack.agent.runs
    assert service is not None
    assert await service.fail_stale(older_than=dt.timedelta(0), actor="test:reaper") >= 1
    assert await service.fail_stale(older_than=dt.timedelta(0), actor="test:reaper") == 0  # ended: left alone

    async def states() -> list[str]:
        events = await read_events(js, subject="agentmgr.events.runs.>")
        types = [e["type"] for e in events if e["subject"] == f"runs/{started.run.id}"]
        assert types[-1] == "agentmgr.run.failed", types
        return types

    await eventually(states, timeout=10)
    await asyncio.sleep(1.5)  # the execution's model call has answered by now
    run = await get()
    assert run.status == "failed" and "interrupted" in run.error.message, run
    assert await states() == ["agentmgr.run.queued", "agentmgr.run.running", "agentmgr.run.failed"]


async def test_stream_run_sends_partials_then_the_run(world):
    world.stub.script(
        "stream", [{"title": "A streamed answer with many words", "score": 5, "tags": ["a", "b", "c"]}]
    )
    agent, task = await world.agent("stream"), await world.task()
    partials, final = [], None
    async for message in world.stack.runs.StreamRun(
        run_pb2.StreamRunRequest(
            input=run_pb2.RunInput(agent_id=agent.id, task_id=task.id, variables=struct({"thing": "x"}))
        ),
        metadata=world.md,
    ):
        if message.HasField("run"):
            final = message.run
        else:
            partials.append(struct_to_dict(message.partial_output))
    assert final is not None and final.status == "succeeded", final
    assert len(partials) >= 2, partials
    assert struct_to_dict(final.output)["title"] == "A streamed answer with many words"
    assert assert_prefixes(partials)


def assert_prefixes(partials: list[dict]) -> bool:
    titles = [p.get("title", "") for p in partials if isinstance(p.get("title"), str)]
    assert all(b.startswith(a) for a, b in itertools.pairwise(titles)), titles
    return True


async def test_create_run_request_id_is_idempotent(world):
    world.stub.script("idem", [VALID])
    agent, task = await world.agent("idem"), await world.task()
    request_id = str(uuid.uuid4())
    first = await world.run(agent, task, request_id=request_id)
    calls = len(world.stub.chats)
    again = await world.run(agent, task, request_id=request_id)
    assert again.id == first.id and len(world.stub.chats) == calls


async def test_list_runs_filters(world):
    world.stub.script("listed", [VALID])
    agent, task = await world.agent("listed"), await world.task()
    ids = [(await world.run(agent, task)).id for _ in range(3)]
    page = await world.stack.runs.ListRuns(
        run_pb2.ListRunsRequest(agent_id=agent.id, page_size=2), metadata=world.md
    )
    assert [r.id for r in page.runs] == ids[::-1][:2]
    rest = await world.stack.runs.ListRuns(
        run_pb2.ListRunsRequest(agent_id=agent.id, page_size=2, page_token=page.next_page_token),
        metadata=world.md,
    )
    assert [r.id for r in rest.runs] == [ids[0]]
    by_task = await world.stack.runs.ListRuns(
        run_pb2.ListRunsRequest(task_id=task.id, status="succeeded"), metadata=world.md
    )
    assert len(by_task.runs) == 3
    failed = await world.stack.runs.ListRuns(
        run_pb2.ListRunsRequest(task_id=task.id, status="failed"), metadata=world.md
    )
    assert not failed.runs
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await world.stack.runs.ListRuns(run_pb2.ListRunsRequest(status="done"), metadata=world.md)
    assert bad_fields(info.value) == ["status"]


async def test_viewers_cannot_run_but_can_read(world):
    world.stub.script("viewer", [VALID])
    agent, task = await world.agent("viewer"), await world.task()
    run = await world.run(agent, task)
    viewer = auth(world.keys.viewer)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await world.stack.runs.CreateRun(
            run_pb2.CreateRunRequest(input=run_pb2.RunInput(agent_id=agent.id, task_id=task.id)),
            metadata=viewer,
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    got = await world.stack.runs.GetRun(run_pb2.GetRunRequest(id=run.id), metadata=viewer)
    assert got.run.id == run.id


NESTED = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "label": {"type": "string", "minLength": 1, "maxLength": 20},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2},
            },
            "required": ["label"],
        },
        "contact": {
            "type": "object",
            "properties": {
                "email": {"type": "string", "format": "email"},
                "site": {"type": "string", "format": "uri"},
                "id": {"type": "string", "format": "uuid"},
                "born": {"type": "string", "format": "date"},
                "seen": {"type": "string", "format": "date-time"},
            },
            "required": ["email", "site", "id", "born", "seen"],
        },
    },
    "type": "object",
    "properties": {
        "kind": {"type": "string", "enum": ["alpha", "beta", "gamma"]},
        "level": {"type": "integer", "minimum": 3, "exclusiveMaximum": 9, "multipleOf": 3},
        "ratio": {"type": ["number", "null"], "minimum": 0.5},
        "tree": {"$ref": "#/$defs/node"},
        "contacts": {
            "type": "array",
            "items": {"$ref": "#/$defs/contact"},
            "minItems": 1,
            "uniqueItems": True,
        },
        "choice": {"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": "^[a-z]{2}-[0-9]{2}$"}]},
        "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
    },
    "required": ["kind", "level", "tree", "contacts", "code"],
    "additionalProperties": False,
}


async def test_test_provider_answers_valid_nested_schemas(world):
    provider = await world.stack.providers.CreateProvider(
        provider_pb2.CreateProviderRequest(
            provider=provider_pb2.Provider(name=_name("offline"), type="test")
        ),
        metadata=world.md,
    )
    agent = await world.agent("test", provider_id=provider.provider.id)
    task = await world.task(schema=NESTED, template="Describe {thing}")
    run = await world.run(agent, task)
    assert run.status == "succeeded", run.error
    output = struct_to_dict(run.output)
    jsonschema.Draft202012Validator(
        NESTED, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(output)
    assert output["kind"] in ("alpha", "beta", "gamma")
