"""provider_svc settings (environment variables, validated at start)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator, model_validator

from libs.common.crypto import Keyring
from libs.common.settings import CommonSettings, EgressSettings

__all__ = ["ProviderSettings"]


class ProviderSettings(CommonSettings, EgressSettings):
    """Everything provider_svc reads from its environment."""

    provider_grpc_port: int = Field(default=50051, ge=0, le=65535)
    """PROVIDER_GRPC_PORT: where the gRPC API listens (0: any free port)."""
    provider_internal_grpc_port: int = Field(default=50061, ge=0, le=65535)
    """PROVIDER_INTERNAL_GRPC_PORT: CredentialService only (reachable by agent_svc alone)."""
    grpc_bind_host: str = "0.0.0.0"
    """GRPC_BIND_HOST: the address to bind (`127.0.0.1` under `make run`)."""
    agent_svc_address: str = ""
    """AGENT_SVC_ADDRESS: agent_svc's gRPC address; deletes check it for agents using the provider."""
    service_api_key: SecretStr = Field(default=SecretStr(""))
    """SERVICE_API_KEY: a `service`-role key for provider_svc's calls to agent_svc."""
    encryption_keys: SecretStr = Field(default=SecretStr(""))
    """ENCRYPTION_KEYS: Fernet keys, comma separated; the first encrypts, all decrypt."""
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

    @model_validator(mode="after")
    def _agent_check_needs_a_key(self) -> ProviderSettings:
        if self.agent_svc_address and len(self.service_api_key.get_secret_value()) < 24:
            raise ValueError(
                "SERVICE_API_KEY is required (at least 24 characters) when AGENT_SVC_ADDRESS is set"
            )
        return self

    def keyring(self) -> Keyring:
        """The keyring built from ENCRYPTION_KEYS."""
        return Keyring.from_setting(self.encryption_keys.get_secret_value())
