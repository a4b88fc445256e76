"""gRPC ⇄ domain for AgentService, TaskService and RunService; no logic of its own."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import NoReturn

from google.protobuf import struct_pb2, timestamp_pb2

from agentmgr.v1 import agent_pb2, agent_pb2_grpc, run_pb2, run_pb2_grpc, task_pb2, task_pb2_grpc
from libs.common.auth import Access
from libs.common.errors import InvalidArgument
from libs.common.grpc_server import current_principal
from libs.common.jsonvalue import JsonObject, JsonValue
from libs.common.protojson import dict_to_struct, message_to_json, normalize_numbers, struct_to_dict
from services.agent_svc.domain import Agent, ModelSettings, Run, Task
from services.agent_svc.runs import RunRequest, RunService
from services.agent_svc.service import (
    AgentChanges,
    AgentDraft,
    AgentService,
    TaskChanges,
    TaskDraft,
    TaskService,
)

__all__ = [
    "ACCESS",
    "METHOD_TIMEOUTS",
    "AgentServicer",
    "RunServicer",
    "TaskServicer",
    "agent_json",
    "run_json",
    "task_json",
]

_A, _T, _R = "/agentmgr.v1.AgentService/", "/agentmgr.v1.TaskService/", "/agentmgr.v1.RunService/"
ACCESS: dict[str, Access] = {
    _A + "CreateAgent": Access.WRITE,
    _A + "GetAgent": Access.READ,
    _A + "ListAgents": Access.READ,
    _A + "UpdateAgent": Access.WRITE,
    _A + "DeleteAgent": Access.WRITE,
    _A + "ListAgentVersions": Access.READ,
    _T + "CreateTask": Access.WRITE,
    _T + "GetTask": Access.READ,
    _T + "ListTasks": Access.READ,
    _T + "UpdateTask": Access.WRITE,
    _T + "DeleteTask": Access.WRITE,
    _T + "ListTaskVersions": Access.READ,
    _T + "CheckTaskSchema": Access.READ,
    # Running costs money: viewers may read runs but not start them.
    _R + "CreateRun": Access.WRITE,
    _R + "StartRun": Access.WRITE,
    _R + "StreamRun": Access.WRITE,
    _R + "GetRun": Access.READ,
    _R + "ListRuns": Access.READ,
}
METHOD_TIMEOUTS: dict[str, float] = {
    # A run may take up to its agent's timeout_s (at most 600 s) when the caller set no deadline.
    _R + "CreateRun": 660.0,
}


def _timestamp(value: dt.datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _settings_to_proto(settings: ModelSettings) -> agent_pb2.ModelSettings:
    message = agent_pb2.ModelSettings(stop_sequences=list(settings.stop_sequences))
    for name in (
        "temperature",
        "max_tokens",
        "top_p",
        "timeout_s",
        "seed",
        "presence_penalty",
        "frequency_penalty",
    ):
        value = getattr(settings, name)
        if value is not None:
            setattr(message, name, value)
    return message


def _settings_from_proto(message: agent_pb2.ModelSettings) -> ModelSettings:
    def opt(name: str) -> float | None:
        return float(getattr(message, name)) if message.HasField(name) else None  # type: ignore[arg-type]

    def opt_int(name: str) -> int | None:
        return int(getattr(message, name)) if message.HasField(name) else None  # type: ignore[arg-type]

    return ModelSettings(
        temperature=opt("temperature"),
        max_tokens=opt_int("max_tokens"),
        top_p=opt("top_p"),
        timeout_s=opt("timeout_s"),
        seed=opt_int("seed"),
        presence_penalty=opt("presence_penalty"),
        frequency_penalty=opt("frequency_penalty"),
        stop_sequences=tuple(message.stop_sequences),
    )


def agent_to_proto(agent: Agent) -> agent_pb2.Agent:
    """The wire form of an agent version."""
    return agent_pb2.Agent(
        id=agent.id,
        project=agent.project,
        name=agent.name,
        description=agent.description,
        provider_id=agent.provider_id,
        model=agent.model,
        system_prompt=agent.system_prompt,
        model_settings=_settings_to_proto(agent.model_settings),
        output_retries=agent.output_retries,
        labels=dict(agent.labels),
        version=agent.version,
        create_time=_timestamp(agent.create_time),
        update_time=_timestamp(agent.update_time),
        etag=agent.etag,
    )


def task_to_proto(task: Task) -> task_pb2.Task:
    """The wire form of a task version."""
    return task_pb2.Task(
        id=task.id,
        project=task.project,
        name=task.name,
        description=task.description,
        instructions=task.instructions,
        prompt_template=task.prompt_template,
        response_schema=dict_to_struct(task.response_schema),
        variables=list(task.variables),
        version=task.version,
        create_time=_timestamp(task.create_time),
        update_time=_timestamp(task.update_time),
        etag=task.etag,
        response_schema_json=json.dumps(task.response_schema, ensure_ascii=False, separators=(",", ":")),
    )


def _unique_keys(pairs: list[tuple[str, JsonValue]]) -> JsonObject:
    # I-JSON (RFC 7493): a repeated name is refused, not silently resolved to the last.
    result: JsonObject = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key[:64]!r}")
        result[key] = value
    return result


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _schema_from_request(
    struct: struct_pb2.Struct, text: str, *, struct_given: bool, field_path: str
) -> JsonObject:
    """The schema a request carries, in its author's key order when sent as JSON text.

    `text` (the `*_json` field) wins over the Struct, which keeps no order; when both are
    given they must be the same JSON value, or INVALID_ARGUMENT names the text field.
    Integral numbers read as from a Struct (`1.0` is `1`), so that both fields give
    one schema and one hash.
    """
    if not text:
        return struct_to_dict(struct)
    text_field = f"{field_path}_json"
    try:
        parsed = json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidArgument.for_field(text_field, "not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise InvalidArgument.for_field(text_field, f"not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument.for_field(text_field, "must be a JSON object")
    schema = normalize_numbers(parsed)
    assert isinstance(schema, dict)
    try:
        # Reads return the schema as a Struct too: its numbers must fit a double.
        as_struct: struct_pb2.Struct | None = dict_to_struct(schema)
    except OverflowError:
        raise InvalidArgument.for_field(text_field, "numbers must be within the range of a double") from None
    except ValueError:
        as_struct = None  # not valid Unicode: the schema compiler refuses it with a pointer
    if struct_given and (as_struct is None or struct_to_dict(as_struct) != struct_to_dict(struct)):
        message = f"is not the same schema as {field_path}: send one of them, or the same schema in both"
        raise InvalidArgument.for_field(text_field, message)
    return schema


def run_to_proto(run: Run) -> run_pb2.Run:
    """The wire form of a run."""
    message = run_pb2.Run(
        id=run.id,
        project=run.project,
        agent_id=run.agent_id,
        agent_version=run.agent_version,
        task_id=run.task_id,
        task_version=run.task_version,
        variables=dict_to_struct(run.variables),
        prompt=run.prompt,
        status=run.status.value,
        usage=run_pb2.Usage(
            requests=run.usage.requests,
            input_tokens=run.usage.input_tokens,
            output_tokens=run.usage.output_tokens,
        ),
        attempts=run.attempts,
        latency_ms=run.latency_ms,
        create_time=_timestamp(run.create_time),
    )
    if run.output is not None:
        message.output.CopyFrom(dict_to_struct(run.output))
    if run.error is not None:
        message.error.CopyFrom(run_pb2.RunError(code=run.error.code.value, message=run.error.message))
    if run.start_time is not None:
        message.start_time.CopyFrom(_timestamp(run.start_time))
    if run.end_time is not None:
        message.end_time.CopyFrom(_timestamp(run.end_time))
    return message


def agent_json(agent: Agent) -> JsonObject:
    """An agent as REST returns it and events carry it."""
    return message_to_json(agent_to_proto(agent))


def task_json(task: Task) -> JsonObject:
    """A task as REST returns it and events carry it: `response_schema` in the author's key order."""
    data = message_to_json(task_to_proto(task))
    del data["response_schema_json"]  # the wire's way to carry the order; REST's object keeps it
    data["response_schema"] = normalize_numbers(task.response_schema)
    return data


