"""Prometheus metrics every service shares, and the job that refreshes the sampled ones.

Names, labels and example alerts: docs/operations.md. Counters on hot paths are a
label lookup and an increment; what needs a query (the outbox backlog, JetStream
consumer lag) is sampled by `MetricsRefresher` every `METRICS_REFRESH_INTERVAL_S`,
never on a request. No label ever holds an id: every label has a handful of values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import Counter, Gauge

from libs.common.logging import get_logger

__all__ = [
    "CONSUMER_ACK_PENDING",
    "CONSUMER_PENDING",
    "CONSUMER_REDELIVERED",
    "OUTBOX_BACKLOG_ROWS",
    "OUTBOX_OLDEST_AGE",
    "OUTBOX_PUBLISHED",
    "OUTBOX_PUBLISH_FAILURES",
    "REFRESH_FAILURES",
    "ConsumerRef",
    "MetricsRefresher",
    "observe_consumer",
]

_log = get_logger(__name__)

OUTBOX_BACKLOG_ROWS = Gauge(
    "agentmgr_outbox_backlog_rows", "Outbox rows (events and jobs) not yet published", ["service"]
)
OUTBOX_OLDEST_AGE = Gauge(
    "agentmgr_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row; 0 when the outbox is empty",
    ["service"],
)
OUTBOX_PUBLISHED = Counter(
    "agentmgr_outbox_published_total", "Outbox messages JetStream acknowledged", ["service"]
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "agentmgr_outbox_publish_failures_total",
    "Relay rounds that failed to publish (the rows stay in the outbox and are retried)",
    ["service"],
)
CONSUMER_PENDING = Gauge(
    "agentmgr_jetstream_consumer_pending_messages",
    "Messages in the stream not yet delivered to the consumer (num_pending)",
    ["stream", "consumer"],
)
CONSUMER_ACK_PENDING = Gauge(
    "agentmgr_jetstream_consumer_ack_pending_messages",
    "Messages delivered to the consumer and not yet acknowledged (num_ack_pending)",
    ["stream", "consumer"],
)
CONSUMER_REDELIVERED = Gauge(
    "agentmgr_jetstream_consumer_redelivered_messages",
    "Messages delivered more than once and not yet acknowledged (num_redelivered)",
    ["stream", "consumer"],
)
REFRESH_FAILURES = Counter(
    "agentmgr_metrics_refresh_failures_total",
    "Samples that could not be taken (the gauge keeps its last value)",
    ["source"],
)


@dataclass(frozen=True, slots=True)
class ConsumerRef:
    """A durable JetStream consumer whose lag a service reports."""

    stream: str
    consumer: str


async def observe_consumer(js: JetStreamContext, ref: ConsumerRef, *, label: str | None = None) -> None:
    """Sample one consumer's lag into the consumer gauges (absent consumer: left alone)."""
    try:
        info = await js.consumer_info(ref.stream, ref.consumer, timeout=2.0)
    except NotFoundError:
        return  # not created yet: its worker creates it when it starts
    name = label or ref.consumer
    CONSUMER_PENDING.labels(ref.stream, name).set(info.num_pending or 0)
    CONSUMER_ACK_PENDING.labels(ref.stream, name).set(info.num_ack_pending or 0)
    CONSUMER_REDELIVERED.labels(ref.stream, name).set(info.num_redelivered or 0)


Backlog = Callable[[], Awaitable[tuple[int, float]]]


class MetricsRefresher:
    """Samples the outbox backlog and consumer lag of one service, periodically."""

    def __init__(
        self,
        *,
        service: str,
        interval_s: float,
        backlog: Backlog | None,
        js: JetStreamContext | None,
        consumers: list[ConsumerRef],
    ) -> None:
        self._service = service
        self._interval_s = interval_s
        self._backlog = backlog
        self._js = js
        self._consumers = consumers
        """Shared with the owner, which may add consumers after this job started."""

    async def run(self) -> None:
        """Refresh until cancelled."""
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval_s)

    async def refresh(self) -> None:
        """Take every sample once; a failed sample is counted and skipped."""
        if self._backlog is not None:
            try:
                rows, age = await self._backlog()
            except Exception as exc:  # database unavailable: readiness reports it; keep sampling
                REFRESH_FAILURES.labels("outbox").inc()
                _log.debug("outbox_backlog_sample_failed", error=type(exc).__name__)
            else:
                OUTBOX_BACKLOG_ROWS.labels(self._service).set(rows)
                OUTBOX_OLDEST_AGE.labels(self._service).set(age)
        if self._js is not None:
            for ref in list(self._consumers):
                try:
                    await observe_consumer(self._js, ref)
                except Exception as exc:  # NATS unavailable or slow: next round
                    REFRESH_FAILURES.labels("jetstream").inc()
                    _log.debug("consumer_lag_sample_failed", consumer=ref.consumer, error=type(exc).__name__)
