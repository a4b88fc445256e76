"""provider_svc's composition root: builds every part and wires them together."""

from __future__ import annotations

import grpc

from agentmgr.v1 import (
    credential_pb2,
    credential_pb2_grpc,
    provider_pb2,
    provider_pb2_grpc,
)
from libs.common.messaging import JOBS_STREAM
from libs.common.runtime import ServiceRuntime
from libs.common.ssrf import EgressPolicy, guarded_client
from libs.common.telemetry import grpc_client_interceptors
from services.provider_svc.agent_usage import AgentUsageClient
from services.provider_svc.repository import ProviderRepository, outbox
from services.provider_svc.service import ProviderService
from services.provider_svc.servicer import (
    ACCESS,
    CredentialServicer,
    ProviderServicer,
    provider_json,
)
from services.provider_svc.settings import ProviderSettings
from services.provider_svc.validation import (
    VALIDATION_CONSUMER,
    ProviderProbe,
    RecheckScheduler,
    RetryPolicy,
    ValidationWorker,
)

__all__ = ["ProviderServer"]


class ProviderServer:
    """The provider service process: gRPC API, validation worker, re-check scheduler."""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self.runtime = ServiceRuntime(
            name="provider_svc",
            settings=settings,
            outbox_table=outbox,
            access=ACCESS,
            service_names=[provider_pb2.DESCRIPTOR.services_by_name["ProviderService"].full_name],
            internal_service_names=[
                credential_pb2.DESCRIPTOR.services_by_name["CredentialService"].full_name
            ],
        )
        self.egress = EgressPolicy.from_settings(
            allow_loopback=settings.ssrf_allow_loopback,
            allow_private=settings.ssrf_allow_private,
            allowed_networks=settings.allowed_networks(),
        )
        self.repository = ProviderRepository()
        self.keyring = settings.keyring()
        self.service: ProviderService | None = None
        self._channels: list[grpc.aio.Channel] = []

    async def start(self, address: str | None = None, internal_address: str | None = None) -> int:
        """Connect, start serving; returns the public gRPC port."""
        runtime, settings = self.runtime, self.settings
        await runtime.connect()
        service = ProviderService(
            engine=runtime.engine,
            repository=self.repository,
            outbox=runtime.outbox,
            keyring=self.keyring,
            egress=self.egress,
            encode=provider_json,
            validation_min_interval_s=settings.validation_min_interval_s,
            agent_usage=self._agent_usage(),
        )
        self.service = service
        provider_pb2_grpc.add_ProviderServiceServicer_to_server(
            ProviderServicer(service), runtime.grpc.server
        )
        assert runtime.internal_grpc is not None
        credential_pb2_grpc.add_CredentialServiceServicer_to_server(
            CredentialServicer(service), runtime.internal_grpc.server
        )
        if settings.validation_worker_enabled:
            client = guarded_client(self.egress, timeout_s=settings.validation_timeout_s)
            worker = ValidationWorker(
                engine=runtime.engine,
                repository=self.repository,
                outbox=runtime.outbox,
                keyring=self.keyring,
                probe=ProviderProbe(client, timeout_s=settings.validation_timeout_s),
                js=runtime.js,
                encode=provider_json,
                retry=RetryPolicy(
                    max_attempts=settings.validation_max_attempts,
                    backoff_s=settings.validation_backoff_s,
                    recheck_interval_s=settings.validation_recheck_interval_s,
                ),
                concurrency=settings.validation_concurrency,
                ack_wait_s=settings.validation_timeout_s * 2 + 10,
            )
            scheduler = RecheckScheduler(
                engine=runtime.engine,
                repository=self.repository,
                outbox=runtime.outbox,
                interval_s=settings.validation_scan_interval_s,
            )
            runtime.add_job("validation-worker", worker.run)
            runtime.watch_consumer(JOBS_STREAM, VALIDATION_CONSUMER)
            runtime.add_job("recheck-scheduler", scheduler.run)
        host = settings.grpc_bind_host
        return await runtime.start(
            address or f"{host}:{settings.provider_grpc_port}",
            internal_address or f"{host}:{settings.provider_internal_grpc_port}",
        )

    def _agent_usage(self) -> AgentUsageClient | None:
        if not self.settings.agent_svc_address:
            return None
        channel = grpc.aio.insecure_channel(
            self.settings.agent_svc_address, interceptors=grpc_client_interceptors()
        )
        self._channels.append(channel)
        return AgentUsageClient(channel=channel, service_key=self.settings.service_api_key.get_secret_value())

    async def stop(self) -> None:
        """Graceful stop."""
        await self.runtime.stop()
        for channel in self._channels:
            await channel.close(None)
