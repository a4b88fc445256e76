"""`/v1/agents` → AgentService."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query
from fastapi.responses import JSONResponse
from google.protobuf import field_mask_pb2

from agentmgr.v1 import agent_pb2 as pb
from services.gateway.deps import BackendsDep, CallerDep, call, etag_from
from services.gateway.routes import ERRORS, resource_response
from services.gateway.schemas import Agent, AgentCreate, AgentList, AgentUpdate, ModelSettings

router = APIRouter(prefix="/v1/agents", tags=["agents"], responses=ERRORS)


def _settings(settings: ModelSettings | None) -> pb.ModelSettings:
    if settings is None:
        return pb.ModelSettings()
    values = settings.model_dump(exclude_none=True)
    return pb.ModelSettings(**values)


@router.get("", summary="List agents", responses={200: {"model": AgentList}})
async def list_agents(
    caller: CallerDep,
    backends: BackendsDep,
    page_size: Annotated[int, Query(ge=0, le=1000)] = 0,
    page_token: str = "",
    project: str = "",
    provider_id: str = "",
    label: Annotated[str, Query(description="key=value")] = "",
) -> JSONResponse:
    """Current versions of the agents the key may see, by project then name."""
    ctx = caller.context
    reply = await call(
        backends.agents.ListAgents(
            pb.ListAgentsRequest(
                page_size=page_size,
                page_token=page_token,
                project=project,
                provider_id=provider_id,
                label=label,
            ),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(reply)


@router.post("", status_code=201, summary="Create an agent", responses={201: {"model": Agent}})
async def create_agent(body: AgentCreate, caller: CallerDep, backends: BackendsDep) -> JSONResponse:
    """Create an agent at version 1; its provider must exist in the same project."""
    agent = pb.Agent(
        name=body.name,
        project=body.project,
        description=body.description,
        provider_id=body.provider_id,
        model=body.model,
        system_prompt=body.system_prompt,
        model_settings=_settings(body.model_settings),
        labels=body.labels,
    )
    if body.output_retries is not None:
        agent.output_retries = body.output_retries
    ctx = caller.context
    reply = await call(
        backends.agents.CreateAgent(
            pb.CreateAgentRequest(agent=agent, request_id=body.request_id),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(reply.agent, status_code=201, etag=reply.agent.etag)


@router.get("/{agent_id}", summary="Get an agent", responses={200: {"model": Agent}})
async def get_agent(agent_id: str, caller: CallerDep, backends: BackendsDep) -> JSONResponse:
    """The current version."""
    ctx = caller.context
    reply = await call(
        backends.agents.GetAgent(
            pb.GetAgentRequest(id=agent_id), metadata=ctx.metadata, timeout=ctx.timeout_s
        )
    )
    return resource_response(reply.agent, etag=reply.agent.etag)


@router.get("/{agent_id}/versions", summary="List an agent's versions", responses={200: {"model": AgentList}})
async def list_agent_versions(
    agent_id: str,
    caller: CallerDep,
    backends: BackendsDep,
    page_size: Annotated[int, Query(ge=0, le=1000)] = 0,
    page_token: str = "",
) -> JSONResponse:
    """Every version, newest first."""
    ctx = caller.context
    reply = await call(
        backends.agents.ListAgentVersions(
            pb.ListAgentVersionsRequest(id=agent_id, page_size=page_size, page_token=page_token),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(reply)


@router.get(
    "/{agent_id}/versions/{version}", summary="Get an agent version", responses={200: {"model": Agent}}
)
async def get_agent_version(
    agent_id: str, version: Annotated[int, Path(ge=1, le=2**31 - 1)], caller: CallerDep, backends: BackendsDep
) -> JSONResponse:
    """One version; versions never change."""
    ctx = caller.context
    reply = await call(
        backends.agents.GetAgent(
            pb.GetAgentRequest(id=agent_id, version=version), metadata=ctx.metadata, timeout=ctx.timeout_s
        )
    )
    return resource_response(reply.agent, etag=reply.agent.etag)


@router.patch("/{agent_id}", summary="Update an agent", responses={200: {"model": Agent}})
async def update_agent(
    agent_id: str,
    body: AgentUpdate,
    caller: CallerDep,
    backends: BackendsDep,
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Change the fields present in the body, making a new version."""
    fields = body.model_dump(exclude_unset=True)
    etag = etag_from(fields.pop("etag", None), if_match)
    agent = pb.Agent(
        id=agent_id,
        etag=etag,
        name=body.name or "",
        description=body.description or "",
        provider_id=body.provider_id or "",
        model=body.model or "",
        system_prompt=body.system_prompt or "",
        model_settings=_settings(body.model_settings),
        labels=body.labels or {},
    )
    if body.output_retries is not None:
        agent.output_retries = body.output_retries
    ctx = caller.context
    reply = await call(
        backends.agents.UpdateAgent(
            pb.UpdateAgentRequest(agent=agent, update_mask=field_mask_pb2.FieldMask(paths=list(fields))),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(reply.agent, etag=reply.agent.etag)


@router.delete("/{agent_id}", summary="Delete an agent", responses={200: {"model": Agent}})
async def delete_agent(
    agent_id: str,
    caller: CallerDep,
    backends: BackendsDep,
    etag: str = "",
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Delete an agent; its runs keep their history."""
    ctx = caller.context
    reply = await call(
        backends.agents.DeleteAgent(
            pb.DeleteAgentRequest(id=agent_id, etag=etag_from(etag, if_match)),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(reply.agent)