def _json_time(value: dt.datetime) -> str:
    """RFC 3339 in UTC exactly as protobuf's JSON mapping writes a Timestamp."""
    utc = value.astimezone(dt.UTC).replace(tzinfo=None)
    text = utc.isoformat(timespec="seconds")
    micros = utc.microsecond
    if micros:
        text += f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"
    return text + "Z"


def run_json(run: Run) -> JsonObject:
    """A run as REST returns it and events carry it: `message_to_json(run_to_proto(run))`.

    Built directly because every run state change encodes it for its event, and going
    through protobuf's JSON mapping costs about ten times as much (a test holds the two
    equal).
    """
    data: JsonObject = {
        "id": run.id,
        "project": run.project,
        "agent_id": run.agent_id,
        "agent_version": run.agent_version,
        "task_id": run.task_id,
        "task_version": run.task_version,
        "variables": normalize_numbers(dict(run.variables)),
        "status": run.status.value,
        "usage": {
            "requests": run.usage.requests,
            "input_tokens": run.usage.input_tokens,
            "output_tokens": run.usage.output_tokens,
        },
        "attempts": run.attempts,
        "latency_ms": run.latency_ms,
        "create_time": _json_time(run.create_time),
        "prompt": run.prompt,
    }
    if run.output is not None:
        data["output"] = normalize_numbers(dict(run.output))
    if run.error is not None:
        data["error"] = {"code": run.error.code.value, "message": run.error.message}
    if run.start_time is not None:
        data["start_time"] = _json_time(run.start_time)
    if run.end_time is not None:
        data["end_time"] = _json_time(run.end_time)
    return data


