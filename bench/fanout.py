"""Event fan-out: 1,000 WebSocket clients subscribed; time from a committed change to each
client receiving it (p50/p99), and the gateway's memory per idle client.

Latency is measured from the event's `time` (stamped in the writing transaction) to the
moment the client process reads the frame, on the same clock. Targets: p99 < 100 ms,
< 100 KiB per idle client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx2
import psutil

from bench.harness import ROOT, System


@dataclass
class FanoutResult:
    """What the fan-out run measured."""

    clients: int
    changes: int
    deliveries: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_per_client_kib: float
    cpu_per_delivery_us: float

    def rows(self) -> list[str]:
        return [
            f"websocket fan-out: {self.clients} clients, {self.changes} changes, "
            f"{self.deliveries} deliveries",
            f"  commit -> client  p50={self.p50_ms:7.2f} ms  p99={self.p99_ms:7.2f} ms  "
            f"max={self.max_ms:7.2f} ms",
            f"  gateway memory per idle client {self.rss_per_client_kib:6.1f} KiB, "
            f"gateway CPU per delivered message {self.cpu_per_delivery_us:6.1f} µs",
        ]


def _stamp(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _client_main(url: str, count: int) -> None:
    """A client process: `count` subscribed connections; prints latencies (ms), one per line, at the end.

    Kept in memory until stdin closes: printing as they come would fill the pipe (the
    parent reads it only at the end) and stall this process mid-measurement.
    """
    import aiohttp
    import uvloop

    async def main() -> None:
        # aiohttp's WebSocket reader is C: the load generator shares the two cores with the
        # gateway, and its own per-frame cost should not be what the figure measures.
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        sockets = []
        for _ in range(count):
            ws = await session.ws_connect(url, autoping=False, max_msg_size=0)
            await ws.send_str(json.dumps({"type": "subscribe", "topics": ["providers"]}))
            sockets.append(ws)
        for ws in sockets:
            await ws.receive()  # the "subscribed" acknowledgement
        print("ready", flush=True)

        latencies: list[float] = []

        async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
            while True:
                message = await ws.receive()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    return
                now = time.time()
                frame = json.loads(message.data)
                if frame.get("type") == "event":
                    latencies.append((now - _stamp(frame["event"]["time"])) * 1000)

        readers = [asyncio.create_task(reader(ws)) for ws in sockets]
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await session.close()
        sys.stdout.write("".join(f"{value:.3f}\n" for value in latencies))
        sys.stdout.flush()

    uvloop.run(main())


async def run(
    *, clients: int = 1000, changes: int = 40, interval_s: float = 0.2, processes: int = 4
) -> FanoutResult:
    """Clients live in `processes` separate processes, so one client loop is not the bottleneck."""
    system = System()
    await system.start({"provider_svc": ROOT / "services" / "provider_svc" / "migrations"})
    workers: list[subprocess.Popen[str]] = []
    try:
        provider_port = await system.service(
            "provider_svc", "PROVIDER_GRPC_PORT", {"VALIDATION_WORKER_ENABLED": "false"}
        )
        http_port = await system.http_service(
            "gateway",
            "HTTP_PORT",
            {"PROVIDER_SVC_ADDRESS": f"127.0.0.1:{provider_port}", "AGENT_SVC_ADDRESS": "127.0.0.1:1"},
        )
        gateway = psutil.Process(system.processes[-1].pid)
        key = system.admin_key
        url = f"ws://127.0.0.1:{http_port}/v1/ws?api_key={key}"
        await asyncio.sleep(1.0)
        before = gateway.memory_info().rss
        share = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
        for count in share:
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        f"from bench.fanout import _client_main; _client_main({url!r}, {count})",
                    ],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for worker in workers:
            assert worker.stdout is not None
            line = await asyncio.to_thread(worker.stdout.readline)
            if line.strip() != "ready":
                raise RuntimeError(f"a client process failed to start: {line!r}")
        await asyncio.sleep(2.0)
        after = gateway.memory_info().rss
        cpu_before = sum(gateway.cpu_times()[:2])
        expected: set[str] = set()
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as rest:
            for i in range(changes):
                response = await rest.post(
                    "/v1/providers",
                    json={"name": f"fan-{i}-{time.time_ns() % 100000}", "type": "test"},
                    headers={"authorization": f"Bearer {key}"},
                )
                expected.add(response.json()["id"])
                await asyncio.sleep(interval_s)
        await asyncio.sleep(3.0)
        cpu_used = sum(gateway.cpu_times()[:2]) - cpu_before
        latencies: list[float] = []
        for worker in workers:
            out, _ = await asyncio.to_thread(worker.communicate, "")
            latencies.extend(float(line) for line in out.split())
        ordered = sorted(latencies) or [0.0]
        return FanoutResult(
            clients=clients,
            changes=len(expected),
            deliveries=len(latencies),
            p50_ms=ordered[len(ordered) // 2],
            p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
            max_ms=ordered[-1],
            rss_per_client_kib=(after - before) / clients / 1024,
            cpu_per_delivery_us=cpu_used / max(len(latencies), 1) * 1e6,
        )
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        system.stop()


if __name__ == "__main__":
    import uvloop

    async def _main() -> None:
        print("\n".join((await run()).rows()))

    uvloop.run(_main())
