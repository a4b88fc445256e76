"""The gateway's composition root: NATS, the key mirror, the event hub, the HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Iterator

import uvicorn
from nats.aio.client import Client as NatsClient

from libs.common.auth import KeyStore, ensure_bootstrap_admin_key
from libs.common.gctune import tune_gc_for_serving
from libs.common.logging import get_logger, redactor
from libs.common.messaging import close as close_nats
from libs.common.messaging import connect, ensure_api_key_bucket, ensure_streams
from libs.common.tasks import cancel_and_wait
from libs.common.telemetry import grpc_client_interceptors, tracing_enabled
from services.gateway.app import GatewayApp, create_app
from services.gateway.clients import Backends
from services.gateway.coalesce import CoalescingHttpProtocol
from services.gateway.hub import EventHub
from services.gateway.settings import GatewaySettings
from services.gateway.ws_protocol import FanoutWebSocketProtocol

__all__ = ["GatewayServer"]

_log = get_logger(__name__)
_JOB_STOP_S = 5.0
"""How long shutdown waits for a cancelled background job, or for the gRPC channels to close."""


class GatewayServer:
    """REST + real time over HTTP; no business logic (that is in the services)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.keys = KeyStore()
        self.port = 0
        self.app: GatewayApp | None = None
        self.hub: EventHub | None = None
        self._nats: NatsClient | None = None
        self._backends: Backends | None = None
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._jobs: list[asyncio.Task[None]] = []

    async def start(self, host: str | None = None, port: int | None = None) -> int:
        """Connect and serve; returns the bound HTTP port."""
        settings = self.settings
        settings.require_nats()
        redactor.register(settings.nats_url.get_secret_value())
        nc = await connect(settings.nats_url.get_secret_value(), name="gateway")
        self._nats = nc
        js = nc.jetstream(timeout=5.0)
        await ensure_streams(js, replicas=settings.nats_stream_replicas)
        bucket = await ensure_api_key_bucket(js, replicas=settings.nats_stream_replicas)
        bootstrap = settings.bootstrap_admin_key.get_secret_value() if settings.bootstrap_admin_key else None
        generated = await ensure_bootstrap_admin_key(bucket, bootstrap)
        if generated is not None:
            print(f"agentmgr bootstrap admin key (shown once): {generated}", file=sys.stdout, flush=True)
        hub = EventHub(js=js, keys=self.keys, unfollow_after_s=settings.ws_unfollow_after_s)
        self.hub = hub
        self._jobs = [
            asyncio.create_task(self.keys.run(bucket), name="api-key-watch"),
            asyncio.create_task(hub.run(), name="event-hub"),
            asyncio.create_task(hub.watch_lag(settings.metrics_refresh_interval_s), name="event-hub-lag"),
        ]
        self._backends = Backends(
            provider_address=settings.provider_svc_address,
            agent_address=settings.agent_svc_address,
            interceptors=grpc_client_interceptors(),
        )
        self.app = create_app(
            settings=settings,
            backends=self._backends,
            keys=self.keys,
            hub=hub,
            nats_connected=lambda: nc.is_connected,
            tracing=tracing_enabled(),
        )
        await asyncio.wait_for(self.keys.ready.wait(), timeout=30)
        sock = socket.socket(socket.AF_INET6 if ":" in (host or settings.http_bind_host) else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host or settings.http_bind_host, settings.http_port if port is None else port))
        self.port = int(sock.getsockname()[1])
        config = uvicorn.Config(
            self.app.asgi,
            http=CoalescingHttpProtocol,  # a response's headers and body in one send
            ws=FanoutWebSocketProtocol,  # an event's frame prepared once, written to each client
            lifespan="off",
            log_config=None,
            access_log=False,
            ws_max_size=settings.ws_max_frame_bytes,
            ws_per_message_deflate=settings.ws_compression,
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            timeout_graceful_shutdown=int(settings.shutdown_grace_s),
            server_header=False,
        )
        self._server = _UvicornServer(config)
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._serving.done():
                self._serving.result()
            await asyncio.sleep(0.01)
        tune_gc_for_serving()
        _log.info("gateway_started", port=self.port)
        return self.port

    async def stop(self) -> None:
        """Not ready first, then finish in-flight requests, then close everything."""
        if self.app is not None:
            self.app.api.state.draining = True
            if self.settings.shutdown_drain_delay_s:
                await asyncio.sleep(self.settings.shutdown_drain_delay_s)
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await self._serving
        await cancel_and_wait(self._jobs, timeout_s=_JOB_STOP_S)
        if self._backends is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_JOB_STOP_S):
                    await self._backends.close()
        if self._nats is not None:
            await close_nats(self._nats)
        _log.info("gateway_stopped")

    async def wait_for_shutdown(self) -> None:
        """Return on SIGTERM/SIGINT or when the HTTP server dies."""
        import signal

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        assert self._serving is not None
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, self._serving, *self._jobs}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()


class _UvicornServer(uvicorn.Server):
    """uvicorn's server, leaving SIGTERM and SIGINT to the gateway (`wait_for_shutdown`).

    uvicorn installs its own handlers while it serves and puts back the ones it found
    when it stops: the default, which kills the process. A second SIGTERM during the
    gateway's close (its jobs, channels and NATS, after uvicorn has stopped) then ended
    the process with -15 instead of a clean exit. With the gateway's handlers in place
    throughout, a repeated signal only asks again for the stop already under way.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
