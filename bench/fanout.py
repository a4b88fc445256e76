"""Event fan-out: 1,000 WebSocket clients subscribed; time from a committed change to each
client receiving it (p50/p99), and the gateway's memory per idle client.

Latency is measured from the event's `time` (stamped in the writing transaction) to the
moment the client process reads the frame, on the same clock: with a minimal client
(bench/lean_ws.py: the frame's bytes arrive, parsed after the measurement), which is the
gateway's share and the figure held to the target, and with aiohttp, a typical client
whose per-message work 1,000 clients in four processes pay in series. Targets: p99 <
100 ms, < 100 KiB per idle client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx2
import psutil

from bench import lean_ws
from bench.harness import ROOT, System

CLIENTS = {
    "lean": "minimal client (the gateway's share)",
    "aiohttp": "aiohttp client (typical)",
}
"""The load generators' clients, each measured against the same gateway (bench/lean_ws.py says why)."""


@dataclass
class Deliveries:
    """What one kind of client measured."""

    client: str
    deliveries: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_per_delivery_us: float
    """Gateway CPU (user + system) over the changes, per delivered message."""
    rss_per_client_kib: float
    """Gateway memory (RSS) per connected, subscribed, idle client."""

    def row(self) -> str:
        return (
            f"  {CLIENTS[self.client]:<38} commit -> client  p50={self.p50_ms:7.2f} ms  "
            f"p99={self.p99_ms:7.2f} ms  max={self.max_ms:7.2f} ms  ({self.deliveries} deliveries, "
            f"gateway CPU {self.cpu_per_delivery_us:5.1f} µs each, {self.rss_per_client_kib:4.1f} KiB "
            "per idle client)"
        )


@dataclass
class FanoutResult:
    """What the fan-out run measured."""

    clients: int
    changes: int
    runs: list[Deliveries]

    def rows(self) -> list[str]:
        return [
            f"websocket fan-out: {self.clients} clients, {self.changes} changes, each kind of client "
            "against a gateway of its own",
            *(run.row() for run in self.runs),
        ]


def _stamp(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _latencies(received: Sequence[tuple[float, str | bytes]]) -> list[float]:
    """Commit -> arrival (ms) of every event frame among `received` (arrival time, frame)."""
    latencies = []
    for arrived, text in received:
        frame = json.loads(text)
        if frame.get("type") == "event":
            latencies.append((arrived - _stamp(frame["event"]["time"])) * 1000)
    return latencies


def _client_main(client: str, port: int, target: str, count: int) -> None:
    """A client process: `count` subscribed connections; prints latencies (ms), one per line, at the end.

    Kept in memory until stdin closes: printing as they come would fill the pipe (the
    parent reads it only at the end) and stall this process mid-measurement.
    """
    import uvloop

    subscribe = json.dumps({"type": "subscribe", "topics": ["providers"]})

    async def lean() -> list[float]:
        catchers = [await lean_ws.connect("127.0.0.1", port, target) for _ in range(count)]
        for catcher in catchers:
            catcher.send_text(subscribe)
        for catcher in catchers:
            await catcher.first_frame  # the "subscribed" acknowledgement
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
        received = [frame for catcher in catchers for frame in lean_ws.frames(catcher.chunks)]
        for catcher in catchers:
            assert catcher.transport is not None
            catcher.transport.close()
        return _latencies(received)

    async def typical() -> list[float]:
        import aiohttp

        received: list[tuple[float, str | bytes]] = []
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        sockets = []
        for _ in range(count):
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}{target}", autoping=False, max_msg_size=0)
            await ws.send_str(subscribe)
            sockets.append(ws)
        for ws in sockets:
            await ws.receive()  # the "subscribed" acknowledgement
        print("ready", flush=True)

        async def reader(ws: aiohttp.ClientWebSocketResponse) -> None:
            while True:
                message = await ws.receive()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    return
                now = time.time()
                # What a typical client does with an event: read it (aiohttp's reader is C).
                frame = json.loads(message.data)
                if frame.get("type") == "event":
                    received.append((now, message.data))

        readers = [asyncio.create_task(reader(ws)) for ws in sockets]
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until stdin closes
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await session.close()
        return _latencies(received)

    latencies = uvloop.run(lean() if client == "lean" else typical())
    sys.stdout.write("".join(f"{value:.3f}\n" for value in latencies))
    sys.stdout.flush()


