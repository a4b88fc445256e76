"""`/v1/tasks` → TaskService.

A schema travels as JSON text (`response_schema_json`), both ways: a protobuf Struct is
a map and would lose the key order of the body, which FastAPI parses in order and the
model is shown in that order. Replies carry it back as the `response_schema` object.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse
from google.protobuf import field_mask_pb2

from agentmgr.v1 import task_pb2 as pb
from libs.common.protojson import message_to_json, normalize_numbers
from services.gateway.deps import BackendsDep, CallerDep, call, etag_from
from services.gateway.routes import ERRORS, resource_response
from services.gateway.schemas import SchemaCheck, SchemaVerdict, Task, TaskCreate, TaskList, TaskUpdate

router = APIRouter(prefix="/v1/tasks", tags=["tasks"], responses=ERRORS)


def _schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, ensure_ascii=False, separators=(",", ":"))


def _task_json(task: pb.Task) -> dict[str, Any]:
    """The REST form of a task: `response_schema` from the ordered text, as events carry it."""
    data = message_to_json(task)
    text = data.pop("response_schema_json", "")
    if isinstance(text, str) and text:
        data["response_schema"] = normalize_numbers(json.loads(text))
    return data


def _page_json(reply: pb.ListTasksResponse | pb.ListTaskVersionsResponse) -> dict[str, Any]:
    return {"tasks": [_task_json(t) for t in reply.tasks], "next_page_token": reply.next_page_token}


@router.get("", summary="List tasks", responses={200: {"model": TaskList}})
async def list_tasks(
    caller: CallerDep,
    backends: BackendsDep,
    page_size: Annotated[int, Query(ge=0, le=1000)] = 0,
    page_token: str = "",
    project: str = "",
) -> JSONResponse:
    """Current versions of the tasks the key may see, by project then name."""
    ctx = caller.context
    reply = await call(
        backends.tasks.ListTasks(
            pb.ListTasksRequest(page_size=page_size, page_token=page_token, project=project),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(_page_json(reply))


@router.post("", status_code=201, summary="Create a task", responses={201: {"model": Task}})
async def create_task(body: TaskCreate, caller: CallerDep, backends: BackendsDep) -> JSONResponse:
    """Create a task at version 1; the schema is checked and compiled first."""
    ctx = caller.context
    reply = await call(
        backends.tasks.CreateTask(
            pb.CreateTaskRequest(
                task=pb.Task(
                    name=body.name,
                    project=body.project,
                    description=body.description,
                    instructions=body.instructions,
                    prompt_template=body.prompt_template,
                    response_schema_json=_schema_text(body.response_schema),
                ),
                request_id=body.request_id,
            ),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(_task_json(reply.task), status_code=201, etag=reply.task.etag)


@router.post(
    ":check-schema",
    summary="Check a response schema without saving",
    responses={200: {"model": SchemaVerdict}},
)
async def check_schema(body: SchemaCheck, caller: CallerDep, backends: BackendsDep) -> JSONResponse:
    """The verdict a save would give (with the JSON pointer of a problem) and provider caveats."""
    ctx = caller.context
    reply = await call(
        backends.tasks.CheckTaskSchema(
            pb.CheckTaskSchemaRequest(response_schema_json=_schema_text(body.response_schema)),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(reply)


@router.get("/{task_id}", summary="Get a task", responses={200: {"model": Task}})
async def get_task(task_id: str, caller: CallerDep, backends: BackendsDep) -> JSONResponse:
    """The current version."""
    ctx = caller.context
    reply = await call(
        backends.tasks.GetTask(pb.GetTaskRequest(id=task_id), metadata=ctx.metadata, timeout=ctx.timeout_s)
    )
    return resource_response(_task_json(reply.task), etag=reply.task.etag)


@router.get("/{task_id}/versions", summary="List a task's versions", responses={200: {"model": TaskList}})
async def list_task_versions(
    task_id: str,
    caller: CallerDep,
    backends: BackendsDep,
    page_size: Annotated[int, Query(ge=0, le=1000)] = 0,
    page_token: str = "",
) -> JSONResponse:
    """Every version, newest first."""
    ctx = caller.context
    reply = await call(
        backends.tasks.ListTaskVersions(
            pb.ListTaskVersionsRequest(id=task_id, page_size=page_size, page_token=page_token),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(_page_json(reply))


@router.get("/{task_id}/versions/{version}", summary="Get a task version", responses={200: {"model": Task}})
async def get_task_version(
    task_id: str, version: Annotated[int, Path(ge=1, le=2**31 - 1)], caller: CallerDep, backends: BackendsDep
) -> JSONResponse:
    """One version; versions never change."""
    ctx = caller.context
    reply = await call(
        backends.tasks.GetTask(
            pb.GetTaskRequest(id=task_id, version=version), metadata=ctx.metadata, timeout=ctx.timeout_s
        )
    )
    return resource_response(_task_json(reply.task), etag=reply.task.etag)


@router.patch("/{task_id}", summary="Update a task", responses={200: {"model": Task}})
async def update_task(
    task_id: str,
    body: TaskUpdate,
    caller: CallerDep,
    backends: BackendsDep,
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Change the fields present in the body, making a new version."""
    fields = body.model_dump(exclude_unset=True)
    etag = etag_from(fields.pop("etag", None), if_match)
    task = pb.Task(
        id=task_id,
        etag=etag,
        name=body.name or "",
        description=body.description or "",
        instructions=body.instructions or "",
        prompt_template=body.prompt_template or "",
        response_schema_json=_schema_text(body.response_schema) if body.response_schema is not None else "",
    )
    ctx = caller.context
    reply = await call(
        backends.tasks.UpdateTask(
            pb.UpdateTaskRequest(task=task, update_mask=field_mask_pb2.FieldMask(paths=list(fields))),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(_task_json(reply.task), etag=reply.task.etag)


@router.delete("/{task_id}", summary="Delete a task", responses={200: {"model": Task}})
async def delete_task(
    task_id: str,
    caller: CallerDep,
    backends: BackendsDep,
    etag: str = "",
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Delete a task; its runs keep their history."""
    ctx = caller.context
    reply = await call(
        backends.tasks.DeleteTask(
            pb.DeleteTaskRequest(id=task_id, etag=etag_from(etag, if_match)),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(_task_json(reply.task))
