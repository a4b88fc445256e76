"""`python -m services.provider_svc [serve|migrate]`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from libs.common.logging import configure_logging, get_logger
from libs.common.migrate import run_migrations
from libs.common.settings import SettingsError, load_settings
from libs.common.telemetry import configure_tracing, shutdown_tracing
from services.provider_svc.repository import SCHEMA
from services.provider_svc.settings import ProviderSettings

MIGRATIONS = Path(__file__).parent / "migrations"


async def _serve(settings: ProviderSettings) -> None:
    from services.provider_svc.server import ProviderServer

    server = ProviderServer(settings)
    await server.start()
    await server.runtime.wait_for_shutdown()
    await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point; exit code 2 for a bad configuration."""
    parser = argparse.ArgumentParser(prog="python -m services.provider_svc")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    try:
        settings = load_settings(ProviderSettings)
        settings.require_infrastructure()
    except SettingsError as exc:
        print(f"provider_svc: invalid configuration: {exc}", file=sys.stderr)
        return 2
    configure_logging(
        level=settings.log_level,
        fmt=settings.log_format,
        service="provider_svc",
        secrets=[
            *(k.strip() for k in settings.encryption_keys.get_secret_value().split(",")),
            settings.bootstrap_admin_key.get_secret_value() if settings.bootstrap_admin_key else "",
        ],
    )
    if args.command == "migrate":
        run_migrations(
            migrations_dir=MIGRATIONS, database_url=settings.database_url.get_secret_value(), schema=SCHEMA
        )
        get_logger("provider_svc").info("migrated", schema=SCHEMA)
        return 0
    try:
        configure_tracing("provider_svc")
    except ValueError as exc:
        print(f"provider_svc: invalid configuration: {exc}", file=sys.stderr)
        return 2
    import uvloop

    uvloop.run(_serve(settings))
    shutdown_tracing()
    return 0


if __name__ == "__main__":
    sys.exit(main())
