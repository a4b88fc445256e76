"""The transactional outbox and its relay to JetStream (DESIGN §3, "Events").

A change and its events commit together: the domain inserts event rows into its
service's `outbox` table in the same transaction as the change. The relay publishes
rows to JetStream with `Nats-Msg-Id` = the event id and deletes them once JetStream has
acknowledged them. If the process crashes between commit and publish, or NATS is
down, the rows wait; if it crashes after publishing but before deleting, the row is
published again and JetStream drops the duplicate. Several replicas relay at once:
each claims a batch with `FOR UPDATE SKIP LOCKED`, so no row is held by two relays.

Order: rows are published in commit-sequence order within a batch; two replicas'
batches may interleave, so consumers order by the resource's own version or
`update_time` rather than by arrival (the gateway does).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg
from nats.js import JetStreamContext
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    LargeBinary,
    MetaData,
    Table,
    Text,
    bindparam,
    delete,
    func,
    insert,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.common.clock import rfc3339, utcnow
from libs.common.db import FastQuery
from libs.common.logging import get_logger
from libs.common.messaging import EVENTS_SUBJECT_PREFIX

__all__ = ["Outbox", "OutboxMessage", "OutboxRelay", "outbox_table"]

_log = get_logger(__name__)

JsonObject = Mapping[str, object]


def outbox_table(metadata: MetaData, *, schema: str) -> Table:
    """The outbox table of a service, in the service's own schema."""
    return Table(
        "outbox",
        metadata,
        Column("seq", BigInteger, Identity(always=True), primary_key=True),
        Column("id", Text, nullable=False, unique=True),
        Column("subject", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        schema=schema,
    )


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message to publish: an event or a job."""

    id: str
    """Becomes `Nats-Msg-Id`: JetStream drops a second message with the same id."""
    subject: str
    """NATS subject, e.g. `agentmgr.events.providers.created`."""
    payload: bytes
    """JSON body."""


class Outbox:
    """Builds events and jobs and adds them to the current transaction."""

    def __init__(self, table: Table, *, source: str) -> None:
        self._table = table
        self._source = source
        self._wake = asyncio.Event()
        self._fast_insert = FastQuery(
            insert(table).values(
                id=bindparam("id"), subject=bindparam("subject"), payload=bindparam("payload")
            )
        )

    @property
    def wake(self) -> asyncio.Event:
        """Set after a commit that added messages; the relay waits on it."""
        return self._wake

    def event(
        self,
        *,
        collection: str,
        resource: str,
        verb: str,
        resource_id: str,
        project: str,
        actor: str,
        data: JsonObject,
        time: dt.datetime | None = None,
    ) -> OutboxMessage:
        """A CloudEvents-style envelope for a change (see `agentmgr.v1.Event`)."""
        event_id = str(uuid.uuid4())
        envelope = {
            "specversion": "1.0",
            "id": event_id,
            "type": f"agentmgr.{resource}.{verb}",
            "source": self._source,
            "time": rfc3339(time or utcnow()),
            "subject": f"{collection}/{resource_id}",
            "project": project,
            "actor": actor,
            "datacontenttype": "application/json",
            "data": data,
        }
        return OutboxMessage(
            id=event_id,
            subject=f"{EVENTS_SUBJECT_PREFIX}.{collection}.{verb}",
            payload=json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode(),
        )

    @staticmethod
    def job(*, subject: str, body: JsonObject) -> OutboxMessage:
        """A job message for a work-queue stream."""
        return OutboxMessage(
            id=str(uuid.uuid4()),
            subject=subject,
            payload=json.dumps(body, separators=(",", ":")).encode(),
        )

    async def add(self, connection: AsyncConnection | asyncpg.Connection, *messages: OutboxMessage) -> None:
        """Insert messages in the caller's transaction; call `committed()` after commit.

        `connection` is a SQLAlchemy connection in a transaction, or the asyncpg
        connection of a `driver_transaction` (the hot path).
        """
        if not messages:
            return
        rows = [{"id": m.id, "subject": m.subject, "payload": m.payload} for m in messages]
        if isinstance(connection, asyncpg.Connection):
            await self._fast_insert.executemany(connection, rows)
        else:
            await connection.execute(insert(self._table), rows)

    def committed(self) -> None:
        """Tell the local relay there is work (other replicas find it by polling)."""
        self._wake.set()


class OutboxRelay:
    """Publishes outbox rows to JetStream; run one per process (safe with many)."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        table: Table,
        js: JetStreamContext,
        wake: asyncio.Event,
        poll_interval_s: float = 1.0,
        batch_size: int = 256,
        publish_timeout_s: float = 5.0,
    ) -> None:
        self._engine = engine
        self._table = table
        self._js = js
        self._wake = wake
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._publish_timeout_s = publish_timeout_s

    async def run(self) -> None:
        """Relay until cancelled; back off while NATS or PostgreSQL is unavailable."""
        failures = 0
        while True:
            try:
                while await self.relay_batch() == self._batch_size:
                    pass
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep relaying whatever broke; the rows wait in the table
                failures += 1
                _log.warning("outbox_relay_failed", error=type(exc).__name__, failures=failures)
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)

    async def relay_batch(self) -> int:
        """Publish one batch of claimed rows; returns how many were published."""
        table = self._table
        async with self._engine.begin() as connection:
            rows = (
                await connection.execute(
                    select(table.c.seq, table.c.id, table.c.subject, table.c.payload)
                    .order_by(table.c.seq)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            futures = [
                await self._js.publish_async(row.subject, bytes(row.payload), headers={"Nats-Msg-Id": row.id})
                for row in rows
            ]
            done, pending = await asyncio.wait(futures, timeout=self._publish_timeout_s)
            for future in pending:
                future.cancel()
            acked = [
                row.seq
                for row, future in zip(rows, futures, strict=True)
                if future in done and future.exception() is None
            ]
            if acked:
                await connection.execute(delete(table).where(table.c.seq.in_(acked)))
        if len(acked) < len(rows):
            raise ConnectionError(f"JetStream acknowledged {len(acked)} of {len(rows)} messages")
        return len(acked)

    async def backlog(self) -> tuple[int, float]:
        """Unpublished rows and the age in seconds of the oldest one."""
        table = self._table
        async with self._engine.connect() as connection:
            row = (await connection.execute(select(func.count(), func.min(table.c.created_at)))).one()
        oldest = row[1]
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        return int(row[0]), max(age, 0.0)
