"""provider_svc settings (environment variables, validated at start)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, SecretStr, field_validator

from libs.common.crypto import Keyring
from libs.common.settings import CommonSettings

__all__ = ["ProviderSettings"]


class ProviderSettings(CommonSettings):
    """Everything provider_svc reads from its environment."""

    provider_grpc_port: int = Field(default=50051, ge=0, le=65535)
    """PROVIDER_GRPC_PORT: where the gRPC API listens (0: any free port)."""
    provider_internal_grpc_port: int = Field(default=50061, ge=0, le=65535)
    """PROVIDER_INTERNAL_GRPC_PORT: CredentialService only (reachable by agent_svc alone)."""
    grpc_bind_host: str = "0.0.0.0"
    """GRPC_BIND_HOST: the address to bind (`127.0.0.1` under `make run`)."""
    encryption_keys: SecretStr = Field(default=SecretStr(""))
    """ENCRYPTION_KEYS: Fernet keys, comma separated; the first encrypts, all decrypt."""
    ssrf_allow_loopback: bool = False
    """SSRF_ALLOW_LOOPBACK: let base URLs reach 127.0.0.0/8 and ::1 (local Ollama, stubs)."""
    ssrf_allow_private: bool = False
    """SSRF_ALLOW_PRIVATE: let base URLs reach private ranges (providers inside your network)."""
    ssrf_allowed_networks: str = ""
    """SSRF_ALLOWED_NETWORKS: comma-separated CIDRs always allowed (checked first)."""
    validation_timeout_s: float = Field(default=10.0, gt=0, le=120)
    """VALIDATION_TIMEOUT_S: time limit of one validation call."""
    validation_max_attempts: int = Field(default=4, ge=1, le=20)
    """VALIDATION_MAX_ATTEMPTS: attempts for transient failures (timeouts, 429, 5xx, refused)."""
    validation_backoff_s: float = Field(default=2.0, gt=0)
    """VALIDATION_BACKOFF_S: first retry delay; each retry waits four times longer (with jitter)."""
    validation_recheck_interval_s: float = Field(default=6 * 3600.0, ge=0)
    """VALIDATION_RECHECK_INTERVAL_S: re-check providers this long after a check (0: never)."""
    validation_min_interval_s: float = Field(default=10.0, ge=0)
    """VALIDATION_MIN_INTERVAL_S: at most one requested validation per provider this often."""
    validation_concurrency: int = Field(default=8, ge=1, le=256)
    """VALIDATION_CONCURRENCY: validations one worker runs at once."""
    validation_scan_interval_s: float = Field(default=30.0, gt=0)
    """VALIDATION_SCAN_INTERVAL_S: how often the scheduler looks for due re-checks."""
    validation_worker_enabled: bool = True
    """VALIDATION_WORKER_ENABLED: run the validation worker and scheduler in this process."""

    @field_validator("encryption_keys")
    @classmethod
    def _keys_are_valid(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("required (generate a key with `agentmgr gen-key`)")
        Keyring.from_setting(value.get_secret_value())
        return value

    @field_validator("ssrf_allowed_networks")
    @classmethod
    def _networks_are_cidrs(cls, value: str) -> str:
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(f"'{part}' is not a CIDR network") from None
        return value

    def keyring(self) -> Keyring:
        """The keyring built from ENCRYPTION_KEYS."""
        return Keyring.from_setting(self.encryption_keys.get_secret_value())

    def allowed_networks(self) -> list[str]:
        """SSRF_ALLOWED_NETWORKS as a list."""
        return [p.strip() for p in self.ssrf_allowed_networks.split(",") if p.strip()]
