"""Background validation of providers (DESIGN §5).

- `ProviderProbe` makes the cheapest authenticated call a provider type has (its
  model list; never a paid completion) through the SSRF-guarded client, and maps what
  happened to the closed outcome enum. Only a confirmed 401/403 is `auth_failed`; the
  detail never echoes the upstream body.
- `ValidationWorker` consumes jobs from the JetStream work queue (one durable pull
  consumer shared by every replica, so each job is done once), stores each outcome,
  emits `providers.validated`, and retries transient failures with exponential
  backoff by NAK-with-delay.
- `RecheckScheduler` re-queues providers whose re-check is due, claiming them with
  `FOR UPDATE SKIP LOCKED` so replicas do not queue the same check twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import random
from dataclasses import dataclass, replace

import httpx2
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.clock import utcnow
from libs.common.crypto import DecryptionError, Keyring
from libs.common.logging import get_logger
from libs.common.messaging import JOBS_STREAM
from libs.common.outbox import Outbox
from libs.common.ssrf import is_egress_refusal
from services.provider_svc.domain import (
    Provider,
    ProviderType,
    Validation,
    ValidationStatus,
)
from services.provider_svc.repository import ProviderRepository
from services.provider_svc.service import VALIDATION_JOB_SUBJECT, ProviderEncoder

__all__ = ["VALIDATION_CONSUMER", "ProbeResult", "ProviderProbe", "RecheckScheduler", "ValidationWorker"]

_log = get_logger(__name__)
_MAX_BODY = 4 * 1024 * 1024
_MAX_MODELS = 1000
VALIDATION_CONSUMER = "provider-validation"
"""The durable pull consumer every replica's worker shares."""
VALIDATIONS = Counter(
    "agentmgr_provider_validations_total",
    "Validation attempts by outcome; final=false when the attempt will be retried",
    ["outcome", "final"],
)
_USER_AGENT = "agentmgr-validation/1"

_DEFAULT_BASE = {
    ProviderType.OPENAI: "https://api.openai.com/v1",
    ProviderType.GROQ: "https://api.groq.com/openai/v1",
    ProviderType.MISTRAL: "https://api.mistral.ai/v1",
    ProviderType.ANTHROPIC: "https://api.anthropic.com",
    ProviderType.GOOGLE: "https://generativelanguage.googleapis.com/v1beta",
}


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one validation call found."""

    status: ValidationStatus
    """The outcome."""
    detail: str
    """One sentence; never the upstream body."""
    models: tuple[str, ...] = ()
    """Model ids, for `valid`."""
    transient: bool = False
    """Worth retrying (timeouts, 429, 5xx, connection failures)."""
    retry_after_s: float | None = None
    """The provider's own Retry-After, when it sent one."""


def _models_request(provider: Provider, api_key: str) -> tuple[str, dict[str, str]]:
    headers = {"accept": "application/json", "user-agent": _USER_AGENT}
    base = provider.base_url or _DEFAULT_BASE.get(provider.type, "")
    match provider.type:
        case ProviderType.ANTHROPIC:
            headers["x-api-key"] = api_key
            headers["anthropic-version"] = "2023-06-01"
            return base.removesuffix("/v1") + "/v1/models?limit=1000", headers
        case ProviderType.GOOGLE:
            # The key goes in a header, never in the URL, where proxies and logs keep it.
            headers["x-goog-api-key"] = api_key
            return base + "/models?pageSize=1000", headers
        case ProviderType.OLLAMA:
            if api_key:
                headers["authorization"] = f"Bearer {api_key}"
            return base.removesuffix("/v1") + "/v1/models", headers
        case ProviderType.OPENAI | ProviderType.GROQ | ProviderType.MISTRAL | ProviderType.OPENAI_COMPATIBLE:
            if api_key:
                headers["authorization"] = f"Bearer {api_key}"
            return base + "/models", headers
        case ProviderType.TEST:
            raise ValueError("test providers need no request")


def _parse_models(provider_type: ProviderType, body: bytes) -> tuple[str, ...] | None:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    if provider_type is ProviderType.GOOGLE:
        items, key = document.get("models", []), "name"
    else:
        items, key = document.get("data"), "id"
    if not isinstance(items, list):
        return None
    models = []
    for item in items[:_MAX_MODELS]:
        if isinstance(item, dict) and isinstance(item.get(key), str):
            models.append(str(item[key]).removeprefix("models/")[:200])
    return tuple(sorted(set(models)))


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    with contextlib.suppress(ValueError):
        return max(0.0, min(float(value), 3600.0))
    return None


