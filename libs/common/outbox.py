"""The transactional outbox and its relay to JetStream (DESIGN §3, "Events").

A change and its events commit together: the domain inserts event rows into its
service's `outbox` table in the same transaction as the change (or, on the hottest
paths, in the same statement: `OutboxWrite`). JetStream drops a second message with the
same `Nats-Msg-Id` (= the event id) within its duplicate window, so publishing a row
twice is harmless and the relay is at-least-once without ever losing a row.

The relay has two paths:

- **Fresh messages, from memory.** After its commit the writer hands the messages to
  `Outbox.committed()`; the relay of the same process publishes them in commit order,
  batched, and deletes the rows JetStream acknowledged in one statement every
  `delete_interval_s` (100 ms, far inside `claim_after_s`). No row is read back, which
  is what keeps an event at a fraction of a millisecond. It publishes at the first lull
  in the process's calls (`Activity`): the call that committed answers its caller
  first and publishing costs no caller any time, on a busy process after `linger_s`
  (20 ms) at the latest, with what committed meanwhile in the same batch.
- **Stale rows, from the table.** Every `poll_interval_s` the relay claims rows older
  than `claim_after_s` with `FOR UPDATE SKIP LOCKED` (so several replicas never hold
  the same row), publishes and deletes them: rows of a process that crashed between
  commit and publish, of a process without a relay, or of a publish that failed. After
  a failed publish the relay stops the memory path and drains the table in sequence
  order until it is empty, so an outage does not reorder a resource's events.

Order: one process publishes in commit order; rows of different replicas may
interleave, so consumers order by the resource's own version or `update_time` rather
than by arrival (the gateway does).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
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
from sqlalchemy.sql.expression import ClauseElement

from libs.common.activity import Activity
from libs.common.clock import rfc3339, utcnow
from libs.common.db import Executor, FastQuery, driver_connection, driver_of, driver_transaction
from libs.common.logging import get_logger
from libs.common.messaging import EVENTS_SUBJECT_PREFIX
from libs.common.metrics import OUTBOX_PUBLISH_FAILURES, OUTBOX_PUBLISHED

__all__ = ["Outbox", "OutboxMessage", "OutboxRelay", "OutboxWrite", "outbox_table"]

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

    def __init__(self, table: Table, *, source: str, max_pending: int = 100_000) -> None:
        self._table = table
        self._source = source
        self._wake = asyncio.Event()
        self._pending: deque[OutboxMessage] = deque()
        self._max_pending = max_pending
        self._fast_insert = FastQuery(
            insert(table).values(
                id=bindparam("id"), subject=bindparam("subject"), payload=bindparam("payload")
            )
        )

    @property
    def table(self) -> Table:
        """The outbox table this outbox writes."""
        return self._table

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

    async def add(
        self, connection: AsyncConnection | asyncpg.Connection, *messages: OutboxMessage
    ) -> tuple[OutboxMessage, ...]:
        """Insert messages in the caller's transaction; pass them to `committed()` after commit.

        `connection` is a SQLAlchemy connection in a transaction, or the asyncpg
        connection of a `driver_transaction` (the hot path).
        """
        if messages:
            rows = [{"id": m.id, "subject": m.subject, "payload": m.payload} for m in messages]
            if isinstance(connection, asyncpg.Connection):
                await self._fast_insert.executemany(connection, rows)
            else:
                await connection.execute(insert(self._table), rows)
        return messages

    def committed(self, *messages: OutboxMessage) -> None:
        """Hand committed messages to this process's relay (others find them by polling).

        Only after the commit: a rolled-back message must never be published. When the
        relay cannot keep up, messages beyond `max_pending` are left to the table sweep.
        """
        if messages and len(self._pending) < self._max_pending:
            self._pending.extend(messages)
            self._wake.set()

    def take(self, limit: int) -> list[OutboxMessage]:
        """Up to `limit` committed messages, oldest first (for the relay)."""
        pending = self._pending
        return [pending.popleft() for _ in range(min(limit, len(pending)))]


class OutboxWrite:
    """One statement that makes a change and adds its messages: atomic without BEGIN/COMMIT.

    `change` is an INSERT/UPDATE/DELETE with a RETURNING clause; the messages are
    inserted only when it returned a row (`WITH change AS (...) INSERT ... WHERE EXISTS`),
    in one round trip and one implicit transaction. Used on the run hot path, where the
    BEGIN and COMMIT round trips of a `driver_transaction` cost more than the statement.
    """

    def __init__(self, change: ClauseElement, outbox: Outbox) -> None:
        self._change = FastQuery(change)
        n = len(self._change.names)
        table = outbox.table
        target = f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'
        self.sql = (
            f"WITH change AS ({self._change.sql}) "
            f"INSERT INTO {target} (id, subject, payload) "
            f"SELECT m.id, m.subject, m.payload "
            f"FROM unnest(${n + 1}::text[], ${n + 2}::text[], ${n + 3}::bytea[]) "
            f"WITH ORDINALITY AS m(id, subject, payload, ord) "
            f"WHERE EXISTS (SELECT 1 FROM change) ORDER BY m.ord RETURNING 1"
        )

    async def execute(
        self, executor: Executor, params: Mapping[str, object], messages: Sequence[OutboxMessage]
    ) -> bool:
        """Run; False when the change touched no row (then no message was added)."""
        assert messages, "an OutboxWrite adds at least one message"
        args = [
            *self._change.args(params),
            [m.id for m in messages],
            [m.subject for m in messages],
            [m.payload for m in messages],
        ]
        driver = await driver_of(executor)
        return bool(await driver.fetch(self.sql, *args))


class OutboxRelay:
    """Publishes outbox messages to JetStream; run one per process (safe with many)."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        table: Table,
        js: JetStreamContext,
        outbox: Outbox | None = None,
        poll_interval_s: float = 1.0,
        claim_after_s: float = 2.0,
        batch_size: int = 256,
        publish_timeout_s: float = 5.0,
        linger_s: float = 0.02,
        delete_interval_s: float = 0.1,
        activity: Activity | None = None,
        service: str = "",
    ) -> None:
        self._engine = engine
        self._table = table
        self._js = js
        self._outbox = outbox
        self._poll_interval_s = poll_interval_s
        self._claim_after = dt.timedelta(seconds=claim_after_s)
        self._batch_size = batch_size
        self._publish_timeout_s = publish_timeout_s
        self._linger_s = linger_s
        self._activity = activity or Activity()
        self._delete_interval_s = min(delete_interval_s, claim_after_s / 4)
        self._published_ids: list[str] = []
        self._delete_wake = asyncio.Event()
        self._degraded = False
        self._published = OUTBOX_PUBLISHED.labels(service)
        self._publish_failures = OUTBOX_PUBLISH_FAILURES.labels(service)
        self._claim = FastQuery(
            select(table.c.seq, table.c.id, table.c.subject, table.c.payload)
            .where(table.c.created_at <= bindparam("before"))
            .order_by(table.c.seq)
            .limit(bindparam("limit"))
            .with_for_update(skip_locked=True)
        )
        self._delete_seqs = FastQuery(delete(table).where(table.c.seq == func.any(bindparam("seqs"))))
        self._delete_ids = FastQuery(delete(table).where(table.c.id == func.any(bindparam("ids"))))
        self._backlog = FastQuery(
            select(func.count().label("rows"), func.min(table.c.created_at).label("oldest"))
        )

    async def run(self) -> None:
        """Relay until cancelled; back off while NATS or PostgreSQL is unavailable."""
        async with asyncio.TaskGroup() as group:
            if self._outbox is not None:
                group.create_task(self._relay_fresh(self._outbox))
                group.create_task(self._delete_published())
            group.create_task(self._sweep())

    async def _relay_fresh(self, outbox: Outbox) -> None:
        while True:
            await outbox.wake.wait()
            # Publish once the calls being served (the one that committed among them) have
            # answered; messages committed meanwhile share the batch (one flush, one delete).
            await self._activity.lull(self._linger_s)
            batch = outbox.take(self._batch_size)
            if not batch:
                outbox.wake.clear()
                continue
            if self._degraded:
                continue  # the sweep publishes everything from the table, in order
            try:
                acked = await self._publish(batch)
                if acked:
                    self._published.inc(len(acked))
                    self._published_ids.extend(m.id for m in acked)
                    self._delete_wake.set()
                if len(acked) < len(batch):
                    raise ConnectionError(f"JetStream acknowledged {len(acked)} of {len(batch)} messages")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the rows are still in the table: the sweep takes over
                self._degraded = True
                self._publish_failures.inc()
                _log.warning("outbox_publish_failed", error=type(exc).__name__)

    async def _delete_published(self) -> None:
        """Delete the rows of published messages, batched every `delete_interval_s`.

        Well within `claim_after_s`, so the sweep does not publish them again (and if it
        did, JetStream would drop the duplicate). Rows left at a crash are swept the same way.
        """
        try:
            while True:
                await self._delete_wake.wait()
                await asyncio.sleep(self._delete_interval_s)
                self._delete_wake.clear()
                await self._delete_now()
        finally:  # stopping: what was published goes now, not to a later sweep
            if self._published_ids:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    async with asyncio.timeout(1.0):
                        await self._delete_now()

    async def _delete_now(self) -> None:
        ids, self._published_ids = self._published_ids, []
        try:
            async with driver_connection(self._engine) as connection:
                await self._delete_ids.execute(connection, {"ids": ids})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the sweep publishes them again (a duplicate JetStream drops)
            _log.warning("outbox_delete_failed", error=type(exc).__name__, rows=len(ids))

    async def _sweep(self) -> None:
        failures = 0
        while True:
            try:
                claim_after = dt.timedelta(0) if self._degraded else self._claim_after
                while await self.relay_batch(claim_after=claim_after) == self._batch_size:
                    pass
                if self._degraded:
                    # Drained: what the memory path queued meanwhile is in the table and gone.
                    self._degraded = False
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep relaying whatever broke; the rows wait in the table
                failures += 1
                self._publish_failures.inc()
                self._degraded = True
                _log.warning("outbox_relay_failed", error=type(exc).__name__, failures=failures)
                await asyncio.sleep(min(0.2 * 2**failures, 5.0))
                continue
            await asyncio.sleep(self._poll_interval_s)

    async def _publish(self, messages: Sequence[OutboxMessage]) -> list[OutboxMessage]:
        """Publish in order; the messages JetStream acknowledged in time."""
        futures = [
            await self._js.publish_async(m.subject, m.payload, headers={"Nats-Msg-Id": m.id})
            for m in messages
        ]
        done, pending = await asyncio.wait(futures, timeout=self._publish_timeout_s)
        for future in pending:
            future.cancel()
        return [
            message
            for message, future in zip(messages, futures, strict=True)
            if future in done and future.exception() is None
        ]

    async def relay_batch(self, *, claim_after: dt.timedelta = dt.timedelta(0)) -> int:
        """Publish one batch of claimed rows older than `claim_after`; returns how many."""
        async with driver_transaction(self._engine) as connection:
            rows = await self._claim.fetch(
                connection, {"before": utcnow() - claim_after, "limit": self._batch_size}
            )
            if not rows:
                return 0
            messages = [OutboxMessage(row["id"], row["subject"], bytes(row["payload"])) for row in rows]
            acked = {m.id for m in await self._publish(messages)}
            seqs = [row["seq"] for row in rows if row["id"] in acked]
            self._published.inc(len(seqs))
            if seqs:
                await self._delete_seqs.execute(connection, {"seqs": seqs})
        if len(seqs) < len(rows):
            raise ConnectionError(f"JetStream acknowledged {len(seqs)} of {len(rows)} messages")
        return len(seqs)

    async def backlog(self) -> tuple[int, float]:
        """Unpublished rows and the age in seconds of the oldest one."""
        async with self._engine.connect() as connection:
            row = await self._backlog.fetchrow(connection, {})
        assert row is not None
        oldest = row["oldest"]
        age = (utcnow() - oldest).total_seconds() if oldest is not None else 0.0
        return int(row["rows"]), max(age, 0.0)
