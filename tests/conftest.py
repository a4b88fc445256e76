"""The test harness: real PostgreSQL and real NATS, real gRPC servers on free ports.

Without `DATABASE_URL` / `NATS_URL` the harness starts the embedded servers (the same
ones `make run` uses) in a temporary directory. With them, it uses those servers: it
creates its own databases (the role needs CREATEDB) and, for NATS, deletes
agentmgr's streams and key bucket before each test module — so point it at a
throwaway server. Nothing is ever skipped for lack of a server.

Isolation: one PostgreSQL server per session, a fresh database per test module
(cloned from a migrated template), a fresh nats-server per test module.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import grpc
import httpx
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from agentmgr.v1 import agent_pb2_grpc, credential_pb2_grpc, provider_pb2_grpc, run_pb2_grpc, task_pb2_grpc
from libs.common.auth import ALL_PROJECTS, Role, create_api_key
from libs.common.crypto import generate_key
from libs.common.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from libs.common.logging import configure_logging
from libs.common.messaging import API_KEYS_BUCKET, EVENTS_STREAM, JOBS_STREAM, ensure_api_key_bucket
from libs.common.migrate import run_migrations
from services.agent_svc.repository import SCHEMA as AGENT_SCHEMA
from services.agent_svc.server import AgentServer
from services.agent_svc.settings import AgentSettings
from services.gateway.server import GatewayServer
from services.gateway.settings import GatewaySettings
from services.provider_svc.repository import SCHEMA as PROVIDER_SCHEMA
from services.provider_svc.server import ProviderServer
from services.provider_svc.settings import ProviderSettings
from tests.support.llm_stub import LlmStub

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = {
    PROVIDER_SCHEMA: ROOT / "services" / "provider_svc" / "migrations",
    AGENT_SCHEMA: ROOT / "services" / "agent_svc" / "migrations",
}


# --- logging ---------------------------------------------------------------------


class LogTee(io.TextIOBase):
    """Keeps every log line of the session (for the secret-leak tests) and echoes to stderr."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.append(text)
        sys.stderr.write(text)
        return len(text)

    def text(self) -> str:
        return "".join(self.lines)


@pytest.fixture(scope="session")
def log_tee() -> LogTee:
    tee = LogTee()
    configure_logging(level="INFO", fmt="json", service="tests", stream=tee)
    return tee


# --- PostgreSQL ------------------------------------------------------------------


def _swap_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


@dataclass
class PostgresHandle:
    """A PostgreSQL server the tests may create databases on."""

    url: str
    """URL of the server's maintenance database."""
    embedded: EmbeddedPostgres | None

    async def create_database(self, name: str, *, template: str | None = None) -> str:
        conn = await asyncpg.connect(_asyncpg_dsn(_swap_database(self.url, "postgres")))
        try:
            suffix = f' TEMPLATE "{template}"' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{suffix}')
        finally:
            await conn.close()
        return _swap_database(self.url, name)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresHandle]:
    given = os.environ.get("DATABASE_URL")
    if given:
        yield PostgresHandle(url=given, embedded=None)
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("postgres"), database="postgres")
    url = server.start()
    try:
        yield PostgresHandle(url=url, embedded=server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def template_database(postgres: PostgresHandle) -> str:
    """A database with every service's migrations applied, cloned per module."""
    name = f"agentmgr_tpl_{uuid.uuid4().hex[:8]}"
    url = await postgres.create_database(name)
    for schema, directory in MIGRATIONS.items():
        await asyncio.to_thread(run_migrations, migrations_dir=directory, database_url=url, schema=schema)
    return name


@pytest.fixture(scope="module")
async def database_url(postgres: PostgresHandle, template_database: str) -> str:
    """A fresh, migrated database for this test module."""
    return await postgres.create_database(f"agentmgr_t_{uuid.uuid4().hex[:10]}", template=template_database)


@pytest.fixture
async def fresh_database_url(postgres: PostgresHandle, template_database: str) -> str:
    """A fresh, migrated database for one test (no module server touches it)."""
    return await postgres.create_database(f"agentmgr_f_{uuid.uuid4().hex[:10]}", template=template_database)


# --- NATS ------------------------------------------------------------------------


@dataclass
class NatsHandle:
    """A nats-server for one test module (or the given one)."""

    url: str
    embedded: EmbeddedNats | None


@pytest.fixture(scope="module")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsHandle]:
    given = os.environ.get("NATS_URL")
    if given:
        nc = await nats.connect(given)
        js = nc.jetstream()
        for stream in (EVENTS_STREAM, JOBS_STREAM, f"KV_{API_KEYS_BUCKET}"):
            try:
                await js.delete_stream(stream)
            except Exception as exc:  # absent is fine
                if "NotFound" not in type(exc).__name__:
                    raise
        await nc.close()
        yield NatsHandle(url=given, embedded=None)
        return
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    url = await asyncio.to_thread(server.start)
    try:
        yield NatsHandle(url=url, embedded=server)
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture(scope="module")
async def nc(nats_server: NatsHandle) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="module")
def js(nc: NatsClient) -> JetStreamContext:
    return nc.jetstream()


