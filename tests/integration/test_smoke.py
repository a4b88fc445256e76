from __future__ import annotations

from agentmgr.v1 import provider_pb2
from tests.support.grpc_helpers import auth


async def test_create_and_get(providers, keys):
    created = await providers.CreateProvider(
        provider_pb2.CreateProviderRequest(provider=provider_pb2.Provider(name="t1", type="test")),
        metadata=auth(keys.admin),
    )
    assert created.provider.validation.status == "valid"
    got = await providers.GetProvider(provider_pb2.GetProviderRequest(id=created.provider.id), metadata=auth(keys.viewer))
    assert got.provider == created.provider
