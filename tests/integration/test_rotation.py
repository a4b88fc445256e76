"""`agentmgr rotate-keys`: online re-encryption under concurrent reads, resumable, rerunnable."""

from __future__ import annotations

import asyncio
import os
import sys

import grpc
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from agentmgr.v1 import credential_pb2, credential_pb2_grpc, provider_pb2_grpc
from agentmgr.v1 import provider_pb2 as P
from libs.common.crypto import Keyring, generate_key
from services.provider_svc.repository import providers as providers_table
from services.provider_svc.server import ProviderServer
from tests.conftest import provider_settings
from tests.support.grpc_helpers import auth

pytestmark = pytest.mark.asyncio


async def rotate_cli(database_url: str, keys: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "libs.cli.main",
        "rotate-keys",
        env={**os.environ, "DATABASE_URL": database_url, "ENCRYPTION_KEYS": keys},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def _server(database_url, nats_url, keys) -> ProviderServer:
    server = ProviderServer(
        provider_settings(
            database_url=database_url,
            nats_url=nats_url,
            encryption_keys=keys,
            validation_worker_enabled=False,
        )
    )
    await server.start("127.0.0.1:0", "127.0.0.1:0")
    return server


async def test_rotation_under_concurrent_reads_loses_nothing(fresh_database_url, nats_server, keys, log_tee):
    old, new = generate_key(), generate_key()
    plaintexts: dict[str, str] = {}

    server = await _server(fresh_database_url, nats_server.url, old)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.runtime.port}") as channel:
        providers = provider_pb2_grpc.ProviderServiceStub(channel)
        for i in range(60):
            secret = f"sk-rotation-{i:03d}-{os.urandom(8).hex()}"
            reply = await providers.CreateProvider(
                P.CreateProviderRequest(provider=P.Provider(name=f"rot-{i}", type="openai"), api_key=secret),
                metadata=auth(keys.admin),
            )
            plaintexts[reply.provider.id] = secret
    await server.stop()

    # Step 1 of the documented procedure: services run with "new,old".
    server = await _server(fresh_database_url, nats_server.url, f"{new},{old}")
    mismatches: list[str] = []
    reads = 0
    stop = asyncio.Event()

    async def reader() -> None:
        nonlocal reads
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.runtime.internal_port}") as channel:
            credentials = credential_pb2_grpc.CredentialServiceStub(channel)
            while not stop.is_set():
                for provider_id, secret in plaintexts.items():
                    reply = await credentials.ResolveCredentials(
                        credential_pb2.ResolveCredentialsRequest(provider_id=provider_id),
                        metadata=auth(keys.service),
                    )
                    reads += 1
                    if reply.api_key != secret:
                        mismatches.append(provider_id)

    readers = [asyncio.create_task(reader()) for _ in range(3)]
    try:
        # Step 2: rotate while the readers read. Running it twice shows it is safe to rerun.
        code, output = await rotate_cli(fresh_database_url, f"{new},{old}")
        assert code == 0, output
        assert "re-encrypted 60 key(s)" in output
        code, output = await rotate_cli(fresh_database_url, f"{new},{old}")
        assert code == 0, output
        assert "re-encrypted 0 key(s)" in output
    finally:
        stop.set()
        await asyncio.gather(*readers)
        await server.stop()
    assert reads > 60
    assert not mismatches

    primary = Keyring.from_setting(new).primary_fingerprint
    engine = create_async_engine(fresh_database_url)
    async with engine.connect() as conn:
        fingerprints = set((await conn.execute(select(providers_table.c.api_key_fingerprint))).scalars())
    await engine.dispose()
    assert fingerprints == {primary}

    # Step 3: the old key is dropped; everything still decrypts.
    server = await _server(fresh_database_url, nats_server.url, new)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.runtime.internal_port}") as channel:
            credentials = credential_pb2_grpc.CredentialServiceStub(channel)
            for provider_id, secret in plaintexts.items():
                resolved = await credentials.ResolveCredentials(
                    credential_pb2.ResolveCredentialsRequest(provider_id=provider_id),
                    metadata=auth(keys.service),
                )
                assert resolved.api_key == secret
    finally:
        await server.stop()


async def test_rotation_without_the_old_key_refuses_to_finish(fresh_database_url, nats_server, keys, log_tee):
    old, new = generate_key(), generate_key()
    server = await _server(fresh_database_url, nats_server.url, old)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.runtime.port}") as channel:
        providers = provider_pb2_grpc.ProviderServiceStub(channel)
        await providers.CreateProvider(
            P.CreateProviderRequest(
                provider=P.Provider(name="lonely", type="openai"), api_key="sk-lonely-key-000000"
            ),
            metadata=auth(keys.admin),
        )
    await server.stop()
    code, output = await rotate_cli(fresh_database_url, new)
    assert code == 1
    assert "decrypt with none of the configured keys" in output
    assert "sk-lonely" not in output


async def test_rotate_keys_refuses_a_bad_key_without_echoing_it(fresh_database_url):
    code, output = await rotate_cli(fresh_database_url, "changeme")
    assert code != 0
    assert "ENCRYPTION_KEYS" in output and "placeholder" in output
    code, output = await rotate_cli(fresh_database_url, "not-a-fernet-key-but-long-enough-0123456789")
    assert code != 0
    assert "not-a-fernet-key" not in output