# --- API keys --------------------------------------------------------------------


@dataclass
class Keys:
    """API keys of every kind, created in the module's key bucket."""

    admin: str
    viewer: str
    service: str
    team_admin: str
    """admin of project `team` only"""
    team_viewer: str
    admin_id: str
    bootstrap: str


@pytest.fixture(scope="module")
async def keys(js: JetStreamContext) -> Keys:
    from libs.common.messaging import ensure_streams

    await ensure_streams(js, replicas=1)
    kv = await ensure_api_key_bucket(js, replicas=1)
    admin, admin_record = await create_api_key(kv, name="admin", project=ALL_PROJECTS, role=Role.ADMIN)
    viewer, _ = await create_api_key(kv, name="viewer", project=ALL_PROJECTS, role=Role.VIEWER)
    service, _ = await create_api_key(kv, name="service", project=ALL_PROJECTS, role=Role.SERVICE)
    team_admin, _ = await create_api_key(kv, name="team-admin", project="team", role=Role.ADMIN)
    team_viewer, _ = await create_api_key(kv, name="team-viewer", project="team", role=Role.VIEWER)
    return Keys(
        admin=admin,
        viewer=viewer,
        service=service,
        team_admin=team_admin,
        team_viewer=team_viewer,
        admin_id=admin_record.id,
        bootstrap="amk_bootstrap_" + uuid.uuid4().hex,
    )


@pytest.fixture(scope="module")
def encryption_keys() -> str:
    return generate_key()


# --- the LLM stub ----------------------------------------------------------------


@pytest.fixture(scope="module")
async def llm_stub() -> AsyncIterator[LlmStub]:
    stub = LlmStub(slow_seconds=3.0)
    await stub.start()
    try:
        yield stub
    finally:
        await stub.stop()


# --- provider_svc ----------------------------------------------------------------


def provider_settings(
    *,
    database_url: str,
    nats_url: str,
    encryption_keys: str,
    bootstrap: str | None = None,
    **overrides: object,
) -> ProviderSettings:
    """Settings for a provider_svc under test: fast retries, loopback allowed."""
    values: dict[str, object] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "encryption_keys": encryption_keys,
        "provider_grpc_port": 0,
        "provider_internal_grpc_port": 0,
        "metrics_port": 0,
        "grpc_bind_host": "127.0.0.1",
        "ssrf_allow_loopback": True,
        "validation_timeout_s": 1.0,
        "validation_backoff_s": 0.2,
        "validation_max_attempts": 2,
        "validation_min_interval_s": 2.0,
        "validation_scan_interval_s": 0.5,
        "outbox_poll_interval_s": 0.2,
        "shutdown_grace_s": 5.0,
        "shutdown_drain_delay_s": 0.0,
        "rate_limit_rps": 0.0,
        "bootstrap_admin_key": bootstrap,
        **overrides,
    }
    return ProviderSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
async def provider_svc(
    log_tee: LogTee, database_url: str, nats_server: NatsHandle, keys: Keys, encryption_keys: str
) -> AsyncIterator[ProviderServer]:
    server = ProviderServer(
        provider_settings(
            database_url=database_url,
            nats_url=nats_server.url,
            encryption_keys=encryption_keys,
            bootstrap=keys.bootstrap,
        )
    )
    await server.start("127.0.0.1:0", "127.0.0.1:0")
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="module")
async def provider_internal_channel(provider_svc: ProviderServer) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{provider_svc.runtime.internal_port}")
    try:
        yield channel
    finally:
        await channel.close(None)


@pytest.fixture(scope="module")
async def provider_channel(provider_svc: ProviderServer) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{provider_svc.runtime.port}")
    try:
        yield channel
    finally:
        await channel.close(None)


@pytest.fixture(scope="module")
def providers(provider_channel: grpc.aio.Channel) -> provider_pb2_grpc.ProviderServiceAsyncStub:
    return provider_pb2_grpc.ProviderServiceStub(provider_channel)


@pytest.fixture(scope="module")
def credentials(
    provider_internal_channel: grpc.aio.Channel,
) -> credential_pb2_grpc.CredentialServiceAsyncStub:
    return credential_pb2_grpc.CredentialServiceStub(provider_internal_channel)


# --- the whole back end: provider_svc + agent_svc ------------------------------------


