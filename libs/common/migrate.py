"""Alembic migrations, one history per service, each in the service's own schema.

A service's `migrations/env.py` is just `run_env()`; `run_migrations(...)` drives it.
Migrations run as their own step (`python -m services.<svc> migrate`, a Kubernetes Job,
or `make run` before it starts the services) and take an advisory lock, so two
replicas starting together cannot migrate the same schema twice.
"""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common.db import normalize_url

__all__ = ["create_outbox_table", "run_env", "run_migrations"]


def run_migrations(*, migrations_dir: Path, database_url: str, schema: str, revision: str = "head") -> None:
    """Upgrade `schema` to `revision`. Blocking: call it in a thread from async code."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.attributes["database_url"] = normalize_url(database_url)
    config.attributes["schema"] = schema
    command.upgrade(config, revision)


def _upgrade(connection: Connection, schema: str) -> None:
    lock_id = zlib.crc32(f"agentmgr-migrate:{schema}".encode())
    connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": lock_id})
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    context.configure(
        connection=connection,
        version_table_schema=schema,
        transaction_per_migration=False,
    )
    context.run_migrations()


async def _run_online(database_url: str, schema: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, schema)
    finally:
        await engine.dispose()


def run_env() -> None:
    """Body of every service's alembic `env.py` (online mode only)."""
    attributes = context.config.attributes
    asyncio.run(_run_online(attributes["database_url"], attributes["schema"]))


def create_outbox_table(schema: str) -> None:
    """Migration step creating a service's outbox (see `libs.common.outbox`)."""
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger, sa.Identity(always=True), primary_key=True),
        sa.Column("id", sa.Text, nullable=False, unique=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=schema,
    )
