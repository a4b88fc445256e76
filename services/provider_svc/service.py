"""Provider use cases: CRUD, validation requests, credentials (DESIGN §2, §5, §6).

Every change commits together with its events (and, when validation is needed, its
job) through the outbox. Keys are encrypted before they reach the repository and
decrypted only for the validation worker and `CredentialService`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.auth import Access, Principal
from libs.common.clock import utcnow
from libs.common.crypto import DecryptionError, Keyring
from libs.common.db import Executor, driver_connection
from libs.common.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from libs.common.etag import check_etag
from libs.common.ids import new_id
from libs.common.jsonvalue import JsonObject, fingerprint
from libs.common.messaging import JOBS_SUBJECT_PREFIX
from libs.common.names import validate_name, validate_project
from libs.common.outbox import Outbox, OutboxMessage
from libs.common.pagination import decode_page_token, encode_page_token, page_size
from libs.common.ssrf import EgressPolicy, EgressRefused, check_url
from services.provider_svc.domain import (
    Provider,
    ProviderType,
    Validation,
    ValidationStatus,
    api_key_hint,
    check_api_key,
    check_config,
)
from services.provider_svc.repository import ProviderRepository

__all__ = [
    "VALIDATION_JOB_SUBJECT",
    "AgentUsage",
    "Credential",
    "ProviderChanges",
    "ProviderDraft",
    "ProviderPage",
    "ProviderService",
]

VALIDATION_JOB_SUBJECT = f"{JOBS_SUBJECT_PREFIX}.providers.validate"
_UPDATABLE = frozenset({"name", "type", "base_url", "config", "api_key"})
_REQUEST_ID_MAX = 128


class AgentUsage(Protocol):
    """How many agents use a provider (answered by agent_svc)."""

    async def agents_using(self, provider_id: str) -> int:
        """Number of agents whose provider is `provider_id`."""
        ...


ProviderEncoder = Callable[[Provider], JsonObject]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderDraft:
    """The fields of a create request."""

    project: str
    name: str
    type: str
    base_url: str
    config: JsonObject
    api_key: str
    request_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderChanges:
    """The fields of an update request; only those named in `paths` apply."""

    id: str
    etag: str
    paths: Sequence[str]
    name: str = ""
    type: str = ""
    base_url: str = ""
    config: JsonObject | None = None
    api_key: str = ""


@dataclass(frozen=True, slots=True)
class ProviderPage:
    """One page of a list."""

    providers: list[Provider]
    """The page."""
    next_page_token: str
    """Empty on the last page."""


@dataclass(frozen=True, slots=True)
class Credential:
    """A provider's connection details with its decrypted key (never log it)."""

    provider: Provider
    """The provider."""
    api_key: str
    """Decrypted key; empty when none is stored."""


def _request_hash(draft: ProviderDraft) -> str:
    body = {
        "name": draft.name,
        "type": draft.type,
        "base_url": draft.base_url,
        "config": draft.config,
        "api_key_sha256": hashlib.sha256(draft.api_key.encode()).hexdigest(),
    }
    return fingerprint(body)


