"""ProviderService through a real gRPC server on a free port: every method and error code."""

from __future__ import annotations

import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmgr.v1 import credential_pb2, provider_pb2
from libs.common.errors import ResourceExhausted
from tests.support.events import read_events
from tests.support.eventually import eventually
from tests.support.grpc_helpers import auth, bad_fields, error_of

pytestmark = pytest.mark.asyncio

P = provider_pb2


def _name() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


async def create(providers, key, *, api_key="", request_id="", **fields):
    fields.setdefault("name", _name())
    fields.setdefault("type", "test")
    reply = await providers.CreateProvider(
        P.CreateProviderRequest(provider=P.Provider(**fields), api_key=api_key, request_id=request_id),
        metadata=auth(key),
    )
    return reply.provider


async def expect_code(call, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, f"{info.value.code()} {info.value.details()}"
    return info.value


# --- the happy paths -----------------------------------------------------------------


async def test_create_test_provider_is_valid_at_once(providers, keys):
    provider = await create(providers, keys.admin)
    assert provider.id.startswith("prv_")
    assert provider.project == "default"
    assert provider.validation.status == "valid"
    assert list(provider.validation.models) == ["test"]
    assert provider.api_key_hint == ""
    assert provider.etag
    assert provider.create_time.seconds > 0 and provider.update_time == provider.create_time


async def test_create_with_key_is_pending_and_shows_only_a_hint(providers, keys, llm_stub):
    provider = await create(
        providers,
        keys.admin,
        type="openai_compatible",
        base_url=llm_stub.url(),
        api_key="sk-abcdefghijklmnopqrstuvwxyz1234",
    )
    assert provider.validation.status in ("pending", "valid")
    assert provider.api_key_hint == "sk-…1234"
    assert "abcdefghijklmnop" not in str(provider)


async def test_get_list_update_delete_round_trip(providers, keys, js):
    config = struct_pb2.Struct()
    config.update({"region": "eu", "max_models": 5})
    created = await create(providers, keys.admin, config=config)

    got = (
        await providers.GetProvider(P.GetProviderRequest(id=created.id), metadata=auth(keys.viewer))
    ).provider
    assert got == created
    assert dict(got.config)["max_models"] == 5

    renamed = _name()
    updated = (
        await providers.UpdateProvider(
            P.UpdateProviderRequest(
                provider=P.Provider(id=created.id, name=renamed, etag=created.etag),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            metadata=auth(keys.admin),
        )
    ).provider
    assert updated.name == renamed
    assert updated.etag != created.etag
    assert updated.update_time.ToDatetime() > created.update_time.ToDatetime()
    assert updated.create_time == created.create_time

    deleted = (
        await providers.DeleteProvider(
            P.DeleteProviderRequest(id=created.id, etag=updated.etag), metadata=auth(keys.admin)
        )
    ).provider
    assert deleted.id == created.id
    await expect_code(
        providers.GetProvider(P.GetProviderRequest(id=created.id), metadata=auth(keys.admin)),
        grpc.StatusCode.NOT_FOUND,
    )

    async def all_three_events():
        events = [e for e in await read_events(js) if e["subject"] == f"providers/{created.id}"]
        assert [e["type"] for e in events] == [
            "agentmgr.provider.created",
            "agentmgr.provider.validated",
            "agentmgr.provider.updated",
            "agentmgr.provider.deleted",
        ], events
        return events

    events = await eventually(all_three_events)
    for event in events:
        assert event["_msg_id"] == event["id"]
        assert event["source"] == "//agentmgr/provider_svc"
        assert event["project"] == "default"
        assert event["actor"] == keys.admin_id
        assert event["specversion"] == "1.0"
        assert event["_subject"] == "agentmgr.events.providers." + event["type"].rsplit(".", 1)[1]
    assert events[2]["data"]["name"] == renamed
    assert events[3]["data"]["id"] == created.id


async def test_update_without_change_keeps_etag(providers, keys):
    created = await create(providers, keys.admin)
    same = (
        await providers.UpdateProvider(
            P.UpdateProviderRequest(
                provider=P.Provider(id=created.id, name=created.name),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            metadata=auth(keys.admin),
        )
    ).provider
    assert same.etag == created.etag


async def test_list_paginates_and_filters(providers, keys):
    project = f"pg{uuid.uuid4().hex[:8]}"
    names = sorted(_name() for _ in range(7))
    for name in names:
        await create(providers, keys.admin, name=name, project=project)
    await create(
        providers, keys.admin, name=_name(), project=project, type="ollama", base_url="http://127.0.0.1:11434"
    )

    seen, token, pages = [], "", 0
    while True:
        reply = await providers.ListProviders(
            P.ListProvidersRequest(project=project, type="test", page_size=3, page_token=token),
            metadata=auth(keys.viewer),
        )
        seen += [p.name for p in reply.providers]
        pages += 1
        token = reply.next_page_token
        if not token:
            break
    assert seen == names
    assert pages == 3

    only_ollama = await providers.ListProviders(
        P.ListProvidersRequest(project=project, type="ollama"), metadata=auth(keys.viewer)
    )
    assert [p.type for p in only_ollama.providers] == ["ollama"]

    valid = await providers.ListProviders(
        P.ListProvidersRequest(project=project, validation_status="valid"), metadata=auth(keys.viewer)
    )
    assert {p.name for p in valid.providers} == set(names)

    first = await providers.ListProviders(
        P.ListProvidersRequest(project=project, page_size=2), metadata=auth(keys.viewer)
    )
    error = await expect_code(
        providers.ListProviders(
            P.ListProvidersRequest(project=project, type="ollama", page_token=first.next_page_token),
            metadata=auth(keys.viewer),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["page_token"]


async def test_request_id_makes_create_idempotent(providers, keys):
    request_id = str(uuid.uuid4())
    name = _name()
    first = await create(providers, keys.admin, name=name, request_id=request_id)
    again = await create(providers, keys.admin, name=name, request_id=request_id)
    assert again.id == first.id
    error = await expect_code(
        providers.CreateProvider(
            P.CreateProviderRequest(provider=P.Provider(name=_name(), type="test"), request_id=request_id),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error_of(error).reason == "REQUEST_ID_REUSED"


async def test_validate_provider_queues_and_is_rate_limited(providers, keys, llm_stub):
    provider = await create(
        providers, keys.admin, type="openai_compatible", base_url=llm_stub.url(), api_key=llm_stub.api_key
    )

    async def settled():
        got = (
            await providers.GetProvider(P.GetProviderRequest(id=provider.id), metadata=auth(keys.admin))
        ).provider
        assert got.validation.status == "valid", got.validation
        return got

    await eventually(settled)

    async def validate():
        return (
            await providers.ValidateProvider(
                P.ValidateProviderRequest(id=provider.id), metadata=auth(keys.admin)
            )
        ).provider

    # Creating counted as a validation request: the limit (2 s in tests) applies at once.
    error = await expect_code(validate(), grpc.StatusCode.RESOURCE_EXHAUSTED)
    domain = error_of(error)
    assert isinstance(domain, ResourceExhausted)
    assert 0 < domain.retry_after <= 2.0

    async def accepted():
        try:
            return await validate()
        except grpc.aio.AioRpcError as exc:
            raise AssertionError(exc.details()) from exc

    queued = await eventually(accepted, timeout=5)
    assert queued.validation.status == "pending"
    await eventually(settled)


async def test_health_and_reflection_need_no_key(provider_channel, provider_internal_channel):
    health = health_pb2_grpc.HealthStub(provider_channel)
    for service in ("", "agentmgr.v1.ProviderService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    internal_health = health_pb2_grpc.HealthStub(provider_internal_channel)
    for service in ("", "agentmgr.v1.CredentialService"):
        reply = await internal_health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(provider_channel)

    async def requests():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = []
    async for reply in stub.ServerReflectionInfo(requests()):
        names += [s.name for s in reply.list_services_response.service]
    assert "agentmgr.v1.ProviderService" in names
    # CredentialService lives on the internal port only (a NetworkPolicy admits agent_svc alone).
    assert "agentmgr.v1.CredentialService" not in names


# --- every error code ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "api_key", "field"),
    [
        ({"name": ""}, "", "provider.name"),
        ({"name": "Bad Name!"}, "", "provider.name"),
        ({"name": "x" * 64}, "", "provider.name"),
        ({"type": "gpt"}, "", "provider.type"),
        ({"type": ""}, "", "provider.type"),
        ({"type": "openai"}, "", "api_key"),
        ({"type": "test"}, "sk-not-for-test-providers", "api_key"),
        ({"type": "openai_compatible"}, "", "provider.base_url"),
        ({"type": "ollama", "base_url": "ftp://127.0.0.1/"}, "", "provider.base_url"),
        ({"type": "ollama", "base_url": "http://user:pw@127.0.0.1/"}, "", "provider.base_url"),
        ({"type": "test", "base_url": "http://127.0.0.1:1"}, "", "provider.base_url"),
        ({"project": "No_Such Project"}, "", "provider.project"),
        ({"type": "openai"}, "sk-has a space", "api_key"),
    ],
)
async def test_create_rejects_bad_fields_naming_them(providers, keys, fields, api_key, field):
    values = {"name": _name(), "type": "test", **fields}
    error = await expect_code(
        providers.CreateProvider(
            P.CreateProviderRequest(provider=P.Provider(**values), api_key=api_key), metadata=auth(keys.admin)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == [field]
    assert field in (error.details() or "")


async def test_config_refuses_secrets_and_oversize(providers, keys):
    config = struct_pb2.Struct()
    config.update({"headers": {"X-Api-Key": "sk-oops"}})
    error = await expect_code(
        providers.CreateProvider(
            P.CreateProviderRequest(provider=P.Provider(name=_name(), type="test", config=config)),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["provider.config.headers.X-Api-Key"]
    assert "sk-oops" not in (error.details() or "")
    big = struct_pb2.Struct()
    big.update({"blob": "x" * 20_000})
    error = await expect_code(
        providers.CreateProvider(
            P.CreateProviderRequest(provider=P.Provider(name=_name(), type="test", config=big)),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["provider.config"]


async def test_duplicate_name_is_already_exists(providers, keys):
    name = _name()
    await create(providers, keys.admin, name=name)
    error = await expect_code(
        providers.CreateProvider(
            P.CreateProviderRequest(provider=P.Provider(name=name, type="test")), metadata=auth(keys.admin)
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert name in (error.details() or "")
    # The same name in another project is fine.
    other = await create(providers, keys.admin, name=name, project="elsewhere")
    assert other.project == "elsewhere"
    # Renaming onto a taken name is ALREADY_EXISTS too.
    second = await create(providers, keys.admin)
    await expect_code(
        providers.UpdateProvider(
            P.UpdateProviderRequest(
                provider=P.Provider(id=second.id, name=name),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )


async def test_not_found(providers, keys):
    for call in (
        providers.GetProvider(P.GetProviderRequest(id="prv_nope"), metadata=auth(keys.admin)),
        providers.GetProvider(P.GetProviderRequest(id=""), metadata=auth(keys.admin)),
        providers.DeleteProvider(P.DeleteProviderRequest(id="prv_nope"), metadata=auth(keys.admin)),
        providers.ValidateProvider(P.ValidateProviderRequest(id="prv_nope"), metadata=auth(keys.admin)),
        providers.UpdateProvider(
            P.UpdateProviderRequest(
                provider=P.Provider(id="prv_nope", name="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            ),
            metadata=auth(keys.admin),
        ),
    ):
        error = await expect_code(call, grpc.StatusCode.NOT_FOUND)
        assert error_of(error).reason == "NOT_FOUND"


async def test_stale_etag_is_aborted(providers, keys):
    created = await create(providers, keys.admin)
    mask = field_mask_pb2.FieldMask(paths=["name"])
    await providers.UpdateProvider(
        P.UpdateProviderRequest(
            provider=P.Provider(id=created.id, name=_name(), etag=created.etag), update_mask=mask
        ),
        metadata=auth(keys.admin),
    )
    error = await expect_code(
        providers.UpdateProvider(
            P.UpdateProviderRequest(
                provider=P.Provider(id=created.id, name=_name(), etag=created.etag), update_mask=mask
            ),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.ABORTED,
    )
    assert error_of(error).reason == "ETAG_MISMATCH"
    await expect_code(
        providers.DeleteProvider(
            P.DeleteProviderRequest(id=created.id, etag=created.etag), metadata=auth(keys.admin)
        ),
        grpc.StatusCode.ABORTED,
    )


@pytest.mark.parametrize(
    ("paths", "field"),
    [
        ([], "update_mask"),
        (["id"], "update_mask"),
        (["validation"], "update_mask"),
        (["nonsense"], "update_mask"),
    ],
)
async def test_update_mask_is_checked(providers, keys, paths, field):
    created = await create(providers, keys.admin)
    error = await expect_code(
        providers.UpdateProvider(
            P.UpdateProviderRequest(
                provider=P.Provider(id=created.id), update_mask=field_mask_pb2.FieldMask(paths=paths)
            ),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == [field]


async def test_update_type_needs_a_key(providers, keys):
    created = await create(providers, keys.admin)
    error = await expect_code(
        providers.UpdateProvider(
            P.UpdateProviderRequest(
                provider=P.Provider(id=created.id, type="anthropic"),
                update_mask=field_mask_pb2.FieldMask(paths=["type"]),
            ),
            metadata=auth(keys.admin),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["api_key"]


async def test_negative_page_size_is_invalid(providers, keys):
    error = await expect_code(
        providers.ListProviders(P.ListProvidersRequest(page_size=-1), metadata=auth(keys.admin)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["page_size"]
    error = await expect_code(
        providers.ListProviders(P.ListProvidersRequest(type="nope"), metadata=auth(keys.admin)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert bad_fields(error) == ["type"]


# --- authentication and authorisation ----------------------------------------------------


async def test_no_key_or_bad_key_is_unauthenticated(providers, credentials):
    for metadata in ((), auth("amk_not_a_real_key"), (("authorization", "Basic abc"),)):
        error = await expect_code(
            providers.ListProviders(P.ListProvidersRequest(), metadata=metadata),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        assert "amk_not_a_real_key" not in (error.details() or "")
    await expect_code(
        credentials.ResolveCredentials(credential_pb2.ResolveCredentialsRequest(provider_id="prv_x")),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_viewer_cannot_write(providers, keys):
    created = await create(providers, keys.admin)
    mask = field_mask_pb2.FieldMask(paths=["name"])
    for call in (
        providers.CreateProvider(
            P.CreateProviderRequest(provider=P.Provider(name=_name(), type="test")),
            metadata=auth(keys.viewer),
        ),
        providers.UpdateProvider(
            P.UpdateProviderRequest(provider=P.Provider(id=created.id, name=_name()), update_mask=mask),
            metadata=auth(keys.viewer),
        ),
        providers.DeleteProvider(P.DeleteProviderRequest(id=created.id), metadata=auth(keys.viewer)),
        providers.ValidateProvider(P.ValidateProviderRequest(id=created.id), metadata=auth(keys.viewer)),
    ):
        error = await expect_code(call, grpc.StatusCode.PERMISSION_DENIED)
        assert error_of(error).reason == "PERMISSION_DENIED"


async def test_only_service_role_may_resolve_credentials(providers, credentials, keys):
    created = await create(providers, keys.admin, type="openai", api_key="sk-credential-for-service-only-42")
    for key in (keys.admin, keys.viewer, keys.team_admin):
        await expect_code(
            credentials.ResolveCredentials(
                credential_pb2.ResolveCredentialsRequest(provider_id=created.id), metadata=auth(key)
            ),
            grpc.StatusCode.PERMISSION_DENIED,
        )
    reply = await credentials.ResolveCredentials(
        credential_pb2.ResolveCredentialsRequest(provider_id=created.id), metadata=auth(keys.service)
    )
    assert reply.api_key == "sk-credential-for-service-only-42"
    assert reply.type == "openai"
    assert reply.etag == created.etag
    await expect_code(
        credentials.ResolveCredentials(
            credential_pb2.ResolveCredentialsRequest(provider_id="prv_nope"), metadata=auth(keys.service)
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_project_scoped_keys_see_only_their_project(providers, keys):
    mine = await create(providers, keys.team_admin, project="team")
    theirs = await create(providers, keys.admin, project="default")
    listed = await providers.ListProviders(
        P.ListProvidersRequest(page_size=1000), metadata=auth(keys.team_viewer)
    )
    assert {p.project for p in listed.providers} == {"team"}
    assert mine.id in {p.id for p in listed.providers}
    await expect_code(
        providers.GetProvider(P.GetProviderRequest(id=theirs.id), metadata=auth(keys.team_viewer)),
        grpc.StatusCode.NOT_FOUND,
    )
    await expect_code(
        providers.CreateProvider(
            P.CreateProviderRequest(provider=P.Provider(name=_name(), type="test", project="default")),
            metadata=auth(keys.team_admin),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    await expect_code(
        providers.ListProviders(P.ListProvidersRequest(project="default"), metadata=auth(keys.team_viewer)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # A project-scoped key creates in its project when none is given? No: `default` is
    # the default project, which this key does not grant.
    await expect_code(
        providers.CreateProvider(
            P.CreateProviderRequest(provider=P.Provider(name=_name(), type="test")),
            metadata=auth(keys.team_admin),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_bootstrap_admin_key_works(providers, keys):
    reply = await providers.ListProviders(P.ListProvidersRequest(), metadata=auth(keys.bootstrap))
    assert reply is not None


async def test_deadline_exceeded_is_reported(providers, keys):
    error = await expect_code(
        providers.ListProviders(P.ListProvidersRequest(), metadata=auth(keys.admin), timeout=0.000001),
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )
    assert error is not None
