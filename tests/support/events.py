"""Reading agentmgr's JetStream streams in tests."""

from __future__ import annotations

import json
from typing import Any

from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from libs.common.messaging import EVENTS_STREAM


async def read_events(js: JetStreamContext, *, subject: str = "agentmgr.events.>") -> list[dict[str, Any]]:
    """Every event now in the events stream matching `subject`, in stream order."""
    info = await js.stream_info(EVENTS_STREAM)
    total = info.state.messages
    if total == 0:
        return []
    sub = await js.subscribe(
        subject,
        stream=EVENTS_STREAM,
        ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
    )
    events: list[dict[str, Any]] = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=1.0)
            except (TimeoutError, Exception) as exc:  # nats TimeoutError: nothing more
                if "Timeout" in type(exc).__name__:
                    break
                raise
            event = json.loads(msg.data)
            event["_subject"] = msg.subject
            event["_msg_id"] = (msg.headers or {}).get("Nats-Msg-Id")
            events.append(event)
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return events