class ProviderService:
    """The provider use cases."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        repository: ProviderRepository,
        outbox: Outbox,
        keyring: Keyring,
        egress: EgressPolicy,
        encode: ProviderEncoder,
        validation_min_interval_s: float,
        agent_usage: AgentUsage | None = None,
    ) -> None:
        self._engine = engine
        self._repo = repository
        self._outbox = outbox
        self._keyring = keyring
        self._egress = egress
        self._encode = encode
        self._min_interval_s = validation_min_interval_s
        self._agent_usage = agent_usage

    # --- helpers -----------------------------------------------------------------

    def _event(self, provider: Provider, verb: str, actor: str) -> OutboxMessage:
        return self._outbox.event(
            collection="providers",
            resource="provider",
            verb=verb,
            resource_id=provider.id,
            project=provider.project,
            actor=actor,
            data=self._encode(provider),
        )

    @staticmethod
    def _job(provider: Provider, reason: str) -> OutboxMessage:
        return Outbox.job(
            subject=VALIDATION_JOB_SUBJECT,
            body={"provider_id": provider.id, "revision": provider.revision, "reason": reason},
        )

    async def _check_base_url(self, type_: ProviderType, base_url: str, *, field_path: str) -> str:
        if not base_url:
            if type_.needs_base_url:
                raise InvalidArgument.for_field(field_path, f"required for type {type_.value}")
            return ""
        if type_ is ProviderType.TEST:
            raise InvalidArgument.for_field(field_path, "not used by type test")
        if len(base_url) > 2048:
            raise InvalidArgument.for_field(field_path, "must be at most 2048 characters")
        try:
            await check_url(base_url, self._egress)
        except EgressRefused as exc:
            raise InvalidArgument.for_field(field_path, str(exc)) from None
        return base_url.rstrip("/")

    @staticmethod
    def _check_key_for_type(type_: ProviderType, api_key: str, *, field_path: str) -> None:
        if type_ is ProviderType.TEST and api_key:
            raise InvalidArgument.for_field(field_path, "not used by type test")
        if type_.needs_api_key and not api_key:
            raise InvalidArgument.for_field(field_path, f"required for type {type_.value}")

    @staticmethod
    def _initial_validation(type_: ProviderType) -> Validation:
        if type_ is ProviderType.TEST:
            return Validation(
                status=ValidationStatus.VALID,
                detail="test provider: always valid, no network",
                checked_time=utcnow(),
                models=("test",),
            )
        return Validation(status=ValidationStatus.PENDING, detail="validation queued")

    async def _visible(
        self, conn: Executor, principal: Principal, provider_id: str, *, lock: bool
    ) -> Provider:
        provider = await self._repo.get(conn, provider_id, for_update=lock) if provider_id else None
        if provider is None or not principal.can_see(provider.project):
            raise NotFound(f"provider '{provider_id}' not found")
        return provider

    # --- use cases -------------------------------------------------------------------

    async def create(self, principal: Principal, draft: ProviderDraft) -> Provider:
        """Create a provider (idempotent with a request_id)."""
        project = validate_project(draft.project, field="provider.project")
        principal.require_project(project)
        if len(draft.request_id) > _REQUEST_ID_MAX:
            raise InvalidArgument.for_field("request_id", f"must be at most {_REQUEST_ID_MAX} characters")
        name = validate_name(draft.name, field="provider.name")
        type_ = ProviderType.parse(draft.type, field_path="provider.type")
        base_url = await self._check_base_url(type_, draft.base_url, field_path="provider.base_url")
        api_key = check_api_key(draft.api_key, field_path="api_key")
        self._check_key_for_type(type_, api_key, field_path="api_key")
        config = check_config(draft.config, field_path="provider.config")
        request_hash = _request_hash(draft) if draft.request_id else None

        now = utcnow()
        provider = Provider(
            id=new_id("prv"),
            project=project,
            name=name,
            type=type_,
            base_url=base_url,
            config=config,
            api_key_hint=api_key_hint(api_key),
            validation=self._initial_validation(type_),
            create_time=now,
            update_time=now,
        )
        sealed = self._keyring.encrypt(owner=provider.id, plaintext=api_key) if api_key else None
        async with self._engine.begin() as conn:
            if draft.request_id:
                earlier = await self._repo.find_by_request_id(
                    conn, project=project, request_id=draft.request_id
                )
                if earlier is not None:
                    if earlier.request_hash != request_hash:
                        raise InvalidArgument(
                            message="request_id: was already used for a different request",
                            reason="REQUEST_ID_REUSED",
                        )
                    return earlier.provider
            inserted = await self._repo.insert(
                conn,
                provider,
                ciphertext=sealed.ciphertext if sealed else None,
                key_fingerprint=sealed.key_fingerprint if sealed else None,
                request_id=draft.request_id or None,
                request_hash=request_hash,
                validate_requested_at=now,
            )
            if not inserted:  # a concurrent retry with the same request_id won
                earlier = await self._repo.find_by_request_id(
                    conn, project=project, request_id=draft.request_id
                )
                assert earlier is not None
                return earlier.provider
            messages = [self._event(provider, "created", principal.key_id)]
            if type_ is ProviderType.TEST:
                messages.append(self._event(provider, "validated", principal.key_id))
            else:
                messages.append(self._job(provider, "created"))
            staged = await self._outbox.add(conn, *messages)
        self._outbox.committed(*staged)
        return provider

    async def get(self, principal: Principal, provider_id: str) -> Provider:
        """One provider the caller may see."""
        async with driver_connection(self._engine) as conn:
            return await self._visible(conn, principal, provider_id, lock=False)

    async def list(
        self,
        principal: Principal,
        *,
        page_size_: int,
        page_token: str,
        project: str,
        type_: str,
        status: str,
    ) -> ProviderPage:
        """A page of the providers the caller may see."""
        size = page_size(page_size_)
        if project:
            validate_name(project, field="project")
        visible_project = principal.visible_projects(project)
        type_filter = ProviderType.parse(type_, field_path="type") if type_ else None
        status_filter = ValidationStatus.parse(status, field_path="validation_status") if status else None
        filters = {"project": visible_project, "type": type_, "status": status}
        position = decode_page_token(page_token, filters, arity=2)
        after = (str(position[0]), str(position[1])) if position else None
        async with self._engine.connect() as conn:
            rows = await self._repo.list_page(
                conn,
                project=visible_project,
                type_=type_filter,
                status=status_filter,
                after=after,
                limit=size + 1,
            )
        page, more = rows[:size], len(rows) > size
        token = encode_page_token((page[-1].project, page[-1].name), filters) if more and page else ""
        return ProviderPage(providers=page, next_page_token=token)

    async def update(self, principal: Principal, changes: ProviderChanges) -> Provider:
        """Apply the masked fields; revalidate when the endpoint or key changed."""
        if not changes.paths:
            raise InvalidArgument.for_field("update_mask", "required: name the fields to change")
        unknown = sorted(set(changes.paths) - _UPDATABLE)
        if unknown:
            raise InvalidArgument.for_field(
                "update_mask",
                f"unknown or read-only field(s): {', '.join(unknown)}; updatable: "
                + ", ".join(sorted(_UPDATABLE)),
            )
        paths = set(changes.paths)
        async with self._engine.begin() as conn:
            current = await self._visible(conn, principal, changes.id, lock=True)
            principal.require_project(current.project)
            check_etag(changes.etag, current.etag, what="provider")

            name = validate_name(changes.name, field="provider.name") if "name" in paths else current.name
            type_ = (
                ProviderType.parse(changes.type, field_path="provider.type")
                if "type" in paths
                else current.type
            )
            base_url = changes.base_url if "base_url" in paths else current.base_url
            if "base_url" in paths or "type" in paths:
                base_url = await self._check_base_url(type_, base_url, field_path="provider.base_url")
            config = (
                check_config(changes.config or {}, field_path="provider.config")
                if "config" in paths
                else current.config
            )
            new_key: str | None = None
            if "api_key" in paths:
                new_key = check_api_key(changes.api_key, field_path="api_key")
                self._check_key_for_type(type_, new_key, field_path="api_key")
            elif "type" in paths and type_ != current.type:
                stored = await self._repo.get_with_credential(conn, current.id, for_update=True)
                has_key = stored is not None and stored.ciphertext is not None
                if type_.needs_api_key and not has_key:
                    raise InvalidArgument.for_field("api_key", f"required for type {type_.value}")
                if type_ is ProviderType.TEST and has_key:
                    raise InvalidArgument.for_field(
                        "api_key", "not used by type test; clear it in the same update"
                    )

            endpoint_changed = type_ != current.type or base_url != current.base_url or new_key is not None
            changed = endpoint_changed or name != current.name or config != current.config
            if not changed:
                return current
            now = utcnow()
            updated = replace(
                current,
                name=name,
                type=type_,
                base_url=base_url,
                config=config,
                api_key_hint=api_key_hint(new_key) if new_key is not None else current.api_key_hint,
                validation=self._initial_validation(type_) if endpoint_changed else current.validation,
                revision=current.revision + 1,
                update_time=now,
            )
            await self._repo.update(conn, updated, validate_requested_at=now if endpoint_changed else None)
            if new_key is not None:
                sealed = self._keyring.encrypt(owner=current.id, plaintext=new_key) if new_key else None
                await self._repo.set_credential(
                    conn,
                    current.id,
                    ciphertext=sealed.ciphertext if sealed else None,
                    key_fingerprint=sealed.key_fingerprint if sealed else None,
                )
            messages = [self._event(updated, "updated", principal.key_id)]
            if endpoint_changed:
                if type_ is ProviderType.TEST:
                    messages.append(self._event(updated, "validated", principal.key_id))
                else:
                    messages.append(self._job(updated, "updated"))
            staged = await self._outbox.add(conn, *messages)
        self._outbox.committed(*staged)
        return updated

    async def delete(self, principal: Principal, provider_id: str, *, etag: str, force: bool) -> Provider:
        """Delete a provider; refused while agents use it unless `force`."""
        async with self._engine.begin() as conn:
            current = await self._visible(conn, principal, provider_id, lock=True)
            principal.require_project(current.project)
            check_etag(etag, current.etag, what="provider")
            if not force and self._agent_usage is not None:
                in_use = await self._agent_usage.agents_using(current.id)
                if in_use:
                    raise FailedPrecondition(
                        f"provider '{current.name}' is used by {in_use} agent(s); "
                        "change them first or delete with force",
                        reason="PROVIDER_IN_USE",
                    )
            await self._repo.delete(conn, current.id)
            staged = await self._outbox.add(conn, self._event(current, "deleted", principal.key_id))
        self._outbox.committed(*staged)
        return current

    async def request_validation(self, principal: Principal, provider_id: str) -> Provider:
        """Queue a validation now; at most one per provider per min interval."""
        async with self._engine.begin() as conn:
            current = await self._visible(conn, principal, provider_id, lock=True)
            principal.require_project(current.project)
            now = utcnow()
            wait = await self._repo.claim_validation_slot(
                conn, current.id, now=now, min_interval_s=self._min_interval_s
            )
            if wait is not None:
                raise ResourceExhausted(
                    f"provider '{current.name}' was validated moments ago; retry in {wait:.0f} s",
                    retry_after=wait,
                )
            validation = self._initial_validation(current.type)
            if current.type is not ProviderType.TEST:
                validation = replace(validation, detail="validation queued", models=current.validation.models)
            updated = replace(current, validation=validation)
            await self._repo.set_validation(conn, current.id, validation, next_check_at=None)
            if current.type is ProviderType.TEST:
                messages = [self._event(updated, "validated", principal.key_id)]
            else:
                messages = [
                    self._event(updated, "updated", principal.key_id),
                    self._job(updated, "requested"),
                ]
            staged = await self._outbox.add(conn, *messages)
        self._outbox.committed(*staged)
        return updated

    async def resolve_credentials(self, principal: Principal, provider_id: str) -> Credential:
        """A provider with its decrypted key (CredentialService; service role only)."""
        principal.require(Access.INTERNAL)
        async with self._engine.connect() as conn:
            stored = await self._repo.get_with_credential(conn, provider_id) if provider_id else None
        if stored is None or not principal.can_see(stored.provider.project):
            raise NotFound(f"provider '{provider_id}' not found")
        api_key = ""
        if stored.ciphertext:
            try:
                api_key = self._keyring.decrypt(owner=stored.provider.id, ciphertext=stored.ciphertext)
            except DecryptionError:
                raise FailedPrecondition(
                    f"the key of provider '{stored.provider.name}' does not decrypt with the configured "
                    "ENCRYPTION_KEYS (was a key dropped before `agentmgr rotate-keys` finished?)",
                    reason="CREDENTIAL_UNREADABLE",
                ) from None
        return Credential(provider=stored.provider, api_key=api_key)
