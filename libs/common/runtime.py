"""What every service process does around its domain.

It connects, watches API keys, relays the outbox, reports readiness, and stops
cleanly on SIGTERM.

Each service's `server.py` (its composition root) builds a `ServiceRuntime` with its
settings and tables, adds its servicers and background jobs, and calls `run()`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass

import sniffio
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from prometheus_client import start_http_server
from sqlalchemy import Table, text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.activity import Activity
from libs.common.auth import Access, KeyStore, ensure_bootstrap_admin_key, ensure_service_key
from libs.common.db import create_engine
from libs.common.gctune import tune_gc_for_serving
from libs.common.grpc_server import AccessPolicy, CallInterceptor, GrpcServer
from libs.common.logging import get_logger, redactor
from libs.common.messaging import close as close_nats
from libs.common.messaging import connect, ensure_api_key_bucket, ensure_streams
from libs.common.metrics import ConsumerRef, MetricsRefresher
from libs.common.outbox import Outbox, OutboxRelay
from libs.common.ratelimit import RateLimiter
from libs.common.settings import CommonSettings
from libs.common.tasks import cancel_and_wait
from libs.common.telemetry import tracing_enabled

__all__ = ["ServiceRuntime"]

_log = get_logger(__name__)

Job = Callable[[], Coroutine[object, object, None]]


@dataclass
class _Connections:
    engine: AsyncEngine
    nats: NatsClient
    js: JetStreamContext
    api_keys: KeyValue


class ServiceRuntime:
    """Infrastructure, gRPC server and background jobs of one service process."""

    def __init__(
        self,
        *,
        name: str,
        settings: CommonSettings,
        outbox_table: Table,
        access: Mapping[str, Access],
        service_names: list[str],
        internal_service_names: list[str] | None = None,
        method_timeouts: Mapping[str, float] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._outbox_table = outbox_table
        self.keys = KeyStore()
        self.outbox = Outbox(outbox_table, source=f"//agentmgr/{name}")
        self.activity = Activity()
        limiter = (
            RateLimiter(rate=settings.rate_limit_rps, burst=settings.rate_limit_burst)
            if settings.rate_limit_rps > 0
            else None
        )
        interceptor = CallInterceptor(
            keys=self.keys,
            policy=AccessPolicy(access),
            limiter=limiter,
            default_timeout_s=settings.grpc_default_timeout_s,
            method_timeouts=method_timeouts,
            tracing=tracing_enabled(),
            activity=self.activity,
        )
        self.grpc = GrpcServer(
            interceptor=interceptor,
            service_names=service_names,
            max_message_bytes=settings.grpc_max_message_bytes,
        )
        # Internal services get a port of their own, so that a NetworkPolicy (which sees
        # ports, not gRPC methods) can admit only the callers meant to reach them.
        self.internal_grpc = (
            GrpcServer(
                interceptor=interceptor,
                service_names=internal_service_names,
                max_message_bytes=settings.grpc_max_message_bytes,
            )
            if internal_service_names
            else None
        )
        self.internal_port = 0
        self._jobs: list[tuple[str, Job]] = []
        self._consumers: list[ConsumerRef] = []
        self._connections: _Connections | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self.port = 0

    @property
    def engine(self) -> AsyncEngine:
        """The database engine (after `connect`)."""
        assert self._connections is not None, "connect() first"
        return self._connections.engine

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context (after `connect`)."""
        assert self._connections is not None, "connect() first"
        return self._connections.js

    @property
    def nats(self) -> NatsClient:
        """The NATS connection (after `connect`)."""
        assert self._connections is not None, "connect() first"
        return self._connections.nats

    async def connect(self) -> None:
        """Open the database pool and NATS, ensure streams and the key bucket."""
        settings = self.settings
        settings.require_infrastructure()
        redactor.register(settings.database_url.get_secret_value(), settings.nats_url.get_secret_value())
        engine = create_engine(
            settings.database_url.get_secret_value(),
            pool_size=settings.db_pool_size,
            application_name=self.name,
        )
        nc = await connect(settings.nats_url.get_secret_value(), name=self.name)
        js = nc.jetstream(timeout=5.0)
        await ensure_streams(js, replicas=settings.nats_stream_replicas)
        api_keys = await ensure_api_key_bucket(js, replicas=settings.nats_stream_replicas)
        bootstrap = settings.bootstrap_admin_key.get_secret_value() if settings.bootstrap_admin_key else None
        generated = await ensure_bootstrap_admin_key(api_keys, bootstrap)
        service_key = getattr(settings, "service_api_key", None)
        if service_key is not None and service_key.get_secret_value():
            redactor.register(service_key.get_secret_value())
            await ensure_service_key(api_keys, service_key.get_secret_value())
        if generated is not None:
            # Printed once, on the terminal — not logged: logs are shipped and kept.
            print(f"agentmgr bootstrap admin key (shown once): {generated}", file=sys.stdout, flush=True)
        self._connections = _Connections(engine=engine, nats=nc, js=js, api_keys=api_keys)
        self.add_job("api-key-watch", lambda: self.keys.run(api_keys))
        relay = OutboxRelay(
            engine=engine,
            table=self._outbox_table,
            js=js,
            outbox=self.outbox,
            poll_interval_s=settings.outbox_poll_interval_s,
            claim_after_s=settings.outbox_claim_after_s,
            activity=self.activity,
            service=self.name,
        )
        if settings.outbox_relay_enabled:
            self.add_job("outbox-relay", relay.run)
        # The backlog is worth watching without a relay too: another process relays it.
        refresher = MetricsRefresher(
            service=self.name,
            interval_s=settings.metrics_refresh_interval_s,
            backlog=relay.backlog,
            js=js,
            consumers=self._consumers,
        )
        self.add_job("metrics-refresh", refresher.run)
        self.add_job("readiness", self._watch_readiness)

    def add_job(self, name: str, job: Job) -> None:
        """Run `job` in the background from `start()` until `stop()`."""
        self._jobs.append((name, job))

    def watch_consumer(self, stream: str, consumer: str) -> None:
        """Report the lag of a durable JetStream consumer this service works from."""
        self._consumers.append(ConsumerRef(stream, consumer))

    def _servers(self) -> list[GrpcServer]:
        return [self.grpc] + ([self.internal_grpc] if self.internal_grpc is not None else [])

    async def start(self, address: str, internal_address: str | None = None) -> int:
        """Start background jobs and the gRPC server(s); returns the public port."""
        # Every task started from here (jobs, gRPC calls) inherits this: anyio (under httpx and
        # pydantic-ai) asks sniffio which event loop runs on every cancel scope, lock and socket
        # write, and sniffio finds asyncio by an import and a task lookup each time, about a
        # millisecond of CPU per model call in agent_svc. Declared, as `anyio.run` declares its own.
        sniffio.current_async_library_cvar.set("asyncio")
        self._runner = asyncio.create_task(self._run_jobs(), name=f"{self.name}-jobs")
        self.port = await self.grpc.start(address)
        if self.internal_grpc is not None:
            assert internal_address is not None, "this service has an internal port"
            self.internal_port = await self.internal_grpc.start(internal_address)
        if self.settings.metrics_port:
            start_http_server(self.settings.metrics_port, addr=self._bind_host(address))
        await asyncio.wait_for(self.keys.ready.wait(), timeout=30)
        for server in self._servers():
            await server.set_serving(True)
            await server.set_alive(True)
        tune_gc_for_serving()
        _log.info("service_started", port=self.port, internal_port=self.internal_port)
        return self.port

    @staticmethod
    def _bind_host(address: str) -> str:
        host = address.rsplit(":", 1)[0].strip("[]")
        return host or "0.0.0.0"

    async def _run_jobs(self) -> None:
        async with asyncio.TaskGroup() as group:
            for name, job in self._jobs:
                group.create_task(job(), name=name)

    async def _ready(self) -> bool:
        if self._connections is None or not self._connections.nats.is_connected:
            return False
        try:
            async with asyncio.timeout(2.0):
                async with self._connections.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception:  # any failure means "not ready"; the reason is logged by the caller
            return False
        return True

    async def _watch_readiness(self) -> None:
        """Flip health to NOT_SERVING while PostgreSQL or NATS is unreachable."""
        serving = True
        while True:
            await asyncio.sleep(1.0)
            ready = await self._ready()
            if ready != serving and not self._stopping:
                serving = ready
                for server in self._servers():
                    await server.set_serving(ready)
                _log.warning("readiness_changed", serving=ready)

    async def stop(self) -> None:
        """Graceful: NOT_SERVING, finish in-flight calls, stop jobs, close connections."""
        settings = self.settings
        self._stopping = True
        await asyncio.gather(
            *(
                server.stop(grace_s=settings.shutdown_grace_s, drain_delay_s=settings.shutdown_drain_delay_s)
                for server in self._servers()
            )
        )
        if self._runner is not None:
            # A job that died is logged; one stuck in its clean-up does not hold shutdown.
            await cancel_and_wait([self._runner], timeout_s=5.0)
        if self._connections is not None:
            # close, not drain: everything worth keeping is in the outbox or unacked
            # (redelivered), and nats-py's drain races its own subscription tasks.
            await close_nats(self._connections.nats)
            await self._connections.engine.dispose()
        _log.info("service_stopped")

    async def wait_for_shutdown(self) -> None:
        """Return on SIGTERM/SIGINT, or when a background job died (then stop() and exit)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        assert self._runner is not None, "start() first"
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({stopper, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        if not stopper.done():
            _log.error("background_job_died")
        stopper.cancel()
