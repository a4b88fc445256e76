"""provider_svc's tables and every SQL statement it runs (schema `provider_svc`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    RowMapping,
    Table,
    Text,
    UniqueConstraint,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.db import Executor, FastQuery
from libs.common.errors import AlreadyExists
from libs.common.outbox import outbox_table
from services.provider_svc.domain import (
    Provider,
    ProviderType,
    Validation,
    ValidationStatus,
)

__all__ = ["SCHEMA", "ProviderRepository", "StoredCredential", "metadata", "outbox", "providers"]

SCHEMA = "provider_svc"
metadata = MetaData(schema=SCHEMA)

providers = Table(
    "providers",
    metadata,
    Column("id", Text, primary_key=True),
    Column("project", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("base_url", Text, nullable=False, server_default=""),
    Column("config", JSONB, nullable=False, server_default="{}"),
    Column("api_key_ciphertext", LargeBinary, nullable=True),
    Column("api_key_fingerprint", Text, nullable=True),
    Column("api_key_hint", Text, nullable=False, server_default=""),
    Column("validation_status", Text, nullable=False),
    Column("validation_detail", Text, nullable=False, server_default=""),
    Column("validation_checked_at", DateTime(timezone=True), nullable=True),
    Column("validation_models", JSONB, nullable=False, server_default="[]"),
    Column("next_check_at", DateTime(timezone=True), nullable=True),
    Column("validate_requested_at", DateTime(timezone=True), nullable=True),
    Column("revision", Integer, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    Column("create_request_id", Text, nullable=True),
    Column("create_request_hash", Text, nullable=True),
    UniqueConstraint("project", "name", name="providers_project_name_key"),
    UniqueConstraint("project", "create_request_id", name="providers_project_request_id_key"),
    Index("providers_next_check_idx", "next_check_at", postgresql_where="next_check_at IS NOT NULL"),
    Index("providers_key_fingerprint_idx", "api_key_fingerprint"),
)

outbox = outbox_table(metadata, schema=SCHEMA)

_PUBLIC_COLUMNS = (
    providers.c.id,
    providers.c.project,
    providers.c.name,
    providers.c.type,
    providers.c.base_url,
    providers.c.config,
    providers.c.api_key_hint,
    providers.c.validation_status,
    providers.c.validation_detail,
    providers.c.validation_checked_at,
    providers.c.validation_models,
    providers.c.revision,
    providers.c.create_time,
    providers.c.update_time,
)


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """A provider together with its encrypted key."""

    provider: Provider
    """The provider."""
    ciphertext: bytes | None
    """The Fernet token of the key, None when no key is stored."""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What was recorded about the create request that made a provider."""

    provider: Provider
    """The provider that request created."""
    request_hash: str
    """Fingerprint of that request."""


_GET = FastQuery(select(*_PUBLIC_COLUMNS).where(providers.c.id == bindparam("id")))
_GET_WITH_CREDENTIAL = FastQuery(
    select(*_PUBLIC_COLUMNS, providers.c.api_key_ciphertext).where(providers.c.id == bindparam("id"))
)
_LIST_CACHE: dict[tuple[bool, bool, bool, bool], FastQuery] = {}


def _list_query(*, project: bool, type_: bool, status: bool, after: bool) -> FastQuery:
    key = (project, type_, status, after)
    query = _LIST_CACHE.get(key)
    if query is None:
        conditions = []
        if project:
            conditions.append(providers.c.project == bindparam("project"))
        if type_:
            conditions.append(providers.c.type == bindparam("type"))
        if status:
            conditions.append(providers.c.validation_status == bindparam("status"))
        if after:
            conditions.append(
                tuple_(providers.c.project, providers.c.name)
                > tuple_(bindparam("after_project"), bindparam("after_name"))
            )
        query = FastQuery(
            select(*_PUBLIC_COLUMNS)
            .where(and_(True, *conditions))
            .order_by(providers.c.project, providers.c.name)
            .limit(bindparam("limit"))
        )
        _LIST_CACHE[key] = query
    return query


def _to_provider(m: RowMapping | Mapping[str, Any]) -> Provider:
    return Provider(
        id=m["id"],
        project=m["project"],
        name=m["name"],
        type=ProviderType(m["type"]),
        base_url=m["base_url"],
        config=dict(m["config"]),
        api_key_hint=m["api_key_hint"],
        validation=Validation(
            status=ValidationStatus(m["validation_status"]),
            detail=m["validation_detail"],
            checked_time=m["validation_checked_at"],
            models=tuple(m["validation_models"]),
        ),
        create_time=m["create_time"],
        update_time=m["update_time"],
        revision=m["revision"],
    )


def _validation_values(validation: Validation) -> dict[str, object]:
    return {
        "validation_status": validation.status.value,
        "validation_detail": validation.detail,
        "validation_checked_at": validation.checked_time,
        "validation_models": list(validation.models),
    }


