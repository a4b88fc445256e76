"""`make bench`: every benchmark, figures printed."""

from __future__ import annotations

import os
import platform

from bench import end_to_end, fanout, provider, registry


async def main() -> None:
    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"agentmgr benchmarks — {python}, {os.cpu_count()} CPUs, everything on this machine")

    print("\n== provider_svc over gRPC (separate process) ==")
    for result in await provider.run():
        print(result.row())
    print("targets: GetProvider p50 < 2 ms at c=1; >= 1000 GetProvider/s at c=16")

    print("\n== schema compiler ==")
    from bench import bench_compiler

    bench_compiler.main()

    print("\n== agent registry ==")
    for row in await registry.run():
        print(row)

    print("\n== runs end to end: in-process vs agent_svc vs gateway (same stub) ==")
    end_to_end.report(*await end_to_end.run())

    print("\n== event fan-out over WebSocket ==")
    fan = await fanout.run()
    print("\n".join(fan.rows()))
    print("targets: p99 < 100 ms; < 100 KiB per idle client")


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
