"""Settings read from the environment, validated at start.

Every service builds its settings with `load_settings(...)`; a bad value stops the
process with a message that names the variable and never echoes its value (the value
may be a secret).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "CommonSettings",
    "EgressSettings",
    "SettingsError",
    "check_not_placeholder",
    "load_settings",
]

_PLACEHOLDERS = re.compile(
    r"^(?:|change[-_ ]?me.*|replace[-_ ]?me.*|your[-_ ].*|<.*>|\$\{.*\}|x+|todo|tbd|"
    r"secret|password|placeholder|example.*|dummy|test|default|none|null|\*+)$",
    re.IGNORECASE,
)


def check_not_placeholder(value: str) -> str:
    """Refuse values that are obviously a placeholder (`changeme`, `<your key>`, …)."""
    if _PLACEHOLDERS.match(value.strip()):
        raise ValueError("is a placeholder; set a real secret")
    return value


class SettingsError(Exception):
    """The environment is not a valid configuration; the message names variables only."""


class CommonSettings(BaseSettings):
    """Settings shared by every agentmgr process (DESIGN §7)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", frozen=True)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """LOG_LEVEL: the least severe level logged."""
    log_format: Literal["json", "console"] = "json"
    """LOG_FORMAT: `json` (one object per line) or `console` (for humans)."""
    database_url: SecretStr = Field(default=SecretStr(""))
    """DATABASE_URL: `postgresql+asyncpg://user:password@host:port/db` (secret: holds a password)."""
    nats_url: SecretStr = Field(default=SecretStr(""))
    """NATS_URL: `nats://host:4222` (may carry credentials, hence secret)."""
    nats_stream_replicas: int = Field(default=1, ge=1, le=5)
    """NATS_STREAM_REPLICAS: JetStream replicas of agentmgr's streams (3 in production)."""
    bootstrap_admin_key: SecretStr | None = None
    """BOOTSTRAP_ADMIN_KEY: an admin API key to register on first start."""
    grpc_max_message_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024)
    """GRPC_MAX_MESSAGE_BYTES: largest gRPC message accepted or sent."""
    grpc_default_timeout_s: float = Field(default=30.0, gt=0)
    """GRPC_DEFAULT_TIMEOUT_S: deadline applied to calls that arrive without one."""
    shutdown_grace_s: float = Field(default=20.0, ge=0)
    """SHUTDOWN_GRACE_S: how long in-flight calls may finish after SIGTERM."""
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    """METRICS_PORT: Prometheus `/metrics` over HTTP (0 disables; gRPC services only)."""
    metrics_refresh_interval_s: float = Field(default=5.0, gt=0)
    """METRICS_REFRESH_INTERVAL_S: how often the outbox backlog and consumer lag are sampled."""
    shutdown_drain_delay_s: float = Field(default=0.5, ge=0)
    """SHUTDOWN_DRAIN_DELAY_S: NOT_SERVING is reported this long before new calls are refused."""
    rate_limit_rps: float = Field(default=200.0, ge=0)
    """RATE_LIMIT_RPS: requests per second per API key and replica (0 disables)."""
    rate_limit_burst: int = Field(default=400, ge=1)
    """RATE_LIMIT_BURST: requests a key may make at once before the rate applies."""
    db_pool_size: int = Field(default=10, ge=1, le=200)
    """DB_POOL_SIZE: PostgreSQL connections per process."""
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    """OUTBOX_POLL_INTERVAL_S: how often the relay looks for events it was not told about."""
    outbox_claim_after_s: float = Field(default=2.0, ge=0)
    """OUTBOX_CLAIM_AFTER_S: age after which the sweep publishes rows another process left."""
    outbox_relay_enabled: bool = True
    """OUTBOX_RELAY_ENABLED: run the outbox relay in this process."""

    @field_validator("bootstrap_admin_key")
    @classmethod
    def _bootstrap_key_is_real(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        secret = check_not_placeholder(value.get_secret_value())
        if len(secret) < 24:
            raise ValueError("must be at least 24 characters")
        return value

    def require_infrastructure(self) -> None:
        """Fail unless DATABASE_URL and NATS_URL are set (services need both)."""
        missing = [
            name
            for name, value in (("DATABASE_URL", self.database_url), ("NATS_URL", self.nats_url))
            if not value.get_secret_value()
        ]
        if missing:
            raise SettingsError(f"{', '.join(missing)}: required")
        if not self.database_url.get_secret_value().startswith("postgresql"):
            raise SettingsError("DATABASE_URL: must be a postgresql:// or postgresql+asyncpg:// URL")
        if not self.nats_url.get_secret_value().startswith(("nats://", "tls://", "ws://", "wss://")):
            raise SettingsError("NATS_URL: must be a nats:// or tls:// URL")


class EgressSettings(BaseSettings):
    """Where outbound calls to LLM providers may go (the SSRF guard, DESIGN §5)."""

    ssrf_allow_loopback: bool = False
    """SSRF_ALLOW_LOOPBACK: let base URLs reach 127.0.0.0/8 and ::1 (local Ollama, stubs)."""
    ssrf_allow_private: bool = False
    """SSRF_ALLOW_PRIVATE: let base URLs reach private ranges (providers inside your network)."""
    ssrf_allowed_networks: str = ""
    """SSRF_ALLOWED_NETWORKS: comma-separated CIDRs always allowed (checked first)."""

    @field_validator("ssrf_allowed_networks")
    @classmethod
    def _networks_are_cidrs(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"'{part}' is not a CIDR network") from None
        return value

    def allowed_networks(self) -> list[str]:
        """SSRF_ALLOWED_NETWORKS as a list."""
        return [p.strip() for p in self.ssrf_allowed_networks.split(",") if p.strip()]


_S = TypeVar("_S", bound=BaseSettings)


def load_settings(cls: type[_S]) -> _S:
    """Build `cls` from the environment, naming bad variables only."""
    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            variable = ".".join(str(part) for part in error["loc"]).upper() or "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{variable}: {message}")
        raise SettingsError("; ".join(problems)) from None
