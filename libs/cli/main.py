"""The `agentmgr` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence

from libs.cli.local import LocalState, data_dir
from libs.cli.rest import add_commands, run_command
from libs.common.auth import ALL_PROJECTS, Role, create_api_key, list_api_keys, revoke_api_key
from libs.common.crypto import Keyring, generate_key
from libs.common.logging import configure_logging
from libs.common.messaging import connect, ensure_api_key_bucket
from libs.common.names import validate_name

__all__ = ["main"]


def _state() -> LocalState:
    return LocalState(data_dir())


def _require(name: str, hint: str) -> str:
    value = _state().setting(name)
    if not value:
        raise SystemExit(f"agentmgr: {name} is not set and no running `make run` was found ({hint})")
    return value


async def _keys(args: argparse.Namespace) -> int:
    nc = await connect(_require("NATS_URL", "set NATS_URL"), name="agentmgr-cli", connect_timeout_s=5)
    try:
        kv = await ensure_api_key_bucket(nc.jetstream(), replicas=1)
        if args.keys_command == "create":
            project = (
                args.project if args.project == ALL_PROJECTS else validate_name(args.project, field="project")
            )
            key, record = await create_api_key(kv, name=args.name, project=project, role=Role(args.role))
            if args.json:
                print(
                    json.dumps({"key": key, "id": record.id, "project": project, "role": record.role.value})
                )
            else:
                print(f"created {record.role.value} key {record.id} for project {project}")
                print(f"key (shown once): {key}")
        elif args.keys_command == "list":
            records = await list_api_keys(kv)
            if args.json:
                print(json.dumps([json.loads(r.to_json()) for r in records]))
            else:
                print(f"{'ID':<32} {'NAME':<20} {'PROJECT':<12} {'ROLE':<8} {'STATE':<8} CREATED")
                for r in records:
                    state = "revoked" if r.revoked else "active"
                    row = f"{r.id:<32} {r.name:<20} {r.project:<12} {r.role.value:<8} {state:<8}"
                    print(f"{row} {r.created_time}")
        else:
            revoked = await revoke_api_key(kv, args.id)
            if revoked is None:
                print(f"agentmgr: no key with id {args.id}", file=sys.stderr)
                return 1
            print(f"revoked {revoked.id}; every service refuses it within seconds")
    finally:
        await nc.close()
    return 0


async def _rotate(args: argparse.Namespace) -> int:
    from libs.common.db import create_engine
    from services.provider_svc.repository import ProviderRepository
    from services.provider_svc.rotation import rotate_keys

    try:
        keyring = Keyring.from_setting(_require("ENCRYPTION_KEYS", "set ENCRYPTION_KEYS=new,old"))
    except ValueError as exc:  # the message describes the problem, never the value
        raise SystemExit(f"agentmgr: ENCRYPTION_KEYS: {exc}") from None
    engine = create_engine(
        _require("DATABASE_URL", "set DATABASE_URL"), pool_size=2, application_name="rotate-keys"
    )
    try:
        report = await rotate_keys(engine=engine, repository=ProviderRepository(), keyring=keyring)
    finally:
        await engine.dispose()
    remaining = sum(n for fp, n in report.by_fingerprint.items() if fp != keyring.primary_fingerprint)
    print(f"re-encrypted {report.rotated} key(s) with the primary key {keyring.primary_fingerprint}")
    if report.unreadable:
        print(
            f"{len(report.unreadable)} key(s) decrypt with none of the configured keys: {report.unreadable}"
        )
    if remaining or report.unreadable:
        print("not done: keep the old key(s) and run again", file=sys.stderr)
        return 1
    print("done: the old key(s) can now be removed from ENCRYPTION_KEYS")
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from libs.cli.run import SERVICES
    from libs.common.migrate import run_migrations

    url = _require("DATABASE_URL", "set DATABASE_URL")
    root = Path(__file__).resolve().parents[2]
    for spec in SERVICES:
        if spec.schema:
            run_migrations(
                migrations_dir=root / "services" / spec.name / "migrations",
                database_url=url,
                schema=spec.schema,
            )
            print(f"migrated {spec.schema}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentmgr", description="Manage LLM agents as configuration.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the whole system locally (what `make run` does)")
    keys = commands.add_parser("keys", help="create, list and revoke API keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser("create", help="create a key (printed once)")
    create.add_argument("--name", required=True, help="a label for humans")
    create.add_argument(
        "--project", default=ALL_PROJECTS, help="project the key grants, or * for all (default)"
    )
    create.add_argument("--role", default="viewer", choices=[r.value for r in Role])
    create.add_argument("--json", action="store_true")
    listing = keys_commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--json", action="store_true")
    revoke = keys_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id")
    commands.add_parser(
        "rotate-keys", help="re-encrypt stored provider keys with the first ENCRYPTION_KEYS key"
    )
    commands.add_parser("gen-key", help="print a new encryption key for ENCRYPTION_KEYS")
    commands.add_parser("migrate", help="migrate every service's schema (DATABASE_URL)")
    add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `agentmgr` console script."""
    args = _parser().parse_args(argv)
    configure_logging(level="WARNING", fmt="console", service="agentmgr-cli", stream=sys.stderr)
    if args.command == "run":
        from libs.cli.run import run_system

        return run_system()
    if args.command == "keys":
        return asyncio.run(_keys(args))
    if args.command == "rotate-keys":
        return asyncio.run(_rotate(args))
    if args.command == "gen-key":
        print(generate_key())
        return 0
    if args.command == "migrate":
        return _migrate(args)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
