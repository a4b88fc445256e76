"""`/v1/runs` → RunService."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

import grpc
from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from agentmgr.v1 import run_pb2 as pb
from libs.common.protojson import dict_to_struct, message_to_json, struct_to_dict
from services.gateway.clients import Backends
from services.gateway.deps import BackendsDep, Caller, CallerDep, SettingsDep, call
from services.gateway.routes import ERRORS, resource_response
from services.gateway.schemas import Run, RunCreate, RunList
from services.gateway.settings import GatewaySettings

router = APIRouter(prefix="/v1/runs", tags=["runs"], responses=ERRORS)
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # grpc-stubs lacks the stream-end marker


def _input(body: RunCreate) -> pb.RunInput:
    return pb.RunInput(
        agent_id=body.agent_id,
        agent_version=body.agent_version,
        task_id=body.task_id,
        task_version=body.task_version,
        variables=dict_to_struct(body.variables),
        prompt=body.prompt,
    )


@router.post(
    "",
    status_code=201,
    summary="Run an agent on a task",
    responses={
        201: {"model": Run, "description": "finished (succeeded or failed)"},
        202: {"model": Run, "description": "queued"},
    },
)
async def create_run(
    body: RunCreate, caller: CallerDep, backends: BackendsDep, settings: SettingsDep
) -> JSONResponse:
    """Wait for the answer (201, `succeeded` or `failed`), or with `wait: false` queue it (202).

    A run that failed because of the provider is still a 201: the failure is in the run.
    """
    run, status = await submit_run(body, caller, backends, settings)
    return resource_response(run, status_code=status)


async def submit_run(
    body: RunCreate, caller: Caller, backends: Backends, settings: GatewaySettings
) -> tuple[pb.Run, int]:
    """Make the run (201 when finished) or queue it (202); shared with the fast path."""
    ctx = caller.context
    if body.wait:
        reply = await call(
            backends.runs.CreateRun(
                pb.CreateRunRequest(input=_input(body), request_id=body.request_id),
                metadata=ctx.metadata,
                timeout=settings.run_timeout_s,
            )
        )
        return reply.run, 201
    started = await call(
        backends.runs.StartRun(
            pb.StartRunRequest(input=_input(body), request_id=body.request_id),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return started.run, 202


@router.post(
    ":stream",
    summary="Run and stream the answer (server-sent events)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "`partial` events, then one `run` event"}
    },
)
async def stream_run(
    body: RunCreate, caller: CallerDep, backends: BackendsDep, settings: SettingsDep
) -> StreamingResponse:
    """`event: partial` with the answer so far (not yet validated), then `event: run` (the finished run)."""
    ctx = caller.context
    stream = backends.runs.StreamRun(
        pb.StreamRunRequest(input=_input(body)), metadata=ctx.metadata, timeout=settings.run_timeout_s
    )
    # Fail before the 200 is sent when the request itself is wrong.
    first = await call(stream.read())

    async def events() -> AsyncIterator[bytes]:
        message = first
        while message is not _EOF:
            assert isinstance(message, pb.StreamRunResponse)
            if message.HasField("run"):
                yield f"event: run\ndata: {json.dumps(message_to_json(message.run))}\n\n".encode()
            else:
                partial = json.dumps(struct_to_dict(message.partial_output))
                yield f"event: partial\ndata: {partial}\n\n".encode()
            try:
                message = await stream.read()
            except grpc.aio.AioRpcError:
                return  # the run goes on and is stored; the stream just ends

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


@router.get("", summary="List runs", responses={200: {"model": RunList}})
async def list_runs(
    caller: CallerDep,
    backends: BackendsDep,
    page_size: Annotated[int, Query(ge=0, le=1000)] = 0,
    page_token: str = "",
    project: str = "",
    agent_id: str = "",
    task_id: str = "",
    status: str = "",
) -> JSONResponse:
    """Runs the key may see, newest first, filtered by agent, task and status."""
    ctx = caller.context
    reply = await call(
        backends.runs.ListRuns(
            pb.ListRunsRequest(
                page_size=page_size,
                page_token=page_token,
                project=project,
                agent_id=agent_id,
                task_id=task_id,
                status=status,
            ),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(reply)


@router.get("/{run_id}", summary="Get a run", responses={200: {"model": Run}})
async def get_run(run_id: str, caller: CallerDep, backends: BackendsDep) -> JSONResponse:
    """One run."""
    ctx = caller.context
    reply = await call(
        backends.runs.GetRun(pb.GetRunRequest(id=run_id), metadata=ctx.metadata, timeout=ctx.timeout_s)
    )
    return resource_response(reply.run)
