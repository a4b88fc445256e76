"""`agentmgr run` (what `make run` starts): the whole system, its data surviving a restart."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import grpc
import psutil
import pytest

from agentmgr.v1 import provider_pb2 as P
from agentmgr.v1 import provider_pb2_grpc
from libs.common.embedded import free_port
from tests.support.grpc_helpers import auth

pytestmark = pytest.mark.asyncio
ROOT = Path(__file__).resolve().parents[2]


class RunningSystem:
    """`agentmgr run` as a subprocess, every port a free one; `port` is provider_svc's gRPC port."""

    def __init__(self, data_dir: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port
        self.http_port = free_port()
        self.agent_port = free_port()
        self.internal_port = free_port()
        self.extra_env = env or {}
        self.output: list[str] = []
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> str:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "NATS_URL", "BOOTSTRAP_ADMIN_KEY", "ENCRYPTION_KEYS")
        }
        env.update(
            {
                "DATA_DIR": str(self.data_dir),
                "PROVIDER_GRPC_PORT": str(self.port),
                "PROVIDER_INTERNAL_GRPC_PORT": str(self.internal_port),
                "AGENT_GRPC_PORT": str(self.agent_port),
                "HTTP_PORT": str(self.http_port),
                **self.extra_env,
            }
        )
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "libs.cli.main",
            "run",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        key = ""
        async with asyncio.timeout(120):
            while True:
                line = (await self.process.stdout.readline()).decode()
                if not line:
                    raise AssertionError("exited early:\n" + "".join(self.output))
                self.output.append(line)
                if match := re.search(r"admin API key\s+(\S+)", line):
                    key = match.group(1)
                if "Ctrl-C stops everything" in line:
                    break
        asyncio.get_running_loop().create_task(self._drain())
        return key

    async def _drain(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.output.append(line.decode())

    @property
    def url(self) -> str:
        """The gateway (REST, console)."""
        return f"http://127.0.0.1:{self.http_port}"

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), 60)


def _children_of_data_dir(data_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(data_dir) in cmdline:
            found.append(process)
    return found


async def test_run_starts_everything_prints_a_key_and_keeps_data(tmp_path):
    data_dir = tmp_path / "data"
    port = free_port()
    system = RunningSystem(data_dir, port)
    key = await system.start()
    assert key.startswith("amk_")
    banner = "".join(system.output)
    assert f"grpc://127.0.0.1:{port}" in banner
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = provider_pb2_grpc.ProviderServiceStub(channel)
        created = await stub.CreateProvider(
            P.CreateProviderRequest(provider=P.Provider(name="offline", type="test")), metadata=auth(key)
        )
        assert created.provider.validation.status == "valid"
    assert _children_of_data_dir(data_dir), "embedded servers should run under the data dir"
    assert await system.stop(signal.SIGINT) == 0
    assert "stopped" in "".join(system.output)
    assert not _children_of_data_dir(data_dir), "something kept running after Ctrl-C"

    # Restart: same admin key, same data.
    again = RunningSystem(data_dir, port)
    assert await again.start() == key
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ProviderServiceStub(channel)
            got = await stub.GetProvider(P.GetProviderRequest(id=created.provider.id), metadata=auth(key))
            assert got.provider.name == "offline"
    finally:
        assert await again.stop() == 0
    secrets_file = data_dir / "secrets.env"
    assert oct(secrets_file.stat().st_mode & 0o777) == "0o600"


async def test_run_honours_the_bootstrap_admin_key(tmp_path):
    chosen = "amk_chosen_by_the_operator_0123456789abcdef"
    port = free_port()
    system = RunningSystem(tmp_path / "data", port, env={"BOOTSTRAP_ADMIN_KEY": chosen})
    assert await system.start() == chosen
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ProviderServiceStub(channel)
            await stub.ListProviders(P.ListProvidersRequest(), metadata=auth(chosen))
    finally:
        assert await system.stop() == 0
