"""Async SQLAlchemy plumbing: one engine per process, connections in transactions.

Repositories use SQLAlchemy Core (not the ORM) on purpose: the hot paths are single
statements and the ORM's unit of work would cost more than the query.
"""

from __future__ import annotations

from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["create_engine", "is_unavailable", "normalize_url"]


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
