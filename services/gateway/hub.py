"""Event fan-out to WebSocket and Socket.IO clients (DESIGN §3, "WebSocket").

One `EventHub` per gateway replica follows the JetStream event stream with an ordered
consumer from "new" — every replica sees every event and delivers it to its own
clients. Each event is parsed and serialized once, whatever the number of clients.
A replica follows the stream only while it has clients: the first subscription starts
the consumer (and is acknowledged once it runs, so every event committed after the
acknowledgement arrives), and the consumer stops `unfollow_after_s` after the last
client left. A replica serving only REST calls spends nothing on events — at c=1 an
idle hub cost about 0.3 ms of CPU per run, on the loop that answers it.

Each client is a `Subscriber`: per subscribed topic it keeps the latest pending event
of each resource (a newer state of a resource replaces the older one in place), and a
token bucket lets at most `rate` messages a second leave per topic. The latest state
of every resource therefore always arrives, however fast resources change. A client
that falls so far behind that `max_pending` resources wait for it, or that takes more
than `send_timeout_s` to accept a message, is disconnected — never buffered without
bound. Clients see only events of the projects their key grants; a revoked key's
connection is closed.

Cost per delivered message is what bounds fan-out latency (1,000 clients: the last one
gets an event after 1,000 sends). Each event is framed once for WebSocket clients, and a
client that is idle and within its pace is written to at once from the NATS callback
(`Subscriber` `write_frame`): one socket write, no task switch. The send path carries no
per-message timer: the hub's once-a-second watch disconnects a client whose send has
been waiting longer than `send_timeout_s` (so the limit is honoured within a second),
and metric children are looked up once per topic, not per message.

An event is offered to the clients in rounds of `FAN_OUT_CHUNK` clients per loop turn,
not all in one callback: writing to 1,000 loopback clients takes ~40 ms, and in between
the loop reads NATS and serves requests. A newer state of a resource that arrives during
a round reaches the clients not yet written to in place of the older one; those already
written to get it in the next round (`_Round`). The `created` and `validated` of a `test`
provider usually arrive in one read and go out once; when the second is a read late, it
no longer costs a second full fan-out behind the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from prometheus_client import Counter, Gauge

from libs.common.auth import KeyStore, Principal
from libs.common.errors import DomainError
from libs.common.jsonvalue import JsonObject
from libs.common.logging import get_logger
from libs.common.messaging import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX
from libs.common.metrics import CONSUMER_PENDING, REFRESH_FAILURES
from services.gateway.ws_protocol import FrameWriter, text_frame

__all__ = [
    "FAN_OUT_CHUNK",
    "TOPICS",
    "UNAVAILABLE",
    "EventHub",
    "Outgoing",
    "SlowConsumer",
    "Subscriber",
    "parse_topics",
]

TOPICS = ("providers", "agents", "tasks", "runs")
UNAVAILABLE = "events are unavailable right now (NATS cannot be reached); subscribe again shortly"
_log = get_logger(__name__)

CLIENTS = Gauge("agentmgr_realtime_clients", "Connected real-time clients", ["transport"])
EVENTS_IN = Counter("agentmgr_events_received_total", "Events received from NATS", ["topic"])
EVENTS_OUT = Counter(
    "agentmgr_events_fanned_out_total", "Event messages sent to clients", ["topic", "transport"]
)
DISCONNECTS = Counter(
    "agentmgr_realtime_disconnects_total", "Clients disconnected by the gateway", ["reason"]
)
EVENTS_BUFFERED = Gauge(
    "agentmgr_events_buffered_messages", "Events received from NATS, not yet fanned out to clients"
)
_CONSUMER_LABEL = "gateway-hub"

FAN_OUT_CHUNK = 64
"""Clients offered a round's events per loop turn (a few milliseconds of socket writes)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One event, prepared once for every client."""

    topic: str
    resource: str
    """The event's subject (`providers/prv_…`): the unit of coalescing."""
    project: str
    event: JsonObject
    frame: str
    """`{"type": "event", "topic": …, "event": …}` serialized, for WebSocket clients."""
    wire: bytes
    """`frame` as a complete WebSocket text frame, written as is to every client that can take it."""

    @classmethod
    def of(cls, topic: str, event: JsonObject) -> Outgoing:
        """Prepare `event` (of `topic`) for every client: serialized and framed once."""
        frame = json.dumps({"type": "event", "topic": topic, "event": event}, separators=(",", ":"))
        return cls(
            topic=topic,
            resource=str(event.get("subject", "")),
            project=str(event.get("project", "")),
            event=event,
            frame=frame,
            wire=text_frame(frame.encode()),
        )


