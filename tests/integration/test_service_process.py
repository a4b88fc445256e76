"""provider_svc as a process: configuration refusal, SIGTERM, the call-time egress guard."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmgr.v1 import provider_pb2 as P
from agentmgr.v1 import provider_pb2_grpc
from libs.common.embedded import free_port
from services.provider_svc.server import ProviderServer
from tests.conftest import provider_settings
from tests.support.eventually import eventually
from tests.support.grpc_helpers import auth
from tests.support.processes import ServiceProcess

pytestmark = pytest.mark.asyncio


async def run_module(env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.provider_svc",
        env={k: v for k, v in {**os.environ, **env}.items() if v is not None},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ENCRYPTION_KEYS", "changeme", "placeholder"),
        ("ENCRYPTION_KEYS", "this-is-not-a-fernet-key-SECRETVALUE", "not a Fernet key"),
        ("ENCRYPTION_KEYS", "", "required"),
        ("BOOTSTRAP_ADMIN_KEY", "changeme", "placeholder"),
        ("BOOTSTRAP_ADMIN_KEY", "shortSECRETVALUE", "at least 24"),
        ("DATABASE_URL", "", "required"),
        ("DATABASE_URL", "mysql://u:SECRETVALUE@h/db", "postgresql"),
        ("PROVIDER_GRPC_PORT", "99999", "less than or equal"),
        ("SSRF_ALLOWED_NETWORKS", "10.0.0.0/8,banana", "CIDR"),
    ],
)
async def test_bad_configuration_refuses_to_start_naming_the_variable(
    database_url, nats_server, encryption_keys, variable, value, expected
):
    env = {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_server.url,
        "ENCRYPTION_KEYS": encryption_keys,
        "PROVIDER_GRPC_PORT": "0",
        "PROVIDER_INTERNAL_GRPC_PORT": "0",
        "METRICS_PORT": "0",
        variable: value,
    }
    code, output = await run_module(env)
    assert code == 2, output
    assert variable in output
    assert expected in output
    assert "SECRETVALUE" not in output
    assert encryption_keys not in output


async def test_sigterm_turns_health_not_serving_then_exits_cleanly(
    tmp_path, database_url, nats_server, encryption_keys, keys
):
    port = free_port()
    service = ServiceProcess(
        "provider_svc",
        env={
            "DATABASE_URL": database_url,
            "NATS_URL": nats_server.url,
            "ENCRYPTION_KEYS": encryption_keys,
            "PROVIDER_GRPC_PORT": str(port),
            "GRPC_BIND_HOST": "127.0.0.1",
            "PROVIDER_INTERNAL_GRPC_PORT": "0",
            "METRICS_PORT": "0",
            "SHUTDOWN_DRAIN_DELAY_S": "1.0",
        },
        port=port,
        log=tmp_path / "svc.log",
    )
    service.start()
    await service.wait_serving()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stub = provider_pb2_grpc.ProviderServiceStub(channel)
        await stub.ListProviders(P.ListProvidersRequest(), metadata=auth(keys.admin))
        service.signal(signal.SIGTERM)

        async def not_serving():
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING

        await eventually(not_serving, timeout=5, interval=0.05)
    assert await service.stop(timeout=20) == 0
    assert "service_stopped" in service.log_text()


async def test_egress_guard_applies_at_call_time(
    database_url, nats_server, encryption_keys, keys, llm_stub, log_tee
):
    """Saved while loopback was allowed, validated by a worker that refuses it: refused."""
    common = {"database_url": database_url, "nats_url": nats_server.url, "encryption_keys": encryption_keys}
    saver = ProviderServer(provider_settings(**common, validation_worker_enabled=False))
    strict = ProviderServer(provider_settings(**common, ssrf_allow_loopback=False))
    await saver.start("127.0.0.1:0", "127.0.0.1:0")
    await strict.start("127.0.0.1:0", "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{saver.runtime.port}") as channel:
            stub = provider_pb2_grpc.ProviderServiceStub(channel)
            created = await stub.CreateProvider(
                P.CreateProviderRequest(
                    provider=P.Provider(
                        name=f"e-{uuid.uuid4().hex[:8]}", type="openai_compatible", base_url=llm_stub.url()
                    ),
                    api_key=llm_stub.api_key,
                ),
                metadata=auth(keys.admin),
            )
            before = len(llm_stub.seen)

            async def refused():
                got = await stub.GetProvider(
                    P.GetProviderRequest(id=created.provider.id), metadata=auth(keys.admin)
                )
                assert got.provider.validation.status == "unreachable", got.provider.validation
                assert "egress policy" in got.provider.validation.detail
                assert "loopback" in got.provider.validation.detail

            await eventually(refused, timeout=15)
            assert len(llm_stub.seen) == before, "the refused call reached the server"
    finally:
        await strict.stop()
        await saver.stop()
