"""Background validation against a local OpenAI-compatible HTTP server run by the tests."""

from __future__ import annotations

import socket
import uuid

import grpc
import pytest
from google.protobuf import field_mask_pb2

from agentmgr.v1 import provider_pb2 as P
from tests.support.events import read_events
from tests.support.eventually import eventually
from tests.support.grpc_helpers import auth, bad_fields

pytestmark = pytest.mark.asyncio


def _name() -> str:
    return f"v-{uuid.uuid4().hex[:10]}"


async def _create(providers, keys, **fields) -> P.Provider:
    api_key = fields.pop("api_key", "")
    reply = await providers.CreateProvider(
        P.CreateProviderRequest(provider=P.Provider(name=_name(), **fields), api_key=api_key),
        metadata=auth(keys.admin),
    )
    provider: P.Provider = reply.provider
    return provider


async def _settled(
    providers, keys, provider_id: str, *, final: bool = True, timeout: float = 15.0
) -> P.Provider:
    async def done():
        got = (
            await providers.GetProvider(P.GetProviderRequest(id=provider_id), metadata=auth(keys.admin))
        ).provider
        assert got.validation.status != "pending", got.validation
        if final:
            assert "retrying" not in got.validation.detail, got.validation
        return got

    return await eventually(done, timeout=timeout)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_right_key_is_valid_with_models_and_event(providers, keys, llm_stub, js):
    provider = await _create(
        providers, keys, type="openai_compatible", base_url=llm_stub.url(), api_key=llm_stub.api_key
    )
    settled = await _settled(providers, keys, provider.id)
    assert settled.validation.status == "valid"
    assert list(settled.validation.models) == ["stub-large", "stub-small"]
    assert settled.validation.checked_time.seconds > 0
    assert f"Bearer {llm_stub.api_key}" in {r.authorization for r in llm_stub.seen}

    async def validated_event():
        events = [
            e
            for e in await read_events(js, subject="agentmgr.events.providers.validated")
            if e["subject"] == f"providers/{provider.id}"
        ]
        assert events, "no validated event yet"
        return events[-1]

    event = await eventually(validated_event)
    assert event["type"] == "agentmgr.provider.validated"
    assert event["actor"] == "system:validation-worker"
    assert event["data"]["validation"]["status"] == "valid"
    assert event["data"]["validation"]["models"] == ["stub-large", "stub-small"]
    assert llm_stub.api_key not in str(event)


async def test_wrong_key_is_auth_failed_and_body_is_not_echoed(providers, keys, llm_stub):
    wrong = "sk-wrong-key-" + uuid.uuid4().hex
    provider = await _create(
        providers, keys, type="openai_compatible", base_url=llm_stub.url(), api_key=wrong
    )
    settled = await _settled(providers, keys, provider.id)
    assert settled.validation.status == "auth_failed"
    assert "401" in settled.validation.detail
    assert wrong not in settled.validation.detail
    assert "Incorrect API key" not in settled.validation.detail


async def test_closed_port_is_unreachable(providers, keys):
    provider = await _create(
        providers,
        keys,
        type="openai_compatible",
        base_url=f"http://127.0.0.1:{_closed_port()}/v1",
        api_key="sk-whatever-123456",
    )
    settled = await _settled(providers, keys, provider.id)
    assert settled.validation.status == "unreachable"


async def test_slow_provider_is_timeout(providers, keys, llm_stub):
    provider = await _create(
        providers, keys, type="openai_compatible", base_url=llm_stub.url("slow"), api_key=llm_stub.api_key
    )
    settled = await _settled(providers, keys, provider.id, timeout=20)
    assert settled.validation.status == "timeout"
    assert "1 s" in settled.validation.detail


async def test_429_is_rate_limited(providers, keys, llm_stub):
    provider = await _create(
        providers,
        keys,
        type="openai_compatible",
        base_url=llm_stub.url("ratelimited"),
        api_key=llm_stub.api_key,
    )
    settled = await _settled(providers, keys, provider.id)
    assert settled.validation.status == "rate_limited"


async def test_transient_failures_are_retried_with_backoff(providers, keys, llm_stub):
    provider = await _create(
        providers, keys, type="openai_compatible", base_url=llm_stub.url("broken"), api_key=llm_stub.api_key
    )
    before = sum(1 for r in llm_stub.seen if r.path.startswith("/broken/"))
    first = await _settled(providers, keys, provider.id, final=False)
    assert first.validation.status == "unexpected_response"
    settled = await _settled(providers, keys, provider.id)
    assert settled.validation.status == "unexpected_response"
    assert "HTTP 500" in settled.validation.detail
    # two attempts (VALIDATION_MAX_ATTEMPTS=2 in tests)
    assert sum(1 for r in llm_stub.seen if r.path.startswith("/broken/")) - before >= 2


