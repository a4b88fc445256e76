"""Gateway settings (environment variables, validated at start)."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import CommonSettings, SettingsError

__all__ = ["GatewaySettings"]


class GatewaySettings(CommonSettings):
    """Everything the gateway reads from its environment (it has no database)."""

    http_port: int = Field(default=8080, ge=0, le=65535)
    """HTTP_PORT: REST, WebSocket, Socket.IO, the console, /healthz, /readyz, /metrics."""
    http_bind_host: str = "0.0.0.0"
    """HTTP_BIND_HOST: the address to bind (`127.0.0.1` under `make run`)."""
    provider_svc_address: str = "127.0.0.1:50051"
    """PROVIDER_SVC_ADDRESS: provider_svc's public gRPC address."""
    agent_svc_address: str = "127.0.0.1:50052"
    """AGENT_SVC_ADDRESS: agent_svc's gRPC address."""
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """MAX_BODY_BYTES: largest request body (413 beyond)."""
    request_timeout_s: float = Field(default=30.0, gt=0)
    """REQUEST_TIMEOUT_S: deadline of a backend call (runs that wait get their agent's timeout)."""
    run_timeout_s: float = Field(default=660.0, gt=0)
    """RUN_TIMEOUT_S: deadline of `POST /v1/runs` that waits for the answer."""
    ws_rate_per_topic: float = Field(default=10.0, gt=0)
    """WS_RATE_PER_TOPIC: messages per second per client and topic (coalesced per resource)."""
    ws_max_pending: int = Field(default=1000, ge=10)
    """WS_MAX_PENDING: resources waiting for one client and topic before it counts as too slow."""
    ws_send_timeout_s: float = Field(default=5.0, gt=0)
    """WS_SEND_TIMEOUT_S: a client that takes longer to accept one message is disconnected."""
    ws_unfollow_after_s: float = Field(default=60.0, ge=0)
    """WS_UNFOLLOW_AFTER_S: a replica stops following the event stream this long after its
    last real-time client left (it follows again at the next subscription)."""
    ws_max_frame_bytes: int = Field(default=64 * 1024, ge=1024)
    """WS_MAX_FRAME_BYTES: largest frame a client may send."""
    ws_compression: bool = False
    """WS_COMPRESSION: offer permessage-deflate on `/v1/ws`.

    Off by default: events are small, and compressing each one for each client costs
    more CPU (and a zlib context per connection) than the bytes it saves on a LAN.
    """
    cors_origins: str = ""
    """CORS_ORIGINS: comma-separated origins allowed to call the API from a browser."""

    def require_nats(self) -> None:
        """The gateway needs NATS (events, API keys) but no database."""
        url = self.nats_url.get_secret_value()
        if not url:
            raise SettingsError("NATS_URL: required")
        if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise SettingsError("NATS_URL: must be a nats:// or tls:// URL")

    def origins(self) -> list[str]:
        """CORS_ORIGINS as a list."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
