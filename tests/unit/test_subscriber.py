"""The live feed's per-client delivery: pacing, coalescing and the send-timeout watch.

The WebSocket and Socket.IO tests (tests/integration/test_realtime.py) drive the same
class through real connections; here the send is a function the test controls, so a
client that never accepts a message is exact and instant.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from libs.common.auth import Principal, Role
from libs.common.jsonvalue import JsonObject
from services.gateway.hub import EVENTS_OUT, FAN_OUT_CHUNK, EventHub, Outgoing, SlowConsumer, Subscriber

pytestmark = pytest.mark.asyncio


def _item(resource: str, version: int, project: str = "default") -> Outgoing:
    event: JsonObject = {"subject": resource, "project": project, "data": {"version": version}}
    return Outgoing.of("providers", event)


def _subscriber(send, *, rate: float = 1000.0, send_timeout_s: float = 5.0, write_frame=None) -> Subscriber:
    subscriber = Subscriber(
        principal=Principal(key_id="key_1", project="default", role=Role.VIEWER),
        api_key="unused",
        send=send,
        transport="test",
        rate=rate,
        max_pending=100,
        send_timeout_s=send_timeout_s,
        write_frame=write_frame,
    )
    subscriber.subscribe(["providers"])
    return subscriber


async def test_delivers_in_order_only_visible_projects_and_counts_what_it_sent():
    sent: list[Outgoing] = []

    async def send(item: Outgoing) -> None:
        sent.append(item)

    subscriber = _subscriber(send)
    counted = EVENTS_OUT.labels("providers", "test")._value.get()
    runner = asyncio.create_task(subscriber.run())
    for i in range(3):
        subscriber.offer(_item(f"providers/prv_{i}", 1))
    subscriber.offer(_item("providers/prv_other", 1, project="other"))
    await asyncio.sleep(0.05)
    assert [s.resource for s in sent] == ["providers/prv_0", "providers/prv_1", "providers/prv_2"]
    assert EVENTS_OUT.labels("providers", "test")._value.get() == counted + 3
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner  # an ordinary cancel (the connection ended) stays a cancel


async def test_a_paced_client_gets_the_latest_state_of_each_resource():
    sent: list[Outgoing] = []

    async def send(item: Outgoing) -> None:
        sent.append(item)

    subscriber = _subscriber(send, rate=1.0)  # one message a second, one token now
    runner = asyncio.create_task(subscriber.run())
    for version in range(1, 6):
        subscriber.offer(_item("providers/prv_hot", version))
        await asyncio.sleep(0)
    await asyncio.sleep(1.3)
    runner.cancel()
    assert [s.event["data"] for s in sent] == [{"version": 1}, {"version": 5}]


async def test_a_send_that_is_never_accepted_disconnects_the_client():
    blocked = asyncio.Event()

    async def send(item: Outgoing) -> None:
        blocked.set()
        await asyncio.Event().wait()  # the client's buffers are full: never accepted

    subscriber = _subscriber(send, send_timeout_s=0.2)
    runner = asyncio.create_task(subscriber.run())
    subscriber.offer(_item("providers/prv_1", 1))
    await asyncio.wait_for(blocked.wait(), 1)
    assert not subscriber.check_stalled(time.monotonic()), "not yet past the timeout"
    await asyncio.sleep(0.25)
    assert subscriber.check_stalled(time.monotonic())
    with pytest.raises(SlowConsumer, match="not accepted in time"):
        await runner
    assert not subscriber.check_stalled(time.monotonic()), "reported once"


async def test_the_hub_watch_finds_stalled_clients():
    """`EventHub`'s once-a-second watch is what calls `check_stalled` in the gateway."""

    class Keys:
        def authenticate(self, key: str) -> Principal:
            return Principal(key_id="key_1", project="default", role=Role.VIEWER)

    async def send(item: Outgoing) -> None:
        await asyncio.Event().wait()

    hub = EventHub(js=None, keys=Keys())  # type: ignore[arg-type]
    subscriber = _subscriber(send, send_timeout_s=0.1)
    hub.add(subscriber, on_revoked=lambda: asyncio.sleep(0))
    runner = asyncio.create_task(subscriber.run())
    hub.publish("agentmgr.events.providers.updated", json.dumps(_item("providers/prv_1", 1).event).encode())
    watch = asyncio.create_task(hub._watch_clients())
    try:
        with pytest.raises(SlowConsumer):
            await asyncio.wait_for(runner, 3)
    finally:
        watch.cancel()
        hub.remove(subscriber)


