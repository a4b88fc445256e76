"""`agentmgr run`: the whole system on one machine (DESIGN §7).

Starts the embedded PostgreSQL and nats-server (unless DATABASE_URL / NATS_URL are
given), migrates every service's schema, starts each service as its own process —
as in Kubernetes — prints where everything listens and the admin key, and on Ctrl-C
or SIGTERM stops the services (gracefully) and then the servers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from libs.cli.local import LocalState, data_dir
from libs.common.embedded import EmbeddedNats, EmbeddedPostgres
from libs.common.migrate import run_migrations

__all__ = ["ServiceSpec", "run_system"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ServiceSpec:
    """One service process of the system."""

    name: str
    """Its name (also its module: `services.<name>`)."""
    port_variable: str
    """The variable that sets its port."""
    default_port: int
    """DESIGN §7 default."""
    schema: str | None
    """Its database schema, migrated before start (None: no database)."""
    http: bool = False
    """Serves HTTP (readiness is `/readyz`) rather than gRPC (readiness is grpc.health.v1)."""
    extra_env: dict[str, str] = field(default_factory=dict)


# make run is for a laptop: providers on loopback (Ollama, a local stub) are allowed.
SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec(
        name="provider_svc",
        port_variable="PROVIDER_GRPC_PORT",
        default_port=50051,
        schema="provider_svc",
        extra_env={"SSRF_ALLOW_LOOPBACK": "true"},
    ),
    ServiceSpec(
        name="agent_svc",
        port_variable="AGENT_GRPC_PORT",
        default_port=50052,
        schema="agent_svc",
        extra_env={"SSRF_ALLOW_LOOPBACK": "true"},
    ),
    ServiceSpec(name="gateway", port_variable="HTTP_PORT", default_port=8080, schema=None, http=True),
)


def _port(spec: ServiceSpec) -> int:
    return int(os.environ.get(spec.port_variable) or spec.default_port)


def _wait_http_ready(port: int, process: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with code {process.returncode} while starting")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as reply,
        ):
            if reply.status == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"not ready on port {port} after {timeout_s:.0f} s")


def _wait_serving(port: int, process: subprocess.Popen[bytes], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"exited with code {process.returncode} while starting")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"not serving on port {port} after {timeout_s:.0f} s")


class _Stop(Exception):
    pass


def _on_signal(signum: int, frame: object) -> None:
    raise _Stop


def run_system(services: Sequence[ServiceSpec] = SERVICES) -> int:
    """Run until Ctrl-C / SIGTERM; returns the exit code."""
    state = LocalState(data_dir())
    state.ensure_root()
    secrets = state.secrets()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    postgres: EmbeddedPostgres | None = None
    nats_server: EmbeddedNats | None = None
    children: list[tuple[ServiceSpec, subprocess.Popen[bytes]]] = []
    code = 0
    try:
        database_url = os.environ.get("DATABASE_URL", "")
        if not database_url:
            print("starting PostgreSQL …", flush=True)
            postgres = EmbeddedPostgres(state.root / "postgres")
            database_url = postgres.start()
        nats_url = os.environ.get("NATS_URL", "")
        if not nats_url:
            print("starting nats-server …", flush=True)
            nats_server = EmbeddedNats(state.root / "nats")
            nats_url = nats_server.start()
        for spec in services:
            if spec.schema is not None:
                run_migrations(
                    migrations_dir=ROOT / "services" / spec.name / "migrations",
                    database_url=database_url,
                    schema=spec.schema,
                )
        ports = {spec.name: _port(spec) for spec in services}
        internal_port = int(os.environ.get("PROVIDER_INTERNAL_GRPC_PORT") or 50061)
        env = {
            **os.environ,
            "PROVIDER_INTERNAL_GRPC_PORT": str(internal_port),
            "PROVIDER_SVC_ADDRESS": f"127.0.0.1:{ports.get('provider_svc', 50051)}",
            "PROVIDER_INTERNAL_ADDRESS": f"127.0.0.1:{internal_port}",
            "AGENT_SVC_ADDRESS": f"127.0.0.1:{ports.get('agent_svc', 50052)}",
            "HTTP_BIND_HOST": os.environ.get("HTTP_BIND_HOST", "127.0.0.1"),
            "DATABASE_URL": database_url,
            "NATS_URL": nats_url,
            "ENCRYPTION_KEYS": os.environ.get("ENCRYPTION_KEYS") or secrets["ENCRYPTION_KEYS"],
            "BOOTSTRAP_ADMIN_KEY": os.environ.get("BOOTSTRAP_ADMIN_KEY") or secrets["BOOTSTRAP_ADMIN_KEY"],
            "SERVICE_API_KEY": os.environ.get("SERVICE_API_KEY") or secrets["SERVICE_API_KEY"],
            "GRPC_BIND_HOST": os.environ.get("GRPC_BIND_HOST", "127.0.0.1"),
            "LOG_FORMAT": os.environ.get("LOG_FORMAT", "console"),
            # One machine, several services: per-service metrics ports would collide.
            "METRICS_PORT": os.environ.get("METRICS_PORT", "0"),
        }
        logs = state.root / "logs"
        logs.mkdir(exist_ok=True)
        for spec in services:
            port = _port(spec)
            child_env = {**spec.extra_env, **env, spec.port_variable: str(port)}
            print(f"starting {spec.name} on 127.0.0.1:{port} …", flush=True)
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{spec.name}"],
                env=child_env,
                cwd=ROOT,
                start_new_session=True,
            )
            children.append((spec, process))
            try:
                if spec.http:
                    _wait_http_ready(port, process, timeout_s=60)
                else:
                    _wait_serving(port, process, timeout_s=60)
            except (RuntimeError, TimeoutError) as exc:
                print(f"{spec.name} failed to start: {exc}", file=sys.stderr)
                return 1
        state.write_runtime(
            {
                "database_url": database_url,
                "nats_url": nats_url,
                **{f"{s.name}_address": f"127.0.0.1:{_port(s)}" for s in services},
                "http_url": f"http://127.0.0.1:{ports.get('gateway', 8080)}",
                "pid": os.getpid(),
            }
        )
        _banner(services, env["BOOTSTRAP_ADMIN_KEY"])
        while True:
            for spec, process in children:
                if process.poll() is not None:
                    print(f"{spec.name} exited with code {process.returncode}; stopping", file=sys.stderr)
                    raise _Stop
            time.sleep(0.5)
    except _Stop:
        code = 0 if all(p.poll() is None for _, p in children) else 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nstopping …", flush=True)
        for _, process in reversed(children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in reversed(children):
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        state.clear_runtime()
        if nats_server is not None:
            nats_server.stop()
        if postgres is not None:
            postgres.stop()
        print("stopped", flush=True)
    return code


def _banner(services: Sequence[ServiceSpec], admin_key: str) -> None:
    ports = {spec.name: _port(spec) for spec in services}
    http = f"http://127.0.0.1:{ports.get('gateway', 8080)}"
    lines = ["", "agentmgr is running", ""]
    if "gateway" in ports:
        lines += [
            f"  console        {http}/",
            f"  REST API       {http}/v1",
            f"  API docs       {http}/docs",
            f"  WebSocket      {http.replace('http', 'ws', 1)}/v1/ws?api_key=…",
        ]
    for spec in services:
        if not spec.http:
            lines.append(f"  {spec.name:<14} grpc://127.0.0.1:{ports[spec.name]}")
    lines += [
        "",
        f"  admin API key  {admin_key}",
        "",
        "  try:  curl -s -H 'Authorization: Bearer " + admin_key + "' \\",
        '          -H \'content-type: application/json\' -d \'{"name": "offline", "type": "test"}\' \\',
        f"          {http}/v1/providers",
        "",
        "  Ctrl-C stops everything; data stays in " + str(data_dir()),
        "",
    ]
    print("\n".join(lines), flush=True)
