"""What the observability tests need: the three services as processes, a Prometheus
scrape, and a local OTLP/HTTP trace receiver.

Processes, not in-process servers: metrics registries and the OpenTelemetry tracer
provider are process-wide, so only separate processes show what each service reports.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from libs.common.embedded import free_port
from tests.support.eventually import eventually
from tests.support.processes import ServiceProcess

__all__ = ["ExportedSpan", "Metrics", "OtlpReceiver", "System", "json_logs", "scrape"]


# --- Prometheus ------------------------------------------------------------------


@dataclass(frozen=True)
class Metrics:
    """One scrape: samples by name, each a list of (labels, value)."""

    samples: dict[str, list[tuple[dict[str, str], float]]]

    def value(self, name: str, **labels: str) -> float:
        """The value of the one sample of `name` with these labels (AssertionError if absent)."""
        matches = [
            v for ls, v in self.samples.get(name, []) if all(ls.get(k) == x for k, x in labels.items())
        ]
        assert len(matches) == 1, f"{name}{labels}: {len(matches)} samples in {self.samples.get(name)}"
        return matches[0]

    def has(self, name: str) -> bool:
        return name in self.samples

    def labels(self) -> Iterator[tuple[str, dict[str, str]]]:
        for name, samples in self.samples.items():
            for labels, _ in samples:
                yield name, labels


async def scrape(url: str) -> Metrics:
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.get(url)
    response.raise_for_status()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return Metrics(samples)


# --- OTLP ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportedSpan:
    """The parts of an exported span the tests look at."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, object]
    status_code: int


@dataclass
class OtlpReceiver:
    """An OTLP/HTTP collector stand-in: keeps every `/v1/traces` body it is sent."""

    bodies: list[bytes] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                encoding = self.headers.get("content-encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path == "/v1/traces":
                    receiver.bodies.append(body)
                    reply = ExportTraceServiceResponse().SerializeToString()
                    self.send_response(200)
                else:
                    reply = b""
                    self.send_response(404)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def payload(self) -> bytes:
        """Every byte received (for the no-secrets check)."""
        return b"".join(self.bodies)

    def spans(self) -> list[ExportedSpan]:
        found = []
        for body in list(self.bodies):
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource_spans in request.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        found.append(
                            ExportedSpan(
                                service=service,
                                name=span.name,
                                kind=span.kind,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_span_id=span.parent_span_id.hex(),
                                attributes={
                                    a.key: getattr(a.value, a.value.WhichOneof("value") or "string_value")
                                    for a in span.attributes
                                },
                                status_code=span.status.code,
                            )
                        )
        return found


# --- the system --------------------------------------------------------------------


def json_logs(path: Path) -> list[dict[str, object]]:
    """The JSON lines of a service's log file."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


@dataclass
class System:
    """provider_svc, agent_svc and the gateway as processes on free ports."""

    database_url: str
    nats_url: str
    encryption_keys: str
    service_key: str
    log_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra variables for every process (e.g. OTEL_*)."""
    provider_port: int = 0
    internal_port: int = 0
    agent_port: int = 0
    http_port: int = 0
    provider_metrics_port: int = 0
    agent_metrics_port: int = 0
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def metrics_url(self, service: str) -> str:
        port = {
            "provider_svc": self.provider_metrics_port,
            "agent_svc": self.agent_metrics_port,
            "gateway": self.http_port,
        }[service]
        return f"http://127.0.0.1:{port}/metrics"

    def log(self, service: str) -> Path:
        return self.log_dir / f"{service}.log"

    async def start(self) -> None:
        self.provider_port, self.internal_port, self.agent_port, self.http_port = (
            free_port() for _ in range(4)
        )
        self.provider_metrics_port, self.agent_metrics_port = free_port(), free_port()
        # The test process's own OTEL_* variables must not leak into a process meant to run without.
        base = {k: "" for k in os.environ if k.startswith("OTEL_")}
        common = {
            **base,
            "NATS_URL": self.nats_url,
            "RATE_LIMIT_RPS": "0",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
            "SHUTDOWN_GRACE_S": "5",
            "SHUTDOWN_DRAIN_DELAY_S": "0",
            "OUTBOX_POLL_INTERVAL_S": "0.2",
            "METRICS_REFRESH_INTERVAL_S": "0.2",
            **self.env,
        }
        provider = ServiceProcess(
            "provider_svc",
            env={
                **common,
                "DATABASE_URL": self.database_url,
                "ENCRYPTION_KEYS": self.encryption_keys,
                "SERVICE_API_KEY": self.service_key,
                "GRPC_BIND_HOST": "127.0.0.1",
                "PROVIDER_GRPC_PORT": str(self.provider_port),
                "PROVIDER_INTERNAL_GRPC_PORT": str(self.internal_port),
                "METRICS_PORT": str(self.provider_metrics_port),
                "AGENT_SVC_ADDRESS": f"127.0.0.1:{self.agent_port}",
                "SSRF_ALLOW_LOOPBACK": "true",
                "VALIDATION_TIMEOUT_S": "2",
            },
            port=self.provider_port,
            log=self.log("provider_svc"),
        )
        agent = ServiceProcess(
            "agent_svc",
            env={
                **common,
                "DATABASE_URL": self.database_url,
                "SERVICE_API_KEY": self.service_key,
                "GRPC_BIND_HOST": "127.0.0.1",
                "AGENT_GRPC_PORT": str(self.agent_port),
                "METRICS_PORT": str(self.agent_metrics_port),
                "PROVIDER_SVC_ADDRESS": f"127.0.0.1:{self.provider_port}",
                "PROVIDER_INTERNAL_ADDRESS": f"127.0.0.1:{self.internal_port}",
                "SSRF_ALLOW_LOOPBACK": "true",
            },
            port=self.agent_port,
            log=self.log("agent_svc"),
        )
        gateway = ServiceProcess(
            "gateway",
            env={
                **common,
                "HTTP_BIND_HOST": "127.0.0.1",
                "HTTP_PORT": str(self.http_port),
                "PROVIDER_SVC_ADDRESS": f"127.0.0.1:{self.provider_port}",
                "AGENT_SVC_ADDRESS": f"127.0.0.1:{self.agent_port}",
            },
            port=self.http_port,
            log=self.log("gateway"),
        )
        self.processes = {"provider_svc": provider, "agent_svc": agent, "gateway": gateway}
        for process in self.processes.values():
            process.start()
        await provider.wait_serving(timeout=60)
        await agent.wait_serving(timeout=60)
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:

            async def ready() -> None:
                assert gateway.process is not None and gateway.process.poll() is None, gateway.log_text()
                try:
                    response = await http.get("/readyz")
                except httpx.HTTPError as exc:
                    raise AssertionError(type(exc).__name__) from exc
                assert response.status_code == 200, response.text

            await eventually(ready, timeout=60, interval=0.1, message="gateway ready")

    async def stop(self) -> dict[str, int]:
        """SIGTERM every process (gateway first); their exit codes."""
        codes = {}
        for name in ("gateway", "agent_svc", "provider_svc"):
            process = self.processes.get(name)
            if process is not None:
                codes[name] = await process.stop(timeout=30)
        return codes

    def kill(self) -> None:
        for process in self.processes.values():
            process.kill()