async def test_an_event_offered_while_another_topic_is_sending_is_not_left_waiting():
    """Offered to a topic the sender already passed, during a send of a later topic: sent
    without waiting for some further event to wake the sender."""
    sent: list[str] = []
    agents_sending = asyncio.Event()
    release = asyncio.Event()

    async def send(item: Outgoing) -> None:
        if item.topic == "agents":
            agents_sending.set()
            await release.wait()
        sent.append(item.resource)

    subscriber = _subscriber(send)
    subscriber.subscribe(["agents"])
    runner = asyncio.create_task(subscriber.run())
    agent = _item("agents/agt_1", 1)
    subscriber.offer(Outgoing.of("agents", agent.event))
    await asyncio.wait_for(agents_sending.wait(), 1)
    subscriber.offer(_item("providers/prv_late", 1))  # "providers" comes first: already passed
    release.set()
    for _ in range(50):
        if "providers/prv_late" in sent:
            break
        await asyncio.sleep(0.01)
    assert sent == ["agents/agt_1", "providers/prv_late"]
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


async def test_the_hub_follows_the_stream_once_and_reports_when_it_cannot():
    """Concurrent first subscriptions start one consumer; NATS unreachable is reported."""

    class Subscription:
        unsubscribed = False

        async def unsubscribe(self) -> None:
            self.unsubscribed = True

    class JetStream:
        def __init__(self, fail: bool) -> None:
            self.fail = fail
            self.calls = 0
            self.made: list[Subscription] = []

        async def subscribe(self, *args: object, **kwargs: object) -> Subscription:
            self.calls += 1
            await asyncio.sleep(0.01)
            if self.fail:
                raise ConnectionError("nats: no servers available")
            self.made.append(Subscription())
            return self.made[-1]

    down = JetStream(fail=True)
    hub = EventHub(js=down, keys=None)  # type: ignore[arg-type]
    assert await hub.follow() is False and not hub.following()
    down.fail = False
    results = await asyncio.gather(*(hub.follow() for _ in range(5)))
    assert results == [True] * 5 and hub.following() and down.calls == 2

    # No client for longer than `unfollow_after_s`: the watch stops following.
    up = JetStream(fail=False)
    idle = EventHub(js=up, keys=None, unfollow_after_s=0.0)  # type: ignore[arg-type]
    assert await idle.follow()
    watch = asyncio.create_task(idle._watch_clients())
    try:
        for _ in range(40):
            if not idle.following():
                break
            await asyncio.sleep(0.1)
        assert not idle.following()
        assert [s.unsubscribed for s in up.made] == [True]
    finally:
        watch.cancel()


async def test_an_idle_client_within_its_pace_is_written_to_at_once_with_the_prepared_frame():
    """No task switch: the frame is on the connection when `offer` returns. What is paced,
    refused by the connection or offered while a send is under way goes the ordinary way."""
    written: list[bytes] = []
    sent: list[str] = []
    accept = True

    def write_frame(frame: bytes) -> bool:
        if accept:
            written.append(frame)
        return accept

    async def send(item: Outgoing) -> None:
        sent.append(item.resource)

    subscriber = _subscriber(send, rate=2.0, write_frame=write_frame)
    counted = EVENTS_OUT.labels("providers", "test")._value.get()
    runner = asyncio.create_task(subscriber.run())
    await asyncio.sleep(0)  # the sender is idle

    first = _item("providers/prv_1", 1)
    subscriber.offer(first)
    assert written == [first.wire] and sent == []
    assert EVENTS_OUT.labels("providers", "test")._value.get() == counted + 1
    # The prepared frame is what a WebSocket client reads: FIN + text opcode, unmasked length, payload.
    payload = first.frame.encode()
    assert len(payload) < 126 and first.wire == bytes((0x81, len(payload))) + payload

    accept = False  # e.g. the socket's buffer is over the high-water mark
    subscriber.offer(_item("providers/prv_2", 1))
    await asyncio.sleep(0.01)
    assert sent == ["providers/prv_2"], "refused: sent by the sender task with the token given back"

    accept = True  # no token left (2 a second, both used): paced, then sent by the task
    subscriber.offer(_item("providers/prv_3", 1))
    subscriber.offer(_item("providers/prv_4", 1))
    assert len(written) == 1
    for _ in range(150):
        if len(sent) == 3:
            break
        await asyncio.sleep(0.02)
    assert sent == ["providers/prv_2", "providers/prv_3", "providers/prv_4"] and len(written) == 1
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


