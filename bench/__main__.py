"""`make bench`: every benchmark, figures printed."""

from __future__ import annotations

import os
import platform

from bench import provider


async def main() -> None:
    python = f"{platform.python_implementation()} {platform.python_version()}"
    print(f"agentmgr benchmarks — {python}, {os.cpu_count()} CPUs")
    print("\n== provider_svc over gRPC (separate process; PostgreSQL and NATS on the same machine) ==")
    for result in await provider.run():
        print(result.row())
    print("targets: GetProvider p50 < 2 ms at c=1; >= 1000 GetProvider/s at c=16")


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
