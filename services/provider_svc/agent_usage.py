"""Asks agent_svc whether agents use a provider (before a delete, DESIGN §2)."""

from __future__ import annotations

import grpc

from agentmgr.v1 import agent_pb2, agent_pb2_grpc
from libs.common.errors import Unavailable

__all__ = ["AgentUsageClient"]


class AgentUsageClient:
    """`ListAgents(provider_id=…)` with provider_svc's service key."""

    def __init__(self, *, channel: grpc.aio.Channel, service_key: str) -> None:
        self._agents = agent_pb2_grpc.AgentServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {service_key}"),)

    async def agents_using(self, provider_id: str) -> int:
        """How many live agents use the provider (counted up to one page)."""
        try:
            reply = await self._agents.ListAgents(
                agent_pb2.ListAgentsRequest(provider_id=provider_id, page_size=100),
                metadata=self._metadata,
                timeout=5.0,
            )
        except grpc.aio.AioRpcError as exc:
            # Refusing is the safe answer: deleting could strand agents. `force` overrides.
            raise Unavailable(
                "cannot ask agent_svc whether agents use this provider; retry, or delete with force"
            ) from exc
        return len(reply.agents)