class ProviderProbe:
    """Calls a provider's model list and classifies the outcome."""

    def __init__(self, client: httpx2.AsyncClient, *, timeout_s: float) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def probe(self, provider: Provider, api_key: str) -> ProbeResult:
        """Validate `provider` with `api_key` (empty when it has none)."""
        if provider.type is ProviderType.TEST:
            return ProbeResult(ValidationStatus.VALID, "test provider: always valid, no network", ("test",))
        url, headers = _models_request(provider, api_key)
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._client.stream("GET", url, headers=headers) as response:
                    body = b""
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > _MAX_BODY:
                            return ProbeResult(
                                ValidationStatus.UNEXPECTED_RESPONSE, "the model list was larger than 4 MiB"
                            )
        except (TimeoutError, httpx2.TimeoutException):
            return ProbeResult(
                ValidationStatus.TIMEOUT, f"no answer within {self._timeout_s:g} s", transient=True
            )
        except httpx2.HTTPError as exc:
            if is_egress_refusal(exc):
                return ProbeResult(ValidationStatus.UNREACHABLE, f"blocked by the egress policy ({exc})")
            return ProbeResult(
                ValidationStatus.UNREACHABLE,
                f"could not connect to the provider ({type(exc).__name__})",
                transient=True,
            )
        return self._classify(provider.type, response, body)

    @staticmethod
    def _classify(provider_type: ProviderType, response: httpx2.Response, body: bytes) -> ProbeResult:
        code = response.status_code
        if code in (401, 403):
            return ProbeResult(
                ValidationStatus.AUTH_FAILED, f"the provider rejected the API key (HTTP {code})"
            )
        if code == 429:
            return ProbeResult(
                ValidationStatus.RATE_LIMITED,
                "the provider is rate limiting requests (HTTP 429)",
                transient=True,
                retry_after_s=_retry_after(response),
            )
        if code >= 500:
            return ProbeResult(
                ValidationStatus.UNEXPECTED_RESPONSE, f"the provider failed (HTTP {code})", transient=True
            )
        if 300 <= code < 400:
            return ProbeResult(
                ValidationStatus.UNEXPECTED_RESPONSE,
                f"the provider answered with a redirect (HTTP {code}), which is not followed; check base_url",
            )
        if code != 200:
            return ProbeResult(
                ValidationStatus.UNEXPECTED_RESPONSE,
                f"unexpected HTTP {code} from the model list; check base_url",
            )
        models = _parse_models(provider_type, body)
        if models is None:
            return ProbeResult(
                ValidationStatus.UNEXPECTED_RESPONSE, "the answer was not a model list; check base_url"
            )
        detail = f"{len(models)} model(s) available" if models else "reachable; it reported no models"
        return ProbeResult(ValidationStatus.VALID, detail, models)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Attempts and backoff for transient failures."""

    max_attempts: int
    """Total attempts per job."""
    backoff_s: float
    """First delay; each further one is four times longer (±20% jitter), at most 10 min."""
    recheck_interval_s: float
    """Re-check this long after a final outcome (0: never)."""

    def delay(self, attempt: int, retry_after_s: float | None) -> float:
        """Seconds before attempt `attempt + 1`."""
        base: float = min(self.backoff_s * 4.0 ** (attempt - 1), 600.0) * random.uniform(0.8, 1.2)
        return min(max(base, retry_after_s or 0.0), 600.0)


class ValidationWorker:
    """Runs validation jobs from the work queue."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        repository: ProviderRepository,
        outbox: Outbox,
        keyring: Keyring,
        probe: ProviderProbe,
        js: JetStreamContext,
        encode: ProviderEncoder,
        retry: RetryPolicy,
        concurrency: int,
        ack_wait_s: float,
    ) -> None:
        self._engine = engine
        self._repo = repository
        self._outbox = outbox
        self._keyring = keyring
        self._probe = probe
        self._js = js
        self._encode = encode
        self._retry = retry
        self._concurrency = concurrency
        self._ack_wait_s = ack_wait_s

    async def run(self) -> None:
        """Consume jobs until cancelled."""
        subscription = await self._js.pull_subscribe(
            VALIDATION_JOB_SUBJECT,
            durable=VALIDATION_CONSUMER,
            stream=JOBS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait_s,
                max_deliver=self._retry.max_attempts + 3,
                max_ack_pending=self._concurrency * 4,
            ),
        )
        in_flight = 0
        room = asyncio.Event()
        room.set()

        async def run_job(message: Msg) -> None:
            nonlocal in_flight
            try:
                await self.handle(message)
            except Exception:  # a job must never take the worker down; it is redelivered
                _log.exception("validation_job_failed")
            finally:
                in_flight -= 1
                room.set()

        async with asyncio.TaskGroup() as tasks:
            while True:
                await room.wait()
                try:
                    messages = await subscription.fetch(batch=self._concurrency - in_flight, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except nats.errors.Error as exc:
                    _log.warning("validation_fetch_failed", error=type(exc).__name__)
                    await asyncio.sleep(1.0)
                    continue
                for message in messages:
                    in_flight += 1
                    tasks.create_task(run_job(message))
                if in_flight >= self._concurrency:
                    room.clear()

    async def handle(self, message: Msg) -> None:
        """Validate the provider named by one job message, then ack or NAK-with-delay."""
        try:
            job = json.loads(message.data)
            provider_id, revision = str(job["provider_id"]), int(job["revision"])
        except (ValueError, KeyError, TypeError):
            _log.warning("validation_job_malformed")
            await message.term()
            return
        attempt = message.metadata.num_delivered or 1
        async with self._engine.connect() as conn:
            stored = await self._repo.get_with_credential(conn, provider_id)
        if stored is None or stored.provider.revision != revision:
            await message.ack()  # deleted, or changed since: a newer job covers it
            return
        provider = stored.provider
        try:
            api_key = (
                self._keyring.decrypt(owner=provider.id, ciphertext=stored.ciphertext)
                if stored.ciphertext
                else ""
            )
        except DecryptionError:
            result = ProbeResult(
                ValidationStatus.UNEXPECTED_RESPONSE,
                "the stored key does not decrypt with the configured ENCRYPTION_KEYS",
            )
        else:
            result = await self._probe.probe(provider, api_key)
        retry = result.transient and attempt < self._retry.max_attempts
        delay = self._retry.delay(attempt, result.retry_after_s) if retry else 0.0
        detail = result.detail
        if retry:
            detail += f"; retrying in {delay:.0f} s (attempt {attempt} of {self._retry.max_attempts})"
        now = utcnow()
        validation = Validation(
            status=result.status,
            detail=detail,
            checked_time=now,
            models=result.models if result.status is ValidationStatus.VALID else provider.validation.models,
        )
        await self._store(provider, revision, validation, now=now, final=not retry)
        VALIDATIONS.labels(result.status.value, "false" if retry else "true").inc()
        _log.info(
            "provider_validated",
            provider_id=provider.id,
            status=result.status.value,
            attempt=attempt,
            retry=retry,
        )
        if retry:
            await message.nak(delay=delay)
        else:
            await message.ack()

    async def _store(
        self, provider: Provider, revision: int, validation: Validation, *, now: dt.datetime, final: bool
    ) -> None:
        next_check = None
        if (
            final
            and self._retry.recheck_interval_s > 0
            and validation.status is not ValidationStatus.AUTH_FAILED
        ):
            next_check = now + dt.timedelta(seconds=self._retry.recheck_interval_s)
        async with self._engine.begin() as conn:
            current = await self._repo.get(conn, provider.id, for_update=True)
            if current is None or current.revision != revision:
                return
            await self._repo.set_validation(conn, provider.id, validation, next_check_at=next_check)
            updated = replace(current, validation=validation)
            staged = await self._outbox.add(
                conn,
                self._outbox.event(
                    collection="providers",
                    resource="provider",
                    verb="validated",
                    resource_id=updated.id,
                    project=updated.project,
                    actor="system:validation-worker",
                    data=self._encode(updated),
                    time=now,
                ),
            )
        self._outbox.committed(*staged)


class RecheckScheduler:
    """Queues re-checks of providers whose `next_check_at` has passed."""

    def __init__(
        self, *, engine: AsyncEngine, repository: ProviderRepository, outbox: Outbox, interval_s: float
    ) -> None:
        self._engine = engine
        self._repo = repository
        self._outbox = outbox
        self._interval_s = interval_s

    async def run(self) -> None:
        """Scan until cancelled."""
        while True:
            try:
                await self.scan_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database hiccup: try again next round
                _log.warning("recheck_scan_failed", error=type(exc).__name__)
            await asyncio.sleep(self._interval_s)

    async def scan_once(self) -> int:
        """Queue every due re-check; returns how many were queued."""
        queued = 0
        while True:
            async with self._engine.begin() as conn:
                due = await self._repo.claim_due_rechecks(conn, now=utcnow(), limit=100)
                staged = await self._outbox.add(
                    conn,
                    *(
                        Outbox.job(
                            subject=VALIDATION_JOB_SUBJECT,
                            body={"provider_id": pid, "revision": revision, "reason": "recheck"},
                        )
                        for pid, revision in due
                    ),
                )
            if due:
                self._outbox.committed(*staged)
            queued += len(due)
            if len(due) < 100:
                return queued