class ProviderRepository:
    """SQL for providers; every method runs in the caller's transaction."""

    async def insert(
        self,
        conn: AsyncConnection,
        provider: Provider,
        *,
        ciphertext: bytes | None,
        key_fingerprint: str | None,
        request_id: str | None,
        request_hash: str | None,
        validate_requested_at: dt.datetime | None,
    ) -> bool:
        """Insert; False when the request_id was used already (a racing retry).

        ALREADY_EXISTS when the name is taken in the project. `ON CONFLICT DO NOTHING`
        detects both without a savepoint (two round trips fewer than catching the error).
        """
        values: dict[str, object] = {
            "id": provider.id,
            "project": provider.project,
            "name": provider.name,
            "type": provider.type.value,
            "base_url": provider.base_url,
            "config": provider.config,
            "api_key_ciphertext": ciphertext,
            "api_key_fingerprint": key_fingerprint,
            "api_key_hint": provider.api_key_hint,
            "revision": provider.revision,
            "create_time": provider.create_time,
            "update_time": provider.update_time,
            "create_request_id": request_id,
            "create_request_hash": request_hash,
            "validate_requested_at": validate_requested_at,
            **_validation_values(provider.validation),
        }
        inserted = (
            await conn.execute(
                pg_insert(providers).values(**values).on_conflict_do_nothing().returning(providers.c.id)
            )
        ).first()
        if inserted is not None:
            return True
        if request_id is not None and await self.find_by_request_id(
            conn, project=provider.project, request_id=request_id
        ):
            return False
        raise AlreadyExists(
            f"a provider named '{provider.name}' already exists in project '{provider.project}'"
        )

    async def find_by_request_id(
        self, conn: AsyncConnection, *, project: str, request_id: str
    ) -> RequestRecord | None:
        """The provider an earlier create with this request_id made, if any."""
        row = (
            await conn.execute(
                select(*_PUBLIC_COLUMNS, providers.c.create_request_hash).where(
                    providers.c.project == project, providers.c.create_request_id == request_id
                )
            )
        ).first()
        if row is None:
            return None
        return RequestRecord(provider=_to_provider(row._mapping), request_hash=row.create_request_hash or "")

    async def get(self, conn: Executor, provider_id: str, *, for_update: bool = False) -> Provider | None:
        """One provider, optionally locked for the rest of the transaction (`conn` is then SQLAlchemy's)."""
        if not for_update:
            found = await _GET.fetchrow(conn, {"id": provider_id})
            return None if found is None else _to_provider(found)
        assert isinstance(conn, AsyncConnection), "a locking read runs in a SQLAlchemy transaction"
        query = select(*_PUBLIC_COLUMNS).where(providers.c.id == provider_id).with_for_update()
        row = (await conn.execute(query)).first()
        return None if row is None else _to_provider(row._mapping)

    async def get_with_credential(
        self, conn: AsyncConnection, provider_id: str, *, for_update: bool = False
    ) -> StoredCredential | None:
        """A provider and its encrypted key."""
        row: RowMapping | Mapping[str, Any] | None
        if for_update:
            query = select(*_PUBLIC_COLUMNS, providers.c.api_key_ciphertext).where(
                providers.c.id == provider_id
            )
            result = (await conn.execute(query.with_for_update())).first()
            row = None if result is None else result._mapping
        else:
            row = await _GET_WITH_CREDENTIAL.fetchrow(conn, {"id": provider_id})
        if row is None:
            return None
        ciphertext = cast("bytes | None", row["api_key_ciphertext"])
        return StoredCredential(
            provider=_to_provider(row), ciphertext=bytes(ciphertext) if ciphertext else None
        )

    async def list_page(
        self,
        conn: AsyncConnection,
        *,
        project: str | None,
        type_: ProviderType | None,
        status: ValidationStatus | None,
        after: tuple[str, str] | None,
        limit: int,
    ) -> list[Provider]:
        """A page ordered by (project, name), after the given position."""
        query = _list_query(
            project=project is not None,
            type_=type_ is not None,
            status=status is not None,
            after=after is not None,
        )
        params: dict[str, object] = {
            "project": project,
            "type": type_.value if type_ is not None else None,
            "status": status.value if status is not None else None,
            "after_project": after[0] if after else None,
            "after_name": after[1] if after else None,
            "limit": limit,
        }
        return [_to_provider(row) for row in await query.fetch(conn, params)]

    async def update(
        self,
        conn: AsyncConnection,
        provider: Provider,
        *,
        validate_requested_at: dt.datetime | None = None,
    ) -> None:
        """Write a provider's configuration (not its key: see `set_credential`)."""
        values: dict[str, object] = {
            "name": provider.name,
            "type": provider.type.value,
            "base_url": provider.base_url,
            "config": provider.config,
            "api_key_hint": provider.api_key_hint,
            "revision": provider.revision,
            "update_time": provider.update_time,
            **_validation_values(provider.validation),
        }
        if validate_requested_at is not None:
            values["validate_requested_at"] = validate_requested_at
        try:
            async with conn.begin_nested():
                await conn.execute(update(providers).where(providers.c.id == provider.id).values(**values))
        except IntegrityError as exc:
            if "providers_project_name_key" in str(exc.orig):
                raise AlreadyExists(
                    f"a provider named '{provider.name}' already exists in project '{provider.project}'"
                ) from None
            raise

    async def set_credential(
        self,
        conn: AsyncConnection,
        provider_id: str,
        *,
        ciphertext: bytes | None,
        key_fingerprint: str | None,
    ) -> None:
        """Store (or, with None, clear) a provider's encrypted key."""
        await conn.execute(
            update(providers)
            .where(providers.c.id == provider_id)
            .values(api_key_ciphertext=ciphertext, api_key_fingerprint=key_fingerprint)
        )

    async def delete(self, conn: AsyncConnection, provider_id: str) -> None:
        """Remove a provider and its encrypted key."""
        await conn.execute(delete(providers).where(providers.c.id == provider_id))

    async def set_validation(
        self,
        conn: AsyncConnection,
        provider_id: str,
        validation: Validation,
        *,
        next_check_at: dt.datetime | None,
    ) -> None:
        """Store a validation outcome and when to check again."""
        await conn.execute(
            update(providers)
            .where(providers.c.id == provider_id)
            .values(**_validation_values(validation), next_check_at=next_check_at)
        )

    async def claim_validation_slot(
        self, conn: AsyncConnection, provider_id: str, *, now: dt.datetime, min_interval_s: float
    ) -> float | None:
        """Reserve a validation for the provider: None if granted, else seconds to wait."""
        row = (
            await conn.execute(select(providers.c.validate_requested_at).where(providers.c.id == provider_id))
        ).first()
        last = row.validate_requested_at if row is not None else None
        if last is not None:
            waited = (now - last).total_seconds()  # type: float
            if waited < min_interval_s:
                return min_interval_s - waited
        await conn.execute(
            update(providers).where(providers.c.id == provider_id).values(validate_requested_at=now)
        )
        return None

    async def claim_due_rechecks(
        self, conn: AsyncConnection, *, now: dt.datetime, limit: int
    ) -> list[tuple[str, int]]:
        """Providers whose re-check is due, claimed by clearing `next_check_at`."""
        due = (
            select(providers.c.id)
            .where(providers.c.next_check_at <= now)
            .order_by(providers.c.next_check_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        rows = await conn.execute(
            update(providers)
            .where(providers.c.id.in_(due))
            .values(next_check_at=None, validate_requested_at=now)
            .returning(providers.c.id, providers.c.revision)
        )
        return [(row.id, row.revision) for row in rows.all()]

    async def claim_unrotated(
        self, conn: AsyncConnection, *, primary_fingerprint: str, limit: int
    ) -> list[tuple[str, bytes, str]]:
        """Rows whose key was encrypted with another key than the primary, locked."""
        rows = await conn.execute(
            select(providers.c.id, providers.c.api_key_ciphertext, providers.c.api_key_fingerprint)
            .where(
                providers.c.api_key_ciphertext.is_not(None),
                or_(
                    providers.c.api_key_fingerprint.is_(None),
                    providers.c.api_key_fingerprint != primary_fingerprint,
                ),
            )
            .order_by(providers.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [(row.id, bytes(row.api_key_ciphertext), row.api_key_fingerprint or "") for row in rows.all()]

    async def store_rotated(
        self, conn: AsyncConnection, provider_id: str, *, ciphertext: bytes, key_fingerprint: str
    ) -> None:
        """Replace a ciphertext with its re-encryption (same plaintext, same revision)."""
        await conn.execute(
            update(providers)
            .where(providers.c.id == provider_id)
            .values(api_key_ciphertext=ciphertext, api_key_fingerprint=key_fingerprint)
        )

    async def count_by_fingerprint(self, conn: AsyncConnection) -> dict[str, int]:
        """How many stored keys each configured key encrypted."""
        rows = await conn.execute(
            select(providers.c.api_key_fingerprint, func.count())
            .where(providers.c.api_key_ciphertext.is_not(None))
            .group_by(providers.c.api_key_fingerprint)
        )
        return {str(row[0]): int(row[1]) for row in rows.all()}

    async def ids(self, conn: AsyncConnection) -> Sequence[str]:
        """Every provider id (tests and tooling)."""
        return list((await conn.execute(select(providers.c.id))).scalars().all())
