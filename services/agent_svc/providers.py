"""agent_svc's view of provider_svc: does a provider exist, and its credential.

Credentials come from `CredentialService` over the internal port with agent_svc's
service key, are cached per provider (one request per provider at a time, however
many runs want it), and are evicted when the provider changes (a `providers.*` event)
or after `ttl_s` at the latest. The key never appears in a repr, a log or an error.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc

from agentmgr.v1 import credential_pb2, credential_pb2_grpc, provider_pb2, provider_pb2_grpc
from libs.common.errors import DomainError, NotFound
from libs.common.grpc_errors import from_rpc_error
from libs.common.jsonvalue import JsonObject
from libs.common.protojson import struct_to_dict

__all__ = ["ProviderClient", "ProviderCredential", "ProviderInfo"]

_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    """What agent_svc needs to know about a provider to accept it for an agent."""

    id: str
    project: str
    type: str
    name: str


@dataclass(frozen=True, slots=True)
class ProviderCredential:
    """A provider's connection details and key (never log it)."""

    provider_id: str
    project: str
    type: str
    base_url: str
    config: JsonObject
    etag: str
    api_key: str = field(repr=False)


class ProviderClient:
    """Typed calls to provider_svc, with a single-flight TTL cache of credentials."""

    def __init__(
        self,
        *,
        public: grpc.aio.Channel,
        internal: grpc.aio.Channel,
        service_key: str,
        ttl_s: float = 300.0,
    ) -> None:
        self._providers = provider_pb2_grpc.ProviderServiceStub(public)
        self._credentials = credential_pb2_grpc.CredentialServiceStub(internal)
        self._metadata = (("authorization", f"Bearer {service_key}"),)
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, ProviderCredential]] = {}
        self._pending: dict[str, asyncio.Future[ProviderCredential]] = {}
        self._generation: dict[str, int] = {}

    async def get_provider(self, provider_id: str) -> ProviderInfo | None:
        """The provider, or None when it does not exist."""
        try:
            reply = await self._providers.GetProvider(
                provider_pb2.GetProviderRequest(id=provider_id), metadata=self._metadata, timeout=_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc)
            if isinstance(error, NotFound):
                return None
            raise error from None
        p = reply.provider
        return ProviderInfo(id=p.id, project=p.project, type=p.type, name=p.name)

    async def credential(self, provider_id: str) -> ProviderCredential:
        """The provider's credential (cached); NOT_FOUND if the provider is gone."""
        cached = self._cache.get(provider_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        pending = self._pending.get(provider_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ProviderCredential] = asyncio.get_running_loop().create_future()
        self._pending[provider_id] = future
        generation = self._generation.get(provider_id, 0)
        try:
            credential = await self._fetch(provider_id)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        finally:
            self._pending.pop(provider_id, None)
        # An eviction that happened while fetching means this answer may predate the change.
        if self._generation.get(provider_id, 0) == generation:
            self._cache[provider_id] = (time.monotonic() + self._ttl_s, credential)
        future.set_result(credential)
        return credential

    async def _fetch(self, provider_id: str) -> ProviderCredential:
        try:
            reply = await self._credentials.ResolveCredentials(
                credential_pb2.ResolveCredentialsRequest(provider_id=provider_id),
                metadata=self._metadata,
                timeout=_TIMEOUT_S,
            )
        except grpc.aio.AioRpcError as exc:
            error: DomainError = from_rpc_error(exc)
            raise error from None
        return ProviderCredential(
            provider_id=reply.provider_id,
            project=reply.project,
            type=reply.type,
            base_url=reply.base_url,
            config=struct_to_dict(reply.config),
            etag=reply.etag,
            api_key=reply.api_key,
        )

    def evict(self, provider_id: str) -> None:
        """Forget a provider's credential (it changed or was deleted)."""
        self._cache.pop(provider_id, None)
        self._generation[provider_id] = self._generation.get(provider_id, 0) + 1
