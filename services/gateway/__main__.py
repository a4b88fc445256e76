"""`python -m services.gateway`."""

from __future__ import annotations

import sys

from libs.common.logging import configure_logging
from libs.common.settings import SettingsError, load_settings
from libs.common.telemetry import configure_tracing, shutdown_tracing
from services.gateway.settings import GatewaySettings


async def _serve(settings: GatewaySettings) -> None:
    from services.gateway.server import GatewayServer

    server = GatewayServer(settings)
    await server.start()
    await server.wait_for_shutdown()
    await server.stop()


def main() -> int:
    """Entry point; exit code 2 for a bad configuration."""
    try:
        settings = load_settings(GatewaySettings)
        settings.require_nats()
    except SettingsError as exc:
        print(f"gateway: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(
        level=settings.log_level,
        fmt=settings.log_format,
        service="gateway",
        secrets=[settings.bootstrap_admin_key.get_secret_value() if settings.bootstrap_admin_key else ""],
    )
    try:
        configure_tracing("gateway")
    except ValueError as exc:
        print(f"gateway: invalid configuration: {exc}", file=sys.stderr)
        return 2
    import uvloop

    uvloop.run(_serve(settings))
    shutdown_tracing()
    return 0


if __name__ == "__main__":
    sys.exit(main())
