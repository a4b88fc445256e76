"""Async SQLAlchemy plumbing: one engine per process, connections in transactions.

Repositories use SQLAlchemy Core (not the ORM) on purpose: the hot paths are single
statements and the ORM's unit of work would cost more than the query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.util import greenlet_spawn

__all__ = [
    "Executor",
    "FastQuery",
    "create_engine",
    "driver_connection",
    "driver_of",
    "driver_transaction",
    "is_unavailable",
    "normalize_url",
]

_DIALECT = PGDialect_asyncpg(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]


def normalize_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` URLs and use the asyncpg driver."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise ValueError("must be a postgresql:// URL")


def create_engine(url: str, *, pool_size: int, application_name: str) -> AsyncEngine:
    """An engine whose pool fails fast (5 s) instead of queueing callers forever."""
    return create_async_engine(
        normalize_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=5,
        pool_recycle=1800,
        connect_args={
            "server_settings": {"application_name": application_name},
            "command_timeout": 30,
            "timeout": 5,
        },
    )


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` means the database could not be reached (not a bad query)."""
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (ConnectionError, OSError)) and not isinstance(exc, FileNotFoundError)


Executor = AsyncConnection | asyncpg.Connection


async def driver_of(executor: Executor) -> asyncpg.Connection:
    """The asyncpg connection under `executor` (not inside a SQLAlchemy transaction)."""
    if isinstance(executor, asyncpg.Connection):
        return executor
    if executor.in_transaction():
        # SQLAlchemy begins lazily on its own statements; a raw statement here would run
        # outside the caller's transaction. Use `driver_transaction` for raw writes.
        raise RuntimeError("FastQuery on a SQLAlchemy connection inside a transaction")
    raw = await executor.get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, asyncpg.Connection)
    return driver


@asynccontextmanager
async def driver_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A pooled asyncpg connection for FastQuery statements outside any transaction.

    Reads, and single-statement writes (which commit on their own). Checked out of the
    engine's own pool without SQLAlchemy's `Connection` around it: about 0.1 ms of CPU
    less per use than `engine.connect()`, a tenth of a `GetProvider`. A connection that
    broke meanwhile is dropped from the pool.
    """
    raw = await engine.raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, asyncpg.Connection)
    try:
        yield driver
    finally:
        if driver.is_closed():
            await greenlet_spawn(raw.invalidate)
        await greenlet_spawn(raw.close)


@asynccontextmanager
async def driver_transaction(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on a pooled asyncpg connection, for FastQuery writes on hot paths."""
    async with engine.connect() as conn:
        driver = await driver_of(conn)
        async with driver.transaction():
            yield driver


class FastQuery:
    """A Core statement compiled once, run straight on the pooled asyncpg connection.

    SQLAlchemy's async execution layer (greenlet hop, compiled-cache lookup, result
    processing, implicit BEGIN/ROLLBACK) costs about 0.5 ms of CPU per statement here,
    more than PostgreSQL takes to answer a primary-key read (docs/performance.md). The
    hot statements are plain ones on plain columns, so they run the SQL SQLAlchemy
    compiled for them on the driver connection of the same pool. No type processors run:
    JSONB parameters are passed as JSON text and results decoded by the codecs
    SQLAlchemy installs on every connection. Reads run outside any transaction (on an
    `engine.connect()` connection); writes take a `driver_transaction`.
    """

    def __init__(self, statement: ClauseElement) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        self.sql = str(compiled)
        self.names = tuple(compiled.positiontup or ())

    def args(self, params: Mapping[str, object]) -> list[object]:
        """The positional arguments of the statement, from named parameters."""
        return [params[name] for name in self.names]

    async def fetch(self, executor: Executor, params: Mapping[str, object]) -> list[Mapping[str, Any]]:
        """All rows, as mappings keyed by column name."""
        driver = await driver_of(executor)
        # asyncpg's Record is a read-only mapping of column names.
        return cast(list[Mapping[str, Any]], await driver.fetch(self.sql, *self.args(params)))

    async def fetchrow(self, executor: Executor, params: Mapping[str, object]) -> Mapping[str, Any] | None:
        """The first row, or None."""
        driver = await driver_of(executor)
        return cast(Mapping[str, Any] | None, await driver.fetchrow(self.sql, *self.args(params)))

    async def execute(self, executor: Executor, params: Mapping[str, object]) -> None:
        """Run for effect."""
        driver = await driver_of(executor)
        await driver.execute(self.sql, *self.args(params))

    async def executemany(self, executor: Executor, rows: Sequence[Mapping[str, object]]) -> None:
        """Run once per parameter set (one round trip)."""
        driver = await driver_of(executor)
        await driver.executemany(self.sql, [self.args(row) for row in rows])