def agent_settings(
    *,
    database_url: str,
    nats_url: str,
    service_key: str,
    provider_address: str,
    internal_address: str,
    **overrides: object,
) -> AgentSettings:
    """Settings for an agent_svc under test."""
    values: dict[str, object] = {
        "database_url": database_url,
        "nats_url": nats_url,
        "service_api_key": service_key,
        "provider_svc_address": provider_address,
        "provider_internal_address": internal_address,
        "agent_grpc_port": 0,
        "grpc_bind_host": "127.0.0.1",
        "metrics_port": 0,
        "ssrf_allow_loopback": True,
        "outbox_poll_interval_s": 0.2,
        "shutdown_grace_s": 5.0,
        "shutdown_drain_delay_s": 0.0,
        "rate_limit_rps": 0.0,
        "run_workers": 8,
        **overrides,
    }
    return AgentSettings(**values)  # type: ignore[arg-type]


@dataclass
class Stack:
    """provider_svc and agent_svc, wired to each other, with client stubs."""

    provider: ProviderServer
    agent: AgentServer
    channels: list[grpc.aio.Channel]
    providers: provider_pb2_grpc.ProviderServiceAsyncStub
    agents: agent_pb2_grpc.AgentServiceAsyncStub
    tasks: task_pb2_grpc.TaskServiceAsyncStub
    runs: run_pb2_grpc.RunServiceAsyncStub


async def start_stack(
    database_url: str, nats_url: str, keys: Keys, encryption_keys: str, **agent_overrides: object
) -> Stack:
    agent_port = free_port()
    provider = ProviderServer(
        provider_settings(
            database_url=database_url,
            nats_url=nats_url,
            encryption_keys=encryption_keys,
            agent_svc_address=f"127.0.0.1:{agent_port}",
            service_api_key=keys.service,
        )
    )
    await provider.start("127.0.0.1:0", "127.0.0.1:0")
    agent = AgentServer(
        agent_settings(
            database_url=database_url,
            nats_url=nats_url,
            service_key=keys.service,
            provider_address=f"127.0.0.1:{provider.runtime.port}",
            internal_address=f"127.0.0.1:{provider.runtime.internal_port}",
            **agent_overrides,
        )
    )
    await agent.start(f"127.0.0.1:{agent_port}")
    provider_channel = grpc.aio.insecure_channel(f"127.0.0.1:{provider.runtime.port}")
    agent_channel = grpc.aio.insecure_channel(f"127.0.0.1:{agent_port}")
    return Stack(
        provider=provider,
        agent=agent,
        channels=[provider_channel, agent_channel],
        providers=provider_pb2_grpc.ProviderServiceStub(provider_channel),
        agents=agent_pb2_grpc.AgentServiceStub(agent_channel),
        tasks=task_pb2_grpc.TaskServiceStub(agent_channel),
        runs=run_pb2_grpc.RunServiceStub(agent_channel),
    )


async def stop_stack(stack: Stack) -> None:
    for channel in stack.channels:
        await channel.close(None)
    await stack.agent.stop()
    await stack.provider.stop()


@pytest.fixture(scope="module")
async def stack(
    log_tee: LogTee, database_url: str, nats_server: NatsHandle, keys: Keys, encryption_keys: str
) -> AsyncIterator[Stack]:
    running = await start_stack(database_url, nats_server.url, keys, encryption_keys)
    try:
        yield running
    finally:
        await stop_stack(running)


# --- the gateway -------------------------------------------------------------------


def gateway_settings(
    *, nats_url: str, provider_address: str, agent_address: str, **overrides: object
) -> GatewaySettings:
    """Settings for a gateway under test."""
    values: dict[str, object] = {
        "nats_url": nats_url,
        "provider_svc_address": provider_address,
        "agent_svc_address": agent_address,
        "http_bind_host": "127.0.0.1",
        "http_port": 0,
        "rate_limit_rps": 0.0,
        "shutdown_grace_s": 5.0,
        "shutdown_drain_delay_s": 0.0,
        **overrides,
    }
    return GatewaySettings(**values)  # type: ignore[arg-type]


@dataclass
class GatewayHandle:
    """A running gateway and an HTTP client for it."""

    server: GatewayServer
    url: str
    http: httpx.AsyncClient

    def ws_url(self, path: str = "/v1/ws") -> str:
        return self.url.replace("http://", "ws://") + path


async def start_gateway(stack: Stack, nats_url: str, **overrides: object) -> GatewayHandle:
    server = GatewayServer(
        gateway_settings(
            nats_url=nats_url,
            provider_address=f"127.0.0.1:{stack.provider.runtime.port}",
            agent_address=f"127.0.0.1:{stack.agent.runtime.port}",
            **overrides,
        )
    )
    port = await server.start()
    url = f"http://127.0.0.1:{port}"
    return GatewayHandle(server=server, url=url, http=httpx.AsyncClient(base_url=url, timeout=30))


@pytest.fixture(scope="module")
async def gateway(stack: Stack, nats_server: NatsHandle) -> AsyncIterator[GatewayHandle]:
    handle = await start_gateway(stack, nats_server.url)
    try:
        yield handle
    finally:
        await handle.http.aclose()
        await handle.server.stop()