class AgentServicer(agent_pb2_grpc.AgentServiceServicer):
    """AgentService over gRPC."""

    def __init__(self, service: AgentService) -> None:
        self._service = service

    async def CreateAgent(
        self, request: agent_pb2.CreateAgentRequest, context: object
    ) -> agent_pb2.CreateAgentResponse:
        a = request.agent
        agent = await self._service.create(
            current_principal(),
            AgentDraft(
                project=a.project,
                name=a.name,
                description=a.description,
                provider_id=a.provider_id,
                model=a.model,
                system_prompt=a.system_prompt,
                model_settings=_settings_from_proto(a.model_settings),
                output_retries=a.output_retries if a.HasField("output_retries") else None,
                labels=dict(a.labels),
                request_id=request.request_id,
            ),
        )
        return agent_pb2.CreateAgentResponse(agent=agent_to_proto(agent))

    async def GetAgent(
        self, request: agent_pb2.GetAgentRequest, context: object
    ) -> agent_pb2.GetAgentResponse:
        agent = await self._service.get(current_principal(), request.id, version=request.version)
        return agent_pb2.GetAgentResponse(agent=agent_to_proto(agent))

    async def ListAgents(
        self, request: agent_pb2.ListAgentsRequest, context: object
    ) -> agent_pb2.ListAgentsResponse:
        agents, token = await self._service.list_page(
            current_principal(),
            page_size_=request.page_size,
            page_token=request.page_token,
            project=request.project,
            provider_id=request.provider_id,
            label=request.label,
        )
        return agent_pb2.ListAgentsResponse(agents=[agent_to_proto(a) for a in agents], next_page_token=token)

    async def UpdateAgent(
        self, request: agent_pb2.UpdateAgentRequest, context: object
    ) -> agent_pb2.UpdateAgentResponse:
        a = request.agent
        agent = await self._service.update(
            current_principal(),
            AgentChanges(
                id=a.id,
                etag=a.etag,
                paths=list(request.update_mask.paths),
                name=a.name,
                description=a.description,
                provider_id=a.provider_id,
                model=a.model,
                system_prompt=a.system_prompt,
                model_settings=_settings_from_proto(a.model_settings),
                output_retries=a.output_retries if a.HasField("output_retries") else None,
                labels=dict(a.labels),
            ),
        )
        return agent_pb2.UpdateAgentResponse(agent=agent_to_proto(agent))

    async def DeleteAgent(
        self, request: agent_pb2.DeleteAgentRequest, context: object
    ) -> agent_pb2.DeleteAgentResponse:
        agent = await self._service.delete(current_principal(), request.id, etag=request.etag)
        return agent_pb2.DeleteAgentResponse(agent=agent_to_proto(agent))

    async def ListAgentVersions(
        self, request: agent_pb2.ListAgentVersionsRequest, context: object
    ) -> agent_pb2.ListAgentVersionsResponse:
        agents, token = await self._service.list_versions(
            current_principal(), request.id, page_size_=request.page_size, page_token=request.page_token
        )
        return agent_pb2.ListAgentVersionsResponse(
            agents=[agent_to_proto(a) for a in agents], next_page_token=token
        )


def _task_schema(task: task_pb2.Task) -> JsonObject:
    return _schema_from_request(
        task.response_schema,
        task.response_schema_json,
        struct_given=task.HasField("response_schema"),
        field_path="task.response_schema",
    )