@pytest.mark.parametrize(("mode", "needle"), [("html", "not a model list"), ("redirect", "redirect")])
async def test_odd_answers_are_unexpected_response(providers, keys, llm_stub, mode, needle):
    provider = await _create(
        providers, keys, type="openai_compatible", base_url=llm_stub.url(mode), api_key=llm_stub.api_key
    )
    settled = await _settled(providers, keys, provider.id)
    assert settled.validation.status == "unexpected_response"
    assert needle in settled.validation.detail


async def test_google_key_travels_in_a_header_never_the_url(providers, keys, llm_stub):
    key = "AIza-google-key-" + uuid.uuid4().hex
    provider = await _create(providers, keys, type="google", base_url=llm_stub.url(), api_key=key)
    await _settled(providers, keys, provider.id)
    requests = [r for r in llm_stub.seen if r.headers.get("x-goog-api-key") == key]
    assert requests, "the stub never saw the key header"
    assert all(key not in r.path for r in llm_stub.seen)


async def test_anthropic_uses_its_headers(providers, keys, llm_stub):
    key = "sk-ant-" + uuid.uuid4().hex
    provider = await _create(
        providers, keys, type="anthropic", base_url=llm_stub.url().removesuffix("/v1"), api_key=key
    )
    await _settled(providers, keys, provider.id)
    requests = [r for r in llm_stub.seen if r.headers.get("x-api-key") == key]
    assert requests
    assert requests[-1].headers.get("anthropic-version") == "2023-06-01"
    assert requests[-1].path == "/v1/models"


async def test_changing_the_key_revalidates(providers, keys, llm_stub):
    provider = await _create(
        providers, keys, type="openai_compatible", base_url=llm_stub.url(), api_key="sk-wrong-at-first-000"
    )
    assert (await _settled(providers, keys, provider.id)).validation.status == "auth_failed"
    updated = await providers.UpdateProvider(
        P.UpdateProviderRequest(
            provider=P.Provider(id=provider.id),
            update_mask=field_mask_pb2.FieldMask(paths=["api_key"]),
            api_key=llm_stub.api_key,
        ),
        metadata=auth(keys.admin),
    )
    assert updated.provider.validation.status == "pending"
    assert updated.provider.api_key_hint == "sk-…0001"
    assert (await _settled(providers, keys, provider.id)).validation.status == "valid"


async def test_scheduled_recheck_runs_again(provider_svc, providers, keys, llm_stub):
    """A provider whose re-check is due is queued by the scheduler and checked again."""
    provider = await _create(
        providers, keys, type="openai_compatible", base_url=llm_stub.url(), api_key=llm_stub.api_key
    )
    first = await _settled(providers, keys, provider.id)
    from sqlalchemy import update

    from services.provider_svc.repository import providers as table

    async with provider_svc.runtime.engine.begin() as conn:
        await conn.execute(
            update(table)
            .where(table.c.id == provider.id)
            .values(next_check_at=first.validation.checked_time.ToDatetime())
        )

    async def rechecked():
        got = (
            await providers.GetProvider(P.GetProviderRequest(id=provider.id), metadata=auth(keys.admin))
        ).provider
        assert got.validation.checked_time.ToDatetime() > first.validation.checked_time.ToDatetime()
        assert got.validation.status == "valid"

    await eventually(rechecked, timeout=15)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://2852039166/",  # 169.254.169.254 in decimal
        "http://0xA9FEA9FE/",  # ... in hex
        "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
        "http://[::ffff:10.0.0.1]/v1",
        "http://10.1.2.3:8080/v1",
        "http://192.168.1.10/v1",
        "http://172.16.0.5/v1",
        "http://100.64.0.1/v1",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://0.0.0.0:8080/",
        "http://0/",
    ],
)
async def test_ssrf_targets_are_refused_at_save(providers, keys, url):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await _create(providers, keys, type="openai_compatible", base_url=url)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_fields(info.value) == ["provider.base_url"]


async def test_ssrf_is_checked_on_update_too(providers, keys):
    provider = await _create(providers, keys, type="ollama", base_url="http://127.0.0.1:11434")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await providers.UpdateProvider(
            P.UpdateProviderRequest(
                provider=P.Provider(id=provider.id, base_url="http://169.254.169.254/"),
                update_mask=field_mask_pb2.FieldMask(paths=["base_url"]),
            ),
            metadata=auth(keys.admin),
        )
    assert bad_fields(info.value) == ["provider.base_url"]
