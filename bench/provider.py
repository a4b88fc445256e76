"""provider_svc over gRPC: Create and Get, p50/p99 and requests/second at concurrency 1 and 16.

Targets (2 cores, everything on one machine): Get p50 < 2 ms at concurrency 1, at least
1,000 Gets/second at concurrency 16.
"""

from __future__ import annotations

import uuid

import grpc

from agentmgr.v1 import provider_pb2 as P
from agentmgr.v1 import provider_pb2_grpc
from bench.harness import ROOT, Result, System, load


async def run(system: System | None = None, *, duration_s: float = 5.0) -> list[Result]:
    own = system is None
    if system is None:
        system = System()
        await system.start({"provider_svc": ROOT / "services" / "provider_svc" / "migrations"})
    try:
        port = await system.service(
            "provider_svc", "PROVIDER_GRPC_PORT", {"VALIDATION_WORKER_ENABLED": "false"}
        )
        metadata = (("authorization", f"Bearer {system.admin_key}"),)
        results = []
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = provider_pb2_grpc.ProviderServiceStub(channel)
            run_id = uuid.uuid4().hex[:6]
            seed = await stub.CreateProvider(
                P.CreateProviderRequest(
                    provider=P.Provider(name=f"seed-{run_id}", type="openai"),
                    api_key="sk-bench-0000000000000000",
                ),
                metadata=metadata,
            )
            provider_id = seed.provider.id

            async def create(i: int) -> None:
                await stub.CreateProvider(
                    P.CreateProviderRequest(
                        provider=P.Provider(name=f"b-{run_id}-{i}", type="openai"),
                        api_key="sk-bench-0000000000000000",
                    ),
                    metadata=metadata,
                )

            async def get(_: int) -> None:
                await stub.GetProvider(P.GetProviderRequest(id=provider_id), metadata=metadata)

            for concurrency in (1, 16):
                run_id = uuid.uuid4().hex[:6]
                results.append(
                    await load(
                        "provider_svc CreateProvider", create, concurrency=concurrency, duration_s=duration_s
                    )
                )
                await system.quiet(("provider_svc",))
                results.append(
                    await load(
                        "provider_svc GetProvider", get, concurrency=concurrency, duration_s=duration_s
                    )
                )
        return results
    finally:
        if own:
            system.stop()
