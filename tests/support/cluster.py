"""Every service scaled out on one machine: N replicas each, separate processes.

All replicas share one PostgreSQL and one NATS. Each replica reaches the replicas of
the services it calls through one gRPC target listing all of them, its "own" one first
(`ipv4:127.0.0.1:a,127.0.0.1:b`): gRPC's default pick_first policy sticks to the first
address that answers and fails over, in order, when it dies — what a Kubernetes
Service does for the real deployment. So, while everything runs, replica i of the
gateway talks to replica i of each service (the load is spread by choosing gateways),
and after a replica is killed its callers carry on with the survivors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from libs.common.embedded import free_port
from tests.support.processes import ServiceProcess

__all__ = ["Cluster", "Infrastructure", "Replica", "grpc_target", "scrape"]


@dataclass(frozen=True, slots=True)
class Infrastructure:
    """What every replica shares."""

    database_url: str
    nats_url: str
    encryption_keys: str
    service_key: str
    """A `service`-role API key (agent_svc → provider_svc, provider_svc → agent_svc)."""


@dataclass
class Replica:
    """One process of a service."""

    service: str
    """`provider_svc`, `agent_svc` or `gateway`."""
    index: int
    process: ServiceProcess
    port: int
    """gRPC port (HTTP port for the gateway)."""
    metrics_port: int = 0
    """Prometheus `/metrics` (gRPC services; the gateway serves it on `port`)."""
    internal_port: int = 0
    """provider_svc's CredentialService port."""

    @property
    def name(self) -> str:
        return f"{self.service}-{self.index}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        port = self.port if self.service == "gateway" else self.metrics_port
        return f"http://127.0.0.1:{port}/metrics"

    @property
    def alive(self) -> bool:
        return self.process.alive

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no drain, no final relay."""
        self.process.kill()


def grpc_target(ports: Sequence[int], *, first: int) -> str:
    """A gRPC target over every replica, replica `first` preferred (then the others in order)."""
    ordered = [ports[first], *(port for i, port in enumerate(ports) if i != first)]
    return "ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ordered)


async def scrape(http: httpx.AsyncClient, url: str) -> dict[str, float]:
    """A `/metrics` page as `{"name{label=value,...}": value}` (labels sorted)."""
    response = await http.get(url)
    response.raise_for_status()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


@dataclass
class Cluster:
    """`replicas` processes each of provider_svc, agent_svc and the gateway."""

    infra: Infrastructure
    log_dir: Path
    replicas: int = 2
    env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Extra variables per service name (e.g. `{"agent_svc": {"RUN_WORKERS": "4"}}`)."""
    providers: list[Replica] = field(default_factory=list)
    agents: list[Replica] = field(default_factory=list)
    gateways: list[Replica] = field(default_factory=list)

    @property
    def all(self) -> list[Replica]:
        return [*self.providers, *self.agents, *self.gateways]

    def _common(self, service: str) -> dict[str, str]:
        return {
            "NATS_URL": self.infra.nats_url,
            "RATE_LIMIT_RPS": "0",
            "LOG_LEVEL": "INFO",
            "SHUTDOWN_GRACE_S": "5",
            "SHUTDOWN_DRAIN_DELAY_S": "0",
            **self.env.get(service, {}),
        }

    def _replica(self, service: str, index: int, port: int, env: dict[str, str], **ports: int) -> Replica:
        process = ServiceProcess(service, env=env, port=port, log=self.log_dir / f"{service}-{index}.log")
        return Replica(service=service, index=index, process=process, port=port, **ports)

    async def start(self) -> None:
        """Start every replica at once and wait until all serve (gateways: ready)."""
        n = self.replicas
        provider_ports = [free_port() for _ in range(n)]
        internal_ports = [free_port() for _ in range(n)]
        agent_ports = [free_port() for _ in range(n)]
        gateway_ports = [free_port() for _ in range(n)]
        infra = self.infra
        for i in range(n):
            metrics = free_port()
            env = {
                **self._common("provider_svc"),
                "DATABASE_URL": infra.database_url,
                "ENCRYPTION_KEYS": infra.encryption_keys,
                "SERVICE_API_KEY": infra.service_key,
                "GRPC_BIND_HOST": "127.0.0.1",
                "PROVIDER_GRPC_PORT": str(provider_ports[i]),
                "PROVIDER_INTERNAL_GRPC_PORT": str(internal_ports[i]),
                "METRICS_PORT": str(metrics),
                "AGENT_SVC_ADDRESS": grpc_target(agent_ports, first=i),
                "SSRF_ALLOW_LOOPBACK": "true",
            }
            self.providers.append(
                self._replica(
                    "provider_svc",
                    i,
                    provider_ports[i],
                    env,
                    metrics_port=metrics,
                    internal_port=internal_ports[i],
                )
            )
        for i in range(n):
            metrics = free_port()
            env = {
                **self._common("agent_svc"),
                "DATABASE_URL": infra.database_url,
                "SERVICE_API_KEY": infra.service_key,
                "GRPC_BIND_HOST": "127.0.0.1",
                "AGENT_GRPC_PORT": str(agent_ports[i]),
                "METRICS_PORT": str(metrics),
                "PROVIDER_SVC_ADDRESS": grpc_target(provider_ports, first=i),
                "PROVIDER_INTERNAL_ADDRESS": grpc_target(internal_ports, first=i),
                "SSRF_ALLOW_LOOPBACK": "true",
            }
            self.agents.append(self._replica("agent_svc", i, agent_ports[i], env, metrics_port=metrics))
        for i in range(n):
            env = {
                **self._common("gateway"),
                "HTTP_BIND_HOST": "127.0.0.1",
                "HTTP_PORT": str(gateway_ports[i]),
                "PROVIDER_SVC_ADDRESS": grpc_target(provider_ports, first=i),
                "AGENT_SVC_ADDRESS": grpc_target(agent_ports, first=i),
            }
            self.gateways.append(self._replica("gateway", i, gateway_ports[i], env))
        for replica in self.all:
            replica.process.start()
        try:
            await asyncio.gather(
                *(r.process.wait_serving(timeout=60) for r in [*self.providers, *self.agents]),
                *(r.process.wait_http_ready(timeout=60) for r in self.gateways),
            )
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """SIGTERM every replica still alive; SIGKILL what does not exit in time."""

        async def stop_one(replica: Replica) -> None:
            try:
                await replica.process.stop(timeout=15)
            except Exception:  # hung or already gone: make sure it is gone
                replica.kill()

        await asyncio.gather(*(stop_one(r) for r in self.all))

    def logs(self) -> str:
        """The tail of every replica's log (for failure messages)."""
        return "\n".join(f"--- {r.name}\n{r.process.log_text()[-3000:]}" for r in self.all)
