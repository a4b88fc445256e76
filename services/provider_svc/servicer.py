"""gRPC ⇄ domain for ProviderService and CredentialService; no logic of its own."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from agentmgr.v1 import (
    credential_pb2,
    credential_pb2_grpc,
    provider_pb2,
    provider_pb2_grpc,
)
from libs.common.auth import Access
from libs.common.grpc_server import current_principal
from libs.common.jsonvalue import JsonObject
from libs.common.protojson import dict_to_struct, message_to_json, struct_to_dict
from services.provider_svc.domain import Provider
from services.provider_svc.service import (
    ProviderChanges,
    ProviderDraft,
    ProviderService,
)

__all__ = ["ACCESS", "CredentialServicer", "ProviderServicer", "provider_json", "provider_to_proto"]

_P = "/agentmgr.v1.ProviderService/"
ACCESS: dict[str, Access] = {
    _P + "CreateProvider": Access.WRITE,
    _P + "GetProvider": Access.READ,
    _P + "ListProviders": Access.READ,
    _P + "UpdateProvider": Access.WRITE,
    _P + "DeleteProvider": Access.WRITE,
    _P + "ValidateProvider": Access.WRITE,
    "/agentmgr.v1.CredentialService/ResolveCredentials": Access.INTERNAL,
}


def _timestamp(value: object) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)  # type: ignore[arg-type]  # an aware datetime
    return stamp


def provider_to_proto(provider: Provider) -> provider_pb2.Provider:
    """The wire form of a provider (never with a key)."""
    validation = provider_pb2.ProviderValidation(
        status=provider.validation.status.value,
        detail=provider.validation.detail,
        models=list(provider.validation.models),
    )
    if provider.validation.checked_time is not None:
        validation.checked_time.CopyFrom(_timestamp(provider.validation.checked_time))
    return provider_pb2.Provider(
        id=provider.id,
        project=provider.project,
        name=provider.name,
        type=provider.type.value,
        base_url=provider.base_url,
        api_key_hint=provider.api_key_hint,
        config=dict_to_struct(provider.config),
        validation=validation,
        create_time=_timestamp(provider.create_time),
        update_time=_timestamp(provider.update_time),
        etag=provider.etag,
    )


def provider_json(provider: Provider) -> JsonObject:
    """The JSON form of a provider, as REST returns it and events carry it."""
    return message_to_json(provider_to_proto(provider))


class ProviderServicer(provider_pb2_grpc.ProviderServiceServicer):
    """ProviderService over gRPC."""

    def __init__(self, service: ProviderService) -> None:
        self._service = service

    async def CreateProvider(
        self, request: provider_pb2.CreateProviderRequest, context: object
    ) -> provider_pb2.CreateProviderResponse:
        p = request.provider
        provider = await self._service.create(
            current_principal(),
            ProviderDraft(
                project=p.project,
                name=p.name,
                type=p.type,
                base_url=p.base_url,
                config=struct_to_dict(p.config),
                api_key=request.api_key,
                request_id=request.request_id,
            ),
        )
        return provider_pb2.CreateProviderResponse(provider=provider_to_proto(provider))

    async def GetProvider(
        self, request: provider_pb2.GetProviderRequest, context: object
    ) -> provider_pb2.GetProviderResponse:
        provider = await self._service.get(current_principal(), request.id)
        return provider_pb2.GetProviderResponse(provider=provider_to_proto(provider))

    async def ListProviders(
        self, request: provider_pb2.ListProvidersRequest, context: object
    ) -> provider_pb2.ListProvidersResponse:
        page = await self._service.list(
            current_principal(),
            page_size_=request.page_size,
            page_token=request.page_token,
            project=request.project,
            type_=request.type,
            status=request.validation_status,
        )
        return provider_pb2.ListProvidersResponse(
            providers=[provider_to_proto(p) for p in page.providers], next_page_token=page.next_page_token
        )

    async def UpdateProvider(
        self, request: provider_pb2.UpdateProviderRequest, context: object
    ) -> provider_pb2.UpdateProviderResponse:
        p = request.provider
        provider = await self._service.update(
            current_principal(),
            ProviderChanges(
                id=p.id,
                etag=p.etag,
                paths=list(request.update_mask.paths),
                name=p.name,
                type=p.type,
                base_url=p.base_url,
                config=struct_to_dict(p.config),
                api_key=request.api_key,
            ),
        )
        return provider_pb2.UpdateProviderResponse(provider=provider_to_proto(provider))

    async def DeleteProvider(
        self, request: provider_pb2.DeleteProviderRequest, context: object
    ) -> provider_pb2.DeleteProviderResponse:
        provider = await self._service.delete(
            current_principal(), request.id, etag=request.etag, force=request.force
        )
        return provider_pb2.DeleteProviderResponse(provider=provider_to_proto(provider))

    async def ValidateProvider(
        self, request: provider_pb2.ValidateProviderRequest, context: object
    ) -> provider_pb2.ValidateProviderResponse:
        provider = await self._service.request_validation(current_principal(), request.id)
        return provider_pb2.ValidateProviderResponse(provider=provider_to_proto(provider))


class CredentialServicer(credential_pb2_grpc.CredentialServiceServicer):
    """CredentialService over gRPC (service role only)."""

    def __init__(self, service: ProviderService) -> None:
        self._service = service

    async def ResolveCredentials(
        self, request: credential_pb2.ResolveCredentialsRequest, context: object
    ) -> credential_pb2.ResolveCredentialsResponse:
        credential = await self._service.resolve_credentials(current_principal(), request.provider_id)
        p = credential.provider
        return credential_pb2.ResolveCredentialsResponse(
            provider_id=p.id,
            project=p.project,
            type=p.type.value,
            base_url=p.base_url,
            api_key=credential.api_key,
            config=dict_to_struct(p.config),
            etag=p.etag,
        )