class TaskServicer(task_pb2_grpc.TaskServiceServicer):
    """TaskService over gRPC."""

    def __init__(self, service: TaskService) -> None:
        self._service = service

    async def CreateTask(
        self, request: task_pb2.CreateTaskRequest, context: object
    ) -> task_pb2.CreateTaskResponse:
        t = request.task
        task = await self._service.create(
            current_principal(),
            TaskDraft(
                project=t.project,
                name=t.name,
                description=t.description,
                instructions=t.instructions,
                prompt_template=t.prompt_template,
                response_schema=_task_schema(t),
                request_id=request.request_id,
            ),
        )
        return task_pb2.CreateTaskResponse(task=task_to_proto(task))

    async def GetTask(self, request: task_pb2.GetTaskRequest, context: object) -> task_pb2.GetTaskResponse:
        task = await self._service.get(current_principal(), request.id, version=request.version)
        return task_pb2.GetTaskResponse(task=task_to_proto(task))

    async def ListTasks(
        self, request: task_pb2.ListTasksRequest, context: object
    ) -> task_pb2.ListTasksResponse:
        tasks, token = await self._service.list_page(
            current_principal(),
            page_size_=request.page_size,
            page_token=request.page_token,
            project=request.project,
        )
        return task_pb2.ListTasksResponse(tasks=[task_to_proto(t) for t in tasks], next_page_token=token)

    async def UpdateTask(
        self, request: task_pb2.UpdateTaskRequest, context: object
    ) -> task_pb2.UpdateTaskResponse:
        t = request.task
        # `response_schema_json` is the same field as `response_schema`, as text.
        paths = list(
            dict.fromkeys(
                "response_schema" if path == "response_schema_json" else path
                for path in request.update_mask.paths
            )
        )
        task = await self._service.update(
            current_principal(),
            TaskChanges(
                id=t.id,
                etag=t.etag,
                paths=paths,
                name=t.name,
                description=t.description,
                instructions=t.instructions,
                prompt_template=t.prompt_template,
                response_schema=_task_schema(t) if "response_schema" in paths else None,
            ),
        )
        return task_pb2.UpdateTaskResponse(task=task_to_proto(task))

    async def DeleteTask(
        self, request: task_pb2.DeleteTaskRequest, context: object
    ) -> task_pb2.DeleteTaskResponse:
        task = await self._service.delete(current_principal(), request.id, etag=request.etag)
        return task_pb2.DeleteTaskResponse(task=task_to_proto(task))

    async def ListTaskVersions(
        self, request: task_pb2.ListTaskVersionsRequest, context: object
    ) -> task_pb2.ListTaskVersionsResponse:
        tasks, token = await self._service.list_versions(
            current_principal(), request.id, page_size_=request.page_size, page_token=request.page_token
        )
        return task_pb2.ListTaskVersionsResponse(
            tasks=[task_to_proto(t) for t in tasks], next_page_token=token
        )

    async def CheckTaskSchema(
        self, request: task_pb2.CheckTaskSchemaRequest, context: object
    ) -> task_pb2.CheckTaskSchemaResponse:
        schema = _schema_from_request(
            request.response_schema,
            request.response_schema_json,
            struct_given=request.HasField("response_schema"),
            field_path="response_schema",
        )
        verdict = self._service.check_schema(schema)
        return task_pb2.CheckTaskSchemaResponse(
            valid=not verdict.errors,
            errors=[task_pb2.SchemaIssue(pointer=e.pointer, message=e.message) for e in verdict.errors],
            warnings=[
                task_pb2.SchemaIssue(
                    pointer=w.pointer, message=w.message, provider_types=list(w.provider_types)
                )
                for w in verdict.warnings
            ],
            schema_hash=verdict.schema_hash,
        )


def _run_request(message: run_pb2.RunInput) -> RunRequest:
    return RunRequest(
        agent_id=message.agent_id,
        agent_version=message.agent_version,
        task_id=message.task_id,
        task_version=message.task_version,
        variables=struct_to_dict(message.variables),
        prompt=message.prompt,
    )


class RunServicer(run_pb2_grpc.RunServiceServicer):
    """RunService over gRPC."""

    def __init__(self, service: RunService) -> None:
        self._service = service

    async def CreateRun(
        self, request: run_pb2.CreateRunRequest, context: object
    ) -> run_pb2.CreateRunResponse:
        run = await self._service.create(
            current_principal(), _run_request(request.input), request_id=request.request_id
        )
        return run_pb2.CreateRunResponse(run=run_to_proto(run))

    async def StartRun(self, request: run_pb2.StartRunRequest, context: object) -> run_pb2.StartRunResponse:
        run = await self._service.start(
            current_principal(), _run_request(request.input), request_id=request.request_id
        )
        return run_pb2.StartRunResponse(run=run_to_proto(run))

    async def StreamRun(  # an async generator, as grpc.aio allows
        self, request: run_pb2.StreamRunRequest, context: object
    ) -> AsyncIterator[run_pb2.StreamRunResponse]:
        async for item in self._service.stream(current_principal(), _run_request(request.input)):
            if isinstance(item, Run):
                yield run_pb2.StreamRunResponse(run=run_to_proto(item))
            else:
                yield run_pb2.StreamRunResponse(partial_output=dict_to_struct(item))

    async def GetRun(self, request: run_pb2.GetRunRequest, context: object) -> run_pb2.GetRunResponse:
        run = await self._service.get(current_principal(), request.id)
        return run_pb2.GetRunResponse(run=run_to_proto(run))

    async def ListRuns(self, request: run_pb2.ListRunsRequest, context: object) -> run_pb2.ListRunsResponse:
        runs, token = await self._service.list_page(
            current_principal(),
            page_size_=request.page_size,
            page_token=request.page_token,
            project=request.project,
            agent_id=request.agent_id,
            task_id=request.task_id,
            status=request.status,
        )
        return run_pb2.ListRunsResponse(runs=[run_to_proto(r) for r in runs], next_page_token=token)