async def test_events_of_one_resource_arriving_together_fan_out_once_as_its_latest_state():
    """A `test` provider's `created` and `validated` come in one read: 1,000 clients get one
    message each, the latest state, not two."""
    written: list[object] = []

    def write_frame(frame: bytes) -> bool:
        event = json.loads(frame[2:])["event"]  # short frames: a two-byte header
        written.append((event["subject"], event["data"]))
        return True

    async def send(item: Outgoing) -> None:
        raise AssertionError("an idle client within its pace is written to at once")

    hub = EventHub(js=None, keys=None)  # type: ignore[arg-type]
    subscriber = _subscriber(send, write_frame=write_frame)
    hub.add(subscriber, on_revoked=lambda: asyncio.sleep(0))
    runner = asyncio.create_task(subscriber.run())
    subject = "agentmgr.events.providers.updated"
    try:
        for resource, version in (("providers/prv_1", 1), ("providers/prv_2", 1), ("providers/prv_1", 2)):
            hub.publish(subject, json.dumps(_item(resource, version).event).encode())
        assert written == [], "fanned out at the end of the loop turn"
        await asyncio.sleep(0)
        assert written == [("providers/prv_1", {"version": 2}), ("providers/prv_2", {"version": 1})]
        hub.publish(subject, json.dumps(_item("providers/prv_1", 3).event).encode())
        await asyncio.sleep(0)
        assert written[2:] == [("providers/prv_1", {"version": 3})], "a later turn's event is its own"
    finally:
        runner.cancel()
        hub.remove(subscriber)


async def test_a_newer_state_arriving_during_a_fan_out_replaces_the_older_for_clients_not_yet_reached():
    """A round offers `FAN_OUT_CHUNK` clients per loop turn. A newer state arriving mid-round
    goes to the clients not reached yet instead of the older one, then to the rest —
    including a client that joined meanwhile — so each gets the latest state, once more at most."""
    hub = EventHub(js=None, keys=None)  # type: ignore[arg-type]
    written: dict[int, list[int]] = {}
    subscribers: list[Subscriber] = []

    async def send(item: Outgoing) -> None:
        raise AssertionError("an idle client within its pace is written to at once")

    def join() -> int:
        number = len(subscribers)
        received = written[number] = []

        def write_frame(frame: bytes) -> bool:
            received.append(json.loads(frame[2:])["event"]["data"]["version"])
            return True

        subscriber = _subscriber(send, write_frame=write_frame)
        subscribers.append(subscriber)
        hub.add(subscriber, on_revoked=lambda: asyncio.sleep(0))
        return number

    clients = 3 * FAN_OUT_CHUNK
    for _ in range(clients):
        join()
    subject = "agentmgr.events.providers.updated"
    try:
        hub.publish(subject, json.dumps(_item("providers/prv_1", 1).event).encode())
        await asyncio.sleep(0)
        reached = {n for n in range(clients) if written[n]}
        assert len(reached) == FAN_OUT_CHUNK, "one chunk per loop turn"
        late = join()
        hub.publish(subject, json.dumps(_item("providers/prv_1", 2).event).encode())
        for _ in range(10):
            await asyncio.sleep(0)
        assert all(written[n] == [1, 2] for n in reached), "reached before: both states"
        assert all(written[n] == [2] for n in set(range(clients)) - reached), "reached after: the latest only"
        assert written[late] == [2], "joined during the round: the state that arrived after it joined"
    finally:
        for subscriber in subscribers:
            hub.remove(subscriber)
