"""No secret leaks: planted keys never show up in responses, logs, events or raw files.

This module runs its own PostgreSQL and nats-server in a temporary directory so that it
can read their files byte by byte afterwards.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from sqlalchemy import select, update

from agentmgr.v1 import credential_pb2, credential_pb2_grpc, provider_pb2_grpc
from agentmgr.v1 import provider_pb2 as P
from libs.common.auth import ALL_PROJECTS, Role, create_api_key
from libs.common.crypto import generate_key
from libs.common.embedded import EmbeddedNats, EmbeddedPostgres
from libs.common.logging import configure_logging
from libs.common.messaging import ensure_api_key_bucket, ensure_streams
from libs.common.migrate import run_migrations
from services.provider_svc.repository import SCHEMA
from services.provider_svc.repository import providers as providers_table
from services.provider_svc.server import ProviderServer
from tests.conftest import MIGRATIONS, LogTee, provider_settings
from tests.support.events import read_events
from tests.support.eventually import eventually
from tests.support.grpc_helpers import auth
from tests.support.llm_stub import LlmStub

pytestmark = pytest.mark.asyncio


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scan(root: Path, needles: list[str]) -> list[tuple[str, str]]:
    found = []
    encoded = [(n, n.encode()) for n in needles]
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [(n, str(path)) for n, raw in encoded if raw in data]
    return found


@pytest.fixture
def own_pg(tmp_path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_nats(tmp_path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats")
    try:
        yield server
    finally:
        server.stop()


async def test_planted_keys_never_leak(tmp_path, log_tee, own_pg, own_nats):
    # Own servers so their files can be read.
    pg, nats_server = own_pg, own_nats
    database_url = await asyncio.to_thread(pg.start)
    await asyncio.to_thread(
        run_migrations, migrations_dir=MIGRATIONS[SCHEMA], database_url=database_url, schema=SCHEMA
    )
    nats_url = await asyncio.to_thread(nats_server.start)
    import nats

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js, replicas=1)
    kv = await ensure_api_key_bucket(js, replicas=1)
    admin, _ = await create_api_key(kv, name="admin", project=ALL_PROJECTS, role=Role.ADMIN)
    service, _ = await create_api_key(kv, name="service", project=ALL_PROJECTS, role=Role.SERVICE)

    def planted(prefix: str) -> str:
        return f"{prefix}{uuid.uuid4().hex}{uuid.uuid4().hex[:8]}"

    good = planted("sk-PLANTEDgood")
    stub = LlmStub(api_key=good, slow_seconds=3.0)
    await stub.start()
    secrets = {
        "good": good,
        "wrong": planted("sk-PLANTEDwrong"),  # the stub echoes this one in its 401 body
        "nopattern": planted("PLANTEDnopattern"),  # matches no redaction pattern
        "google": planted("AIzaPLANTED"),
        "anthropic": planted("sk-ant-PLANTED"),
        "rotated": planted("sk-PLANTEDrotated"),
        "unreachable": planted("sk-PLANTEDunreach"),
        "slow": planted("sk-PLANTEDslow"),
        "bad_request": planted("sk-PLANTEDbadreq"),
        "config": planted("sk-PLANTEDconfig"),
        "deleted": planted("sk-PLANTEDdeleted"),
    }
    encryption_key = generate_key()
    debug_log = LogTee()
    configure_logging(level="DEBUG", fmt="json", service="tests", stream=debug_log, secrets=[encryption_key])
    server = ProviderServer(
        provider_settings(database_url=database_url, nats_url=nats_url, encryption_keys=encryption_key)
    )
    await server.start("127.0.0.1:0", "127.0.0.1:0")
    responses: list[str] = []
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.runtime.port}")
    internal = grpc.aio.insecure_channel(f"127.0.0.1:{server.runtime.internal_port}")
    providers = provider_pb2_grpc.ProviderServiceStub(channel)
    credentials = credential_pb2_grpc.CredentialServiceStub(internal)
    try:

        async def call(coro):
            try:
                reply = await coro
                responses.append(str(reply))
                return reply
            except grpc.aio.AioRpcError as exc:
                responses.append(f"{exc.code()} {exc.details()} {exc.trailing_metadata()}")
                return None

        async def make(name, type_, api_key, base_url="", config=None):
            return await call(
                providers.CreateProvider(
                    P.CreateProviderRequest(
                        provider=P.Provider(name=name, type=type_, base_url=base_url, config=config),
                        api_key=api_key,
                    ),
                    metadata=auth(admin),
                )
            )

        created = {
            "good": await make("good", "openai_compatible", secrets["good"], stub.url()),
            "wrong": await make("wrong", "openai_compatible", secrets["wrong"], stub.url()),
            "nopattern": await make("nopattern", "openai_compatible", secrets["nopattern"], stub.url()),
            "google": await make("google", "google", secrets["google"], stub.url()),
            "anthropic": await make(
                "anthropic", "anthropic", secrets["anthropic"], stub.url().removesuffix("/v1")
            ),
            "unreachable": await make(
                "unreachable",
                "openai_compatible",
                secrets["unreachable"],
                f"http://127.0.0.1:{_closed_port()}/v1",
            ),
            "slow": await make("slow", "openai_compatible", secrets["slow"], stub.url("slow")),
            "deleted": await make("deleted", "openai", secrets["deleted"]),
        }
        assert all(created.values())
        # Failures carrying a key: bad name, bad key characters, a secret in config.
        await make("Bad Name", "openai", secrets["bad_request"])
        await make("spacey", "openai", secrets["bad_request"] + " x")
        config = struct_pb2.Struct()
        config.update({"api_key": secrets["config"]})
        await make("configsecret", "test", "", config=config)
        # Update the key, read everything back, validate, resolve, delete.
        await call(
            providers.UpdateProvider(
                P.UpdateProviderRequest(
                    provider=P.Provider(id=created["good"].provider.id),
                    update_mask=field_mask_pb2.FieldMask(paths=["api_key"]),
                    api_key=secrets["rotated"],
                ),
                metadata=auth(admin),
            )
        )
        await call(providers.ListProviders(P.ListProvidersRequest(), metadata=auth(admin)))
        for reply in created.values():
            await call(
                providers.GetProvider(P.GetProviderRequest(id=reply.provider.id), metadata=auth(admin))
            )
            await call(
                credentials.ResolveCredentials(
                    credential_pb2.ResolveCredentialsRequest(provider_id=reply.provider.id),
                    metadata=auth(admin),
                )
            )
        # The one place a key may appear: CredentialService for the service role.
        resolved = await credentials.ResolveCredentials(
            credential_pb2.ResolveCredentialsRequest(provider_id=created["nopattern"].provider.id),
            metadata=auth(service),
        )
        assert resolved.api_key == secrets["nopattern"]
        await call(
            providers.DeleteProvider(
                P.DeleteProviderRequest(id=created["deleted"].provider.id), metadata=auth(admin)
            )
        )

        async def settled():
            listed = await providers.ListProviders(P.ListProvidersRequest(), metadata=auth(admin))
            statuses = {p.name: p.validation.status for p in listed.providers}
            assert "pending" not in statuses.values(), statuses
            assert all("retrying" not in p.validation.detail for p in listed.providers)
            return statuses

        statuses = await eventually(settled, timeout=30)
        assert statuses["good"] == "auth_failed"  # its key was replaced by one the stub refuses
        assert statuses["nopattern"] == "auth_failed"
        assert statuses["unreachable"] == "unreachable"
        assert statuses["slow"] == "timeout"

        # A ciphertext copied into another provider's row does not decrypt there.
        async with server.runtime.engine.begin() as conn:
            stolen = (
                await conn.execute(
                    select(providers_table.c.api_key_ciphertext).where(
                        providers_table.c.id == created["nopattern"].provider.id
                    )
                )
            ).scalar_one()
            await conn.execute(
                update(providers_table)
                .where(providers_table.c.id == created["anthropic"].provider.id)
                .values(api_key_ciphertext=stolen)
            )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await credentials.ResolveCredentials(
                credential_pb2.ResolveCredentialsRequest(provider_id=created["anthropic"].provider.id),
                metadata=auth(service),
            )
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert secrets["nopattern"] not in (info.value.details() or "")

        events = await read_events(js)
        assert len(events) > 10
    finally:
        await channel.close(None)
        await internal.close(None)
        await server.stop()
        await nc.close()
        await stub.stop()
        configure_logging(level="INFO", fmt="json", service="tests", stream=log_tee)

    # The stub really saw the keys (so they did flow through every path) ...
    seen = {r.authorization for r in stub.seen} | {r.headers.get("x-api-key", "") for r in stub.seen}
    seen |= {r.headers.get("x-goog-api-key", "") for r in stub.seen}
    for name in ("wrong", "nopattern", "google", "anthropic", "rotated"):
        assert any(secrets[name] in s for s in seen), name

    # ... but nothing of ours repeats them.
    logs = debug_log.text()
    assert len(logs) > 10_000, "DEBUG logging did not produce output"
    event_text = str(events)
    response_text = "\n".join(responses)
    for name, secret in secrets.items():
        assert secret not in logs, f"{name} key in the logs"
        assert secret not in event_text, f"{name} key in an event"
        assert secret not in response_text, f"{name} key in a response"
    assert encryption_key not in logs

    await asyncio.to_thread(pg.psql, "CHECKPOINT", database="agentmgr")
    await asyncio.to_thread(pg.stop)
    await asyncio.to_thread(nats_server.stop)
    leaks = _scan(tmp_path / "pg", list(secrets.values()))
    assert not leaks, f"keys in raw database files: {leaks}"
    leaks = _scan(tmp_path / "nats", list(secrets.values()))
    assert not leaks, f"keys in NATS files: {leaks}"
