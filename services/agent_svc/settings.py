"""agent_svc settings (environment variables, validated at start)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from libs.common.settings import CommonSettings, EgressSettings, SettingsError, check_not_placeholder

__all__ = ["AgentSettings"]


class AgentSettings(CommonSettings, EgressSettings):
    """Everything agent_svc reads from its environment."""

    agent_grpc_port: int = Field(default=50052, ge=0, le=65535)
    """AGENT_GRPC_PORT: where the gRPC API listens (0: any free port)."""
    grpc_bind_host: str = "0.0.0.0"
    """GRPC_BIND_HOST: the address to bind (`127.0.0.1` under `make run`)."""
    provider_svc_address: str = "127.0.0.1:50051"
    """PROVIDER_SVC_ADDRESS: provider_svc's public gRPC address (checks that providers exist)."""
    provider_internal_address: str = "127.0.0.1:50061"
    """PROVIDER_INTERNAL_ADDRESS: provider_svc's CredentialService address."""
    service_api_key: SecretStr = Field(default=SecretStr(""))
    """SERVICE_API_KEY: a `service`-role key for agent_svc's calls to provider_svc."""
    registry_capacity: int = Field(default=1000, ge=1)
    """REGISTRY_CAPACITY: built agents kept (LRU); entries in use stay alive regardless."""
    credential_ttl_s: float = Field(default=300.0, gt=0)
    """CREDENTIAL_TTL_S: a cached credential is re-read at least this often (events evict sooner)."""
    run_workers: int = Field(default=16, ge=1, le=1024)
    """RUN_WORKERS: background runs (StartRun) one process executes at once."""
    run_job_ack_wait_s: float = Field(default=60.0, ge=1)
    """RUN_JOB_ACK_WAIT_S: a started run held by a replica that died is handed to another after this."""
    run_stale_after_s: float = Field(default=900.0, gt=0)
    """RUN_STALE_AFTER_S: a run `running` this long is failed as interrupted.

    Keep it above the longest agent timeout_s (600 s) and above RUN_JOB_ACK_WAIT_S, so that
    a live run is never reaped and a started run is redelivered before it would be.
    """
    run_reaper_interval_s: float = Field(default=60.0, gt=0)
    """RUN_REAPER_INTERVAL_S: how often a replica looks for runs interrupted by another's death."""
    http_timeout_s: float = Field(default=600.0, gt=0)
    """HTTP_TIMEOUT_S: transport timeout of model calls.

    Each run is also bounded by its agent's timeout_s.
    """

    @field_validator("service_api_key")
    @classmethod
    def _service_key_is_real(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if secret:
            check_not_placeholder(secret)
            if len(secret) < 24:
                raise ValueError("must be at least 24 characters")
        return value

    def require_service_key(self) -> None:
        """Serving needs SERVICE_API_KEY (migrating does not)."""
        if not self.service_api_key.get_secret_value():
            raise SettingsError(
                "SERVICE_API_KEY: required (a service-role key: `agentmgr keys create --role service`)"
            )
