"""Keeps this replica's caches true to changes made anywhere (DESIGN §4, "registry").

Every agent_svc replica follows the `providers`, `agents` and `tasks` events through
ordered JetStream consumers starting at "new" (an ordered consumer resumes where it
left off after a reconnect, so a NATS blip does not lose an eviction), and evicts:

- a provider change or deletion: its cached credential and every built agent using it;
- an agent or task change or deletion: the built agents of that agent or task.

Runs already executing keep the instance they started with.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from libs.common.logging import get_logger
from libs.common.messaging import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX
from services.agent_svc.providers import ProviderClient
from services.agent_svc.registry import Registry
from services.agent_svc.runs import BuiltAgent, RunKey

__all__ = ["CacheInvalidator"]

_log = get_logger(__name__)


class CacheInvalidator:
    """Evicts credentials and built agents when the events say they changed."""

    def __init__(
        self,
        *,
        js: JetStreamContext,
        registry: Registry[RunKey, BuiltAgent],
        providers: ProviderClient,
        forget_head: Callable[[str, str], None] = lambda collection, resource_id: None,
    ) -> None:
        self._js = js
        self._registry = registry
        self._providers = providers
        self._forget_head = forget_head
        self.evictions = 0

    def apply(self, subject: str, event: dict[str, object]) -> None:
        """Evict what one event invalidates (`subject` is the NATS subject)."""
        parts = subject.split(".")
        if len(parts) != 4:
            return
        collection, verb = parts[2], parts[3]
        resource = str(event.get("subject", ""))
        resource_id = resource.split("/", 1)[1] if "/" in resource else ""
        if not resource_id:
            return
        if collection == "providers" and verb in ("updated", "deleted"):
            self._providers.evict(resource_id)
            self.evictions += self._registry.evict(lambda key: key.provider_id == resource_id)
        elif collection == "agents" and verb in ("updated", "deleted"):
            self._forget_head(collection, resource_id)
            self.evictions += self._registry.evict(lambda key: key.agent_id == resource_id)
        elif collection == "tasks" and verb in ("updated", "deleted"):
            self._forget_head(collection, resource_id)
            self.evictions += self._registry.evict(lambda key: key.task_id == resource_id)

    async def _on_message(self, message: Msg) -> None:
        try:
            event = json.loads(message.data)
        except ValueError:
            return
        if isinstance(event, dict):
            self.apply(message.subject, event)

    async def run(self) -> None:
        """Follow the events until cancelled."""
        subscriptions = []
        try:
            for collection in ("providers", "agents", "tasks"):
                subscriptions.append(
                    await self._js.subscribe(
                        f"{EVENTS_SUBJECT_PREFIX}.{collection}.>",
                        stream=EVENTS_STREAM,
                        cb=self._on_message,
                        ordered_consumer=True,
                        deliver_policy=DeliverPolicy.NEW,
                    )
                )
            await asyncio.Event().wait()
        finally:
            for subscription in subscriptions:
                try:
                    await subscription.unsubscribe()
                except Exception as exc:  # NATS may be gone at shutdown
                    _log.debug("unsubscribe_failed", error=type(exc).__name__)
