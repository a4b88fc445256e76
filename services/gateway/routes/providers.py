"""`/v1/providers` → ProviderService."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from google.protobuf import field_mask_pb2

from agentmgr.v1 import provider_pb2 as pb
from libs.common.protojson import dict_to_struct
from services.gateway.deps import BackendsDep, CallerDep, call, etag_from
from services.gateway.routes import ERRORS, resource_response
from services.gateway.schemas import Provider, ProviderCreate, ProviderList, ProviderUpdate

router = APIRouter(prefix="/v1/providers", tags=["providers"], responses=ERRORS)


@router.get("", summary="List providers", responses={200: {"model": ProviderList}})
async def list_providers(
    caller: CallerDep,
    backends: BackendsDep,
    page_size: Annotated[int, Query(ge=0, le=1000)] = 0,
    page_token: str = "",
    project: str = "",
    type: str = "",  # the API's field name
    validation_status: str = "",
) -> JSONResponse:
    """Providers the key may see, by project then name."""
    ctx = caller.context
    reply = await call(
        backends.providers.ListProviders(
            pb.ListProvidersRequest(
                page_size=page_size,
                page_token=page_token,
                project=project,
                type=type,
                validation_status=validation_status,
            ),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(reply)


@router.post("", status_code=201, summary="Create a provider", responses={201: {"model": Provider}})
async def create_provider(body: ProviderCreate, caller: CallerDep, backends: BackendsDep) -> JSONResponse:
    """Register a provider; keys are validated in the background (`validation.status`)."""
    ctx = caller.context
    reply = await call(
        backends.providers.CreateProvider(
            pb.CreateProviderRequest(
                provider=pb.Provider(
                    name=body.name,
                    type=body.type,
                    project=body.project,
                    base_url=body.base_url,
                    config=dict_to_struct(body.config),
                ),
                api_key=body.api_key,
                request_id=body.request_id,
            ),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(reply.provider, status_code=201, etag=reply.provider.etag)


@router.get("/{provider_id}", summary="Get a provider", responses={200: {"model": Provider}})
async def get_provider(provider_id: str, caller: CallerDep, backends: BackendsDep) -> JSONResponse:
    """One provider."""
    ctx = caller.context
    reply = await call(
        backends.providers.GetProvider(
            pb.GetProviderRequest(id=provider_id), metadata=ctx.metadata, timeout=ctx.timeout_s
        )
    )
    return resource_response(reply.provider, etag=reply.provider.etag)


@router.patch("/{provider_id}", summary="Update a provider", responses={200: {"model": Provider}})
async def update_provider(
    provider_id: str,
    body: ProviderUpdate,
    caller: CallerDep,
    backends: BackendsDep,
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Change the fields present in the body; changing type, base_url or api_key revalidates."""
    fields = body.model_dump(exclude_unset=True)
    etag = etag_from(fields.pop("etag", None), if_match)
    provider = pb.Provider(
        id=provider_id,
        etag=etag,
        name=body.name or "",
        type=body.type or "",
        base_url=body.base_url or "",
        config=dict_to_struct(body.config or {}),
    )
    ctx = caller.context
    reply = await call(
        backends.providers.UpdateProvider(
            pb.UpdateProviderRequest(
                provider=provider,
                update_mask=field_mask_pb2.FieldMask(paths=list(fields)),
                api_key=body.api_key or "",
            ),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(reply.provider, etag=reply.provider.etag)


@router.delete("/{provider_id}", summary="Delete a provider", responses={200: {"model": Provider}})
async def delete_provider(
    provider_id: str,
    caller: CallerDep,
    backends: BackendsDep,
    etag: str = "",
    force: bool = False,
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Delete a provider; refused (400, PROVIDER_IN_USE) while agents use it, unless `force`."""
    ctx = caller.context
    reply = await call(
        backends.providers.DeleteProvider(
            pb.DeleteProviderRequest(id=provider_id, etag=etag_from(etag, if_match), force=force),
            metadata=ctx.metadata,
            timeout=ctx.timeout_s,
        )
    )
    return resource_response(reply.provider)


@router.post(
    "/{provider_id}:validate",
    status_code=202,
    summary="Validate a provider now",
    responses={202: {"model": Provider}},
)
async def validate_provider(provider_id: str, caller: CallerDep, backends: BackendsDep) -> JSONResponse:
    """Queue a validation; the outcome arrives as a `providers.validated` event. Rate limited per provider."""
    ctx = caller.context
    reply = await call(
        backends.providers.ValidateProvider(
            pb.ValidateProviderRequest(id=provider_id), metadata=ctx.metadata, timeout=ctx.timeout_s
        )
    )
    return resource_response(reply.provider, status_code=202)
