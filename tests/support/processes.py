"""Services as separate processes, for tests of crashes, signals and restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.eventually import eventually

ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """`python -m services.<name>` with the given environment; output goes to a log file."""

    def __init__(self, name: str, *, env: dict[str, str], port: int, log: Path) -> None:
        self.name = name
        self.env = env
        self.port = port
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                env={**os.environ, **self.env},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def wait_serving(self, timeout: float = 30.0) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)

            async def serving() -> None:
                assert self.process is not None and self.process.poll() is None, self.log_text()[-2000:]
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                except grpc.aio.AioRpcError as exc:
                    raise AssertionError(str(exc.code())) from exc
                assert reply.status == health_pb2.HealthCheckResponse.SERVING

            await eventually(serving, timeout=timeout, interval=0.1, message=f"{self.name} serving")

    async def wait_http_ready(self, path: str = "/readyz", timeout: float = 30.0) -> None:
        """Wait until `GET http://127.0.0.1:<port><path>` answers 200 (the gateway)."""
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=1.0) as http:

            async def ready() -> None:
                assert self.process is not None and self.process.poll() is None, self.log_text()[-2000:]
                try:
                    response = await http.get(path)
                except httpx.HTTPError as exc:
                    raise AssertionError(type(exc).__name__) from exc
                assert response.status_code == 200, response.text

            await eventually(ready, timeout=timeout, interval=0.1, message=f"{self.name} ready")

    @property
    def alive(self) -> bool:
        """Started and not exited."""
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    async def stop(self, timeout: float = 30.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