class SlowConsumer(Exception):
    """The client cannot keep up."""


def parse_topics(frame: object) -> list[str] | str:
    """The topics of a subscribe/unsubscribe frame, or why they are wrong."""
    topics = frame.get("topics") if isinstance(frame, dict) else None
    if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
        return "'topics' must be a non-empty list of topic names"
    unknown = [t for t in topics if t not in TOPICS]
    if unknown:
        return f"unknown topic '{unknown[0]}'; topics are {', '.join(TOPICS)}"
    return [str(t) for t in topics]


Send = Callable[[Outgoing], Awaitable[None]]


class _Bucket:
    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 when a token was taken, else seconds until one is available."""
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def refund(self) -> None:
        """Give back the token just taken (the message was not sent after all)."""
        self.tokens = min(self.rate, self.tokens + 1)


class Subscriber:
    """One client's subscriptions, pending events and pacing."""

    def __init__(
        self,
        *,
        principal: Principal,
        api_key: str,
        send: Send,
        transport: str,
        rate: float,
        max_pending: int,
        send_timeout_s: float,
        write_frame: FrameWriter | None = None,
    ) -> None:
        """One client; `send` delivers one event the ordinary way.

        `write_frame`, when given, writes an event's prepared frame (`Outgoing.wire`) at
        once, from the hub's callback, if the connection can take it now
        (services/gateway/ws_protocol.py).
        """
        self.principal = principal
        self.api_key = api_key
        self.transport = transport
        self._send = send
        self._write_frame = write_frame
        self._rate = rate
        self._max_pending = max_pending
        self._send_timeout_s = send_timeout_s
        self.topics: set[str] = set()
        self._pending: dict[str, OrderedDict[str, Outgoing]] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._sent: dict[str, Counter] = {}
        self._dirty = False
        """An event was offered since the sender last looked."""
        self._waiter: asyncio.Future[None] | None = None
        """What the idle sender awaits; resolved by `offer` (cheaper than an `asyncio.Event`)."""
        self.closed_reason: str | None = None
        self._sending_since: float | None = None
        """When the send in progress started (monotonic), or None between sends."""
        self._stalled = False
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, topics: list[str]) -> None:
        """Start receiving these topics."""
        for topic in topics:
            self.topics.add(topic)
            self._pending.setdefault(topic, OrderedDict())
            self._buckets.setdefault(topic, _Bucket(self._rate))
            if topic not in self._sent:
                self._sent[topic] = EVENTS_OUT.labels(topic, self.transport)

    def unsubscribe(self, topics: list[str]) -> None:
        """Stop receiving these topics (pending events of them are dropped)."""
        for topic in topics:
            self.topics.discard(topic)
            self._pending.pop(topic, None)

    def offer(self, item: Outgoing) -> None:
        """Queue an event for this client, replacing an older state of the same resource."""
        if item.topic not in self.topics or not self.principal.can_see(item.project):
            return
        if self._write_frame is not None and self._write_at_once(item):
            return
        pending = self._pending[item.topic]
        pending[item.resource] = item  # an existing key keeps its place: fair across resources
        if len(pending) > self._max_pending:
            self.closed_reason = "slow consumer: too many pending events"
        self._dirty = True
        _resolve(self._waiter)

    def _write_at_once(self, item: Outgoing) -> bool:
        """Write `item` now, if nothing is queued or being sent before it and the pace allows.

        The common case (an idle client, well within its rate) then costs one socket write:
        the sender task is not woken. Anything else is queued for the sender task.
        """
        if self._sending_since is not None or self.closed_reason is not None or any(self._pending.values()):
            return False
        bucket = self._buckets[item.topic]
        if bucket.take():
            return False
        assert self._write_frame is not None
        if not self._write_frame(item.wire):
            bucket.refund()
            return False
        self._sent[item.topic].inc()
        return True

    def check_stalled(self, now: float) -> bool:
        """Disconnect this client if one message has waited longer than the send timeout.

        Called by the hub's watch about once a second (`now` is `time.monotonic()`):
        cheaper than a timer around every send, at the price of up to a second's slack.
        """
        since = self._sending_since
        if since is None or now - since <= self._send_timeout_s or self._stalled:
            return False
        self._stalled = True
        self.closed_reason = "slow consumer: a message was not accepted in time"
        if self._task is not None:
            self._task.cancel()
        return True

    async def run(self) -> None:
        """Deliver pending events at the allowed pace until the client is closed."""
        self._task = asyncio.current_task()
        try:
            await self._deliver()
        except asyncio.CancelledError:
            if self._stalled:  # cancelled by `check_stalled`, not by the connection ending
                raise SlowConsumer(self.closed_reason or "slow consumer") from None
            raise
        finally:
            self._task = None

    async def _deliver(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self.closed_reason is not None:
                raise SlowConsumer(self.closed_reason)
            self._dirty = False  # what is offered from here on is seen by this pass or the next
            wait = None
            for topic, pending in list(self._pending.items()):
                while pending:
                    delay = self._buckets[topic].take()
                    if delay:
                        wait = delay if wait is None else min(wait, delay)
                        break
                    _, item = pending.popitem(last=False)
                    self._sending_since = time.monotonic()
                    await self._send(item)
                    self._sending_since = None
                    self._sent[topic].inc()
            if self._dirty:
                continue  # offered while sending (perhaps to a topic already passed)
            waiter = self._waiter = loop.create_future()
            timer = None if wait is None else loop.call_later(wait, _resolve, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()


def _resolve(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


_Key = tuple[str, object]
"""An event's topic and resource: the unit of coalescing in a fan-out."""

_Offer = tuple[Outgoing, frozenset[Subscriber] | None]
"""An event, and the clients that already have it (None: none do)."""


@dataclass(slots=True)
class _Round:
    """One fan-out: its events offered to a snapshot of the clients, `FAN_OUT_CHUNK` per turn."""

    subscribers: list[Subscriber]
    offers: dict[_Key, _Offer]
    """The latest state of each resource, for the clients from `reached` on."""
    reached: int = 0
    """How many of `subscribers` have been offered the events."""


class EventHub:
    """Follows the event stream and offers every event to every subscriber."""

    def __init__(self, *, js: JetStreamContext, keys: KeyStore, unfollow_after_s: float = 60.0) -> None:
        self._js = js
        self._keys = keys
        self._unfollow_after_s = unfollow_after_s
        self.subscribers: set[Subscriber] = set()
        self._revoked: dict[Subscriber, Callable[[], Awaitable[None]]] = {}
        self._subscription: JetStreamContext.PushSubscription | None = None
        self._following = asyncio.Lock()
        self._idle_since = time.monotonic()
        """When the last client left (monotonic)."""
        self._next: dict[_Key, _Offer] = {}
        """Events for the next round, by resource, the latest state kept (in arrival order)."""
        self._round: _Round | None = None
        """The fan-out in progress, if any."""

    def following(self) -> bool:
        """Whether this replica follows the event stream now."""
        return self._subscription is not None

    def add(self, subscriber: Subscriber, on_revoked: Callable[[], Awaitable[None]]) -> None:
        """Register a connected client."""
        self.subscribers.add(subscriber)
        self._revoked[subscriber] = on_revoked
        CLIENTS.labels(subscriber.transport).inc()

    def remove(self, subscriber: Subscriber) -> None:
        """Forget a disconnected client."""
        if subscriber in self.subscribers:
            self.subscribers.discard(subscriber)
            self._revoked.pop(subscriber, None)
            CLIENTS.labels(subscriber.transport).dec()
            if not self.subscribers:
                self._idle_since = time.monotonic()

    async def follow(self) -> bool:
        """Follow the event stream, if not yet; True once the consumer runs.

        Called before a subscription is acknowledged. False when NATS cannot be reached.
        """
        if self._subscription is not None:
            return True
        async with self._following:
            if self._subscription is None:
                try:
                    self._subscription = await self._js.subscribe(
                        f"{EVENTS_SUBJECT_PREFIX}.>",
                        stream=EVENTS_STREAM,
                        cb=self._on_message,
                        ordered_consumer=True,
                        deliver_policy=DeliverPolicy.NEW,
                        pending_msgs_limit=100_000,
                    )
                except Exception as exc:  # NATS unreachable: the client is told, and may retry
                    _log.warning("event_stream_follow_failed", error=type(exc).__name__)
                    return False
        return True

    async def _unfollow(self, *, force: bool = False) -> None:
        """Stop following the stream (no client left, or shutting down)."""
        async with self._following:
            if self.subscribers and not force:
                return  # a client came meanwhile
            subscription, self._subscription = self._subscription, None
            if subscription is not None:
                with contextlib.suppress(Exception):  # NATS may be gone
                    await subscription.unsubscribe()

    def publish(self, subject: str, data: bytes) -> None:
        """Fan one event out, from the end of the loop turn (the NATS callback; also used by tests).

        Events that arrive together — the `created` and `validated` of a `test` provider,
        committed in one transaction and read from one socket read — reach clients as the
        resource's latest state, once: the coalescing each client gets anyway when it is
        paced, done before 1,000 clients are written to twice. One that arrives during a
        round joins it (`_Round`).
        """
        parts = subject.split(".")
        if len(parts) != 4 or parts[2] not in TOPICS:
            return
        if not self.subscribers:  # no client connected to this replica: nothing to prepare
            EVENTS_IN.labels(parts[2]).inc()
            return
        try:
            event = json.loads(data)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        topic = parts[2]
        EVENTS_IN.labels(topic).inc()
        item = Outgoing.of(topic, event)
        key = (topic, item.resource or item.event.get("id"))
        current = self._round
        if current is not None:
            # The clients not reached yet get this state in this round, instead of an older
            # one; everyone else (those reached, and clients that joined since) in the next.
            current.offers[key] = (item, None)
            self._next[key] = (item, frozenset(current.subscribers[current.reached :]))
            return
        if not self._next:
            asyncio.get_running_loop().call_soon(self._start_round)
        self._next[key] = (item, None)

    def _start_round(self) -> None:
        """Offer the events received since the last round to every client, a chunk per turn."""
        if self._round is None and self._next:
            offers, self._next = self._next, {}
            self._round = _Round(list(self.subscribers), offers)
            self._continue_round()

    def _continue_round(self) -> None:
        current = self._round
        assert current is not None
        start, end = current.reached, min(current.reached + FAN_OUT_CHUNK, len(current.subscribers))
        offers = list(current.offers.values())
        connected = self.subscribers
        for subscriber in current.subscribers[start:end]:
            if subscriber in connected:
                for item, have in offers:
                    if have is None or subscriber not in have:
                        subscriber.offer(item)
        current.reached = end
        if end < len(current.subscribers):
            asyncio.get_running_loop().call_soon(self._continue_round)
        else:
            self._round = None
            self._start_round()

    async def _on_message(self, message: Msg) -> None:
        self.publish(message.subject, message.data)

    async def _watch_clients(self) -> None:
        """Every second: drop stalled clients and those whose key was revoked.

        Also stops following the stream once no client has been connected for a while.
        """
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            idle = now - self._idle_since
            if self._subscription is not None and not self.subscribers and idle > self._unfollow_after_s:
                await self._unfollow()
            for subscriber in list(self.subscribers):
                subscriber.check_stalled(now)
                try:
                    self._keys.authenticate(subscriber.api_key)
                except DomainError:
                    close = self._revoked.get(subscriber)
                    if close is not None:
                        DISCONNECTS.labels("revoked").inc()
                        await close()

    async def run(self) -> None:
        """Watch the clients (and follow the stream while there are any) until cancelled."""
        try:
            await self._watch_clients()
        finally:
            await self._unfollow(force=True)

    async def watch_lag(self, interval_s: float) -> None:
        """Sample how far this replica's consumer is behind the stream, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            subscription = self._subscription
            if subscription is None:  # not following: nothing received, nothing behind
                EVENTS_BUFFERED.set(0)
                CONSUMER_PENDING.labels(EVENTS_STREAM, _CONSUMER_LABEL).set(0)
                continue
            EVENTS_BUFFERED.set(subscription.pending_msgs)
            try:
                info = await subscription.consumer_info()
            except Exception:  # NATS unavailable, or the ordered consumer being re-created
                REFRESH_FAILURES.labels("jetstream").inc()
                continue
            CONSUMER_PENDING.labels(EVENTS_STREAM, _CONSUMER_LABEL).set(info.num_pending or 0)