async def _measure(
    *,
    client: str,
    http_port: int,
    key: str,
    gateway: psutil.Process,
    clients: int,
    changes: int,
    interval_s: float,
    processes: int,
) -> Deliveries:
    """Connect `clients` of one kind, make `changes`, and gather what they received."""
    target = f"/v1/ws?api_key={key}"
    await asyncio.sleep(1.0)
    before = gateway.memory_info().rss
    share = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from bench.fanout import _client_main; "
                f"_client_main({client!r}, {http_port}, {target!r}, {count})",
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for count in share
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = await asyncio.to_thread(worker.stdout.readline)
            if line.strip() != "ready":
                raise RuntimeError(f"a client process failed to start: {line!r}")
        await asyncio.sleep(2.0)
        idle = gateway.memory_info().rss
        cpu_before = sum(gateway.cpu_times()[:2])
        async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{http_port}") as rest:
            for i in range(changes):
                response = await rest.post(
                    "/v1/providers",
                    json={"name": f"fan-{client}-{i}-{time.time_ns() % 100000}", "type": "test"},
                    headers={"authorization": f"Bearer {key}"},
                )
                response.raise_for_status()
                await asyncio.sleep(interval_s)
        await asyncio.sleep(3.0)
        cpu_used = sum(gateway.cpu_times()[:2]) - cpu_before
        latencies: list[float] = []
        for worker in workers:
            out, _ = await asyncio.to_thread(worker.communicate, "")
            latencies.extend(float(line) for line in out.split())
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    ordered = sorted(latencies) or [0.0]
    return Deliveries(
        client=client,
        deliveries=len(latencies),
        p50_ms=ordered[len(ordered) // 2],
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        max_ms=ordered[-1],
        cpu_per_delivery_us=cpu_used / max(len(latencies), 1) * 1e6,
        rss_per_client_kib=(idle - before) / clients / 1024,
    )


async def run(
    *, clients: int = 1000, changes: int = 40, interval_s: float = 0.2, processes: int = 4
) -> FanoutResult:
    """Clients live in `processes` separate processes, so one client loop is not the bottleneck.

    Each kind of client in `CLIENTS` gets a system of its own, started afresh: the second
    kind must not find a gateway still digesting the first one's 1,000 closed connections
    (a full garbage collection then stops its loop for over 100 ms: docs/performance.md).
    """
    runs = []
    for client in CLIENTS:
        system = System()
        await system.start({"provider_svc": ROOT / "services" / "provider_svc" / "migrations"})
        try:
            provider_port = await system.service(
                "provider_svc", "PROVIDER_GRPC_PORT", {"VALIDATION_WORKER_ENABLED": "false"}
            )
            http_port = await system.http_service(
                "gateway",
                "HTTP_PORT",
                {"PROVIDER_SVC_ADDRESS": f"127.0.0.1:{provider_port}", "AGENT_SVC_ADDRESS": "127.0.0.1:1"},
            )
            runs.append(
                await _measure(
                    client=client,
                    http_port=http_port,
                    key=system.admin_key,
                    gateway=psutil.Process(system.processes[-1].pid),
                    clients=clients,
                    changes=changes,
                    interval_s=interval_s,
                    processes=processes,
                )
            )
        finally:
            system.stop()
    return FanoutResult(clients=clients, changes=changes, runs=runs)


if __name__ == "__main__":
    import uvloop

    async def _main() -> None:
        print("\n".join((await run()).rows()))

    uvloop.run(_main())
