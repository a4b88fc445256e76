"""Typed wrappers around the backends' gRPC stubs.

Every call carries the caller's API key (the services authenticate it themselves),
the request id, and a deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentmgr.v1 import agent_pb2_grpc, provider_pb2_grpc, run_pb2_grpc, task_pb2_grpc

__all__ = ["Backends", "CallContext"]

_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.max_send_message_length", 8 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
]


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who is calling and how long they may take."""

    api_key: str
    request_id: str
    timeout_s: float

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """GRPC metadata for the call."""
        return (("authorization", f"Bearer {self.api_key}"), ("x-request-id", self.request_id))


class Backends:
    """Channels and stubs to provider_svc and agent_svc."""

    def __init__(
        self,
        *,
        provider_address: str,
        agent_address: str,
        interceptors: Sequence[grpc.aio.ClientInterceptor] | None = None,
    ) -> None:
        self._provider_channel = grpc.aio.insecure_channel(
            provider_address, options=_OPTIONS, interceptors=interceptors
        )
        self._agent_channel = grpc.aio.insecure_channel(
            agent_address, options=_OPTIONS, interceptors=interceptors
        )
        self.providers = provider_pb2_grpc.ProviderServiceStub(self._provider_channel)
        self.agents = agent_pb2_grpc.AgentServiceStub(self._agent_channel)
        self.tasks = task_pb2_grpc.TaskServiceStub(self._agent_channel)
        self.runs = run_pb2_grpc.RunServiceStub(self._agent_channel)
        self._health = [
            health_pb2_grpc.HealthStub(self._provider_channel),
            health_pb2_grpc.HealthStub(self._agent_channel),
        ]

    async def ready(self, timeout_s: float = 1.0) -> dict[str, bool]:
        """Whether each backend reports SERVING."""
        result = {}
        for name, stub in zip(("provider_svc", "agent_svc"), self._health, strict=True):
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout_s)
                result[name] = reply.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.aio.AioRpcError:
                result[name] = False
        return result

    async def close(self) -> None:
        """Close the channels."""
        await self._provider_channel.close(None)
        await self._agent_channel.close(None)
