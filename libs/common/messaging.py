"""NATS and JetStream: connection, and the streams and buckets agentmgr relies on.

- `AGENTMGR_EVENTS` (`agentmgr.events.>`): every change, CloudEvents JSON; limits
  retention — it doubles as the audit log. Duplicates (same `Nats-Msg-Id`) within the
  duplicate window are dropped, which makes the outbox relay's at-least-once publish
  exactly-once in the stream.
- `AGENTMGR_JOBS` (`agentmgr.jobs.>`): background work (provider validation); work-queue
  retention, so each job is consumed by exactly one worker.
- KV bucket `agentmgr_api_keys`: API key records, watched by every service.

Every process ensures these exist at start (idempotent), so no install step is needed.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue

from libs.common.logging import get_logger

__all__ = [
    "API_KEYS_BUCKET",
    "EVENTS_STREAM",
    "EVENTS_SUBJECT_PREFIX",
    "JOBS_STREAM",
    "JOBS_SUBJECT_PREFIX",
    "close",
    "connect",
    "ensure_api_key_bucket",
    "ensure_streams",
]

EVENTS_STREAM = "AGENTMGR_EVENTS"
EVENTS_SUBJECT_PREFIX = "agentmgr.events"
JOBS_STREAM = "AGENTMGR_JOBS"
JOBS_SUBJECT_PREFIX = "agentmgr.jobs"
API_KEYS_BUCKET = "agentmgr_api_keys"

_DAY = 24 * 3600.0
_log = get_logger(__name__)


async def close(nc: NatsClient, *, timeout_s: float = 5.0) -> None:
    """Close a connection, giving up after `timeout_s`.

    nats-py's close can wait forever on a transport caught mid-reconnect (a server that
    just restarted); shutdown must not: whatever was unsent is in the outbox or unacked.
    """
    try:
        await asyncio.wait_for(nc.close(), timeout_s)
    except TimeoutError:
        _log.warning("nats_close_timed_out", timeout_s=timeout_s)


async def connect(url: str, *, name: str, connect_timeout_s: float = 30.0) -> NatsClient:
    """Connect, retrying until `connect_timeout_s`; afterwards reconnect forever."""

    async def on_error(exc: Exception) -> None:
        _log.warning("nats_error", error=type(exc).__name__)

    client: list[NatsClient] = []

    async def on_disconnect() -> None:
        # Also called when we close the connection ourselves; only a drop is news.
        if client and not (client[0].is_closed or client[0].is_draining):
            _log.warning("nats_disconnected")

    async def on_reconnect() -> None:
        _log.info("nats_reconnected")

    deadline = asyncio.get_running_loop().time() + connect_timeout_s
    delay = 0.1
    while True:
        try:
            connection = await nats.connect(
                servers=[url],
                name=name,
                connect_timeout=2,
                reconnect_time_wait=1,
                max_reconnect_attempts=-1,
                allow_reconnect=True,
                ping_interval=10,
                max_outstanding_pings=3,
                error_cb=on_error,
                disconnected_cb=on_disconnect,
                reconnected_cb=on_reconnect,
            )
            client.append(connection)
            return connection
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise ConnectionError("NATS is unreachable") from exc
            _log.info("nats_connect_retry", error=type(exc).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        await js.add_stream(config)
    except BadRequestError:
        # Exists with another config (e.g. replicas changed): bring it up to date.
        with contextlib.suppress(BadRequestError):
            await js.update_stream(config)


async def ensure_streams(js: JetStreamContext, *, replicas: int) -> None:
    """Create or update agentmgr's streams."""
    await _ensure_stream(
        js,
        StreamConfig(
            name=EVENTS_STREAM,
            description="agentmgr change events (CloudEvents JSON); the audit log",
            subjects=[f"{EVENTS_SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=90 * _DAY,
            duplicate_window=15 * 60.0,
            num_replicas=replicas,
        ),
    )
    await _ensure_stream(
        js,
        StreamConfig(
            name=JOBS_STREAM,
            description="agentmgr background jobs (work queue)",
            subjects=[f"{JOBS_SUBJECT_PREFIX}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=7 * _DAY,
            duplicate_window=15 * 60.0,
            num_replicas=replicas,
        ),
    )


async def ensure_api_key_bucket(js: JetStreamContext, *, replicas: int) -> KeyValue:
    """The API key bucket, created on first use."""
    try:
        return await js.key_value(API_KEYS_BUCKET)
    except (NotFoundError, nats.js.errors.BucketNotFoundError):
        pass
    with contextlib.suppress(BadRequestError):
        await js.create_key_value(
            KeyValueConfig(
                bucket=API_KEYS_BUCKET,
                description="agentmgr API keys (hashed)",
                history=5,
                storage=StorageType.FILE,
                replicas=replicas,
            )
        )
    return await js.key_value(API_KEYS_BUCKET)
