"""API keys: format, hashing, the shared store, and what each role may do (DESIGN §3).

Keys look like `amk_<43 url-safe characters>` and are shown once, at creation. Only a
SHA-256 of the key is stored — in the JetStream key-value bucket `agentmgr_api_keys`,
keyed by that hash. (A fast hash is right here: keys carry 256 bits of randomness, so
there is nothing to brute-force; a slow KDF would only slow down every request.)

Every service keeps the whole bucket in memory and watches it, so checking a key is a
dictionary lookup with no network hop, and a revocation reaches every service within
milliseconds (the watch) or, if a watch was lost, within `resync_interval_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace

import nats.errors
from nats.js.errors import KeyWrongLastSequenceError, NoKeysError, NotFoundError
from nats.js.kv import KeyValue

from libs.common.clock import rfc3339, utcnow
from libs.common.errors import PermissionDenied, Unauthenticated
from libs.common.ids import new_id
from libs.common.logging import get_logger

__all__ = [
    "ALL_PROJECTS",
    "Access",
    "ApiKeyRecord",
    "KeyStore",
    "Principal",
    "Role",
    "create_api_key",
    "ensure_bootstrap_admin_key",
    "ensure_service_key",
    "generate_api_key",
    "hash_api_key",
    "list_api_keys",
    "revoke_api_key",
]

ALL_PROJECTS = "*"
KEY_PREFIX = "amk_"
_BOOTSTRAP_MARKER = "bootstrap"
_log = get_logger(__name__)


class Role(enum.StrEnum):
    """What a key may do: admin reads and writes, viewer reads, service calls internals."""

    ADMIN = "admin"
    VIEWER = "viewer"
    SERVICE = "service"


class Access(enum.Enum):
    """What a method needs."""

    PUBLIC = "public"
    """No key needed (health, reflection)."""
    READ = "read"
    """Any role."""
    WRITE = "write"
    """admin (and service, which acts for agentmgr itself)."""
    INTERNAL = "internal"
    """service only (CredentialService)."""


_ALLOWED: dict[Access, frozenset[Role]] = {
    Access.READ: frozenset({Role.ADMIN, Role.VIEWER, Role.SERVICE}),
    Access.WRITE: frozenset({Role.ADMIN, Role.SERVICE}),
    Access.INTERNAL: frozenset({Role.SERVICE}),
}


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """What the bucket stores for a key (never the key itself)."""

    id: str
    """Public identifier (`key_…`): events name it as the actor; revocation uses it."""
    name: str
    """A label for humans."""
    project: str
    """The project the key grants, or `*` for all."""
    role: Role
    """What the key may do."""
    created_time: str
    """RFC 3339 creation time."""
    revoked: bool = False
    """Revoked keys stay listed but authenticate nothing."""

    def to_json(self) -> bytes:
        """Serialized form stored in the bucket."""
        return json.dumps({**asdict(self), "role": self.role.value}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ApiKeyRecord:
        """Parse a bucket value."""
        raw = json.loads(data)
        return cls(
            id=str(raw["id"]),
            name=str(raw["name"]),
            project=str(raw["project"]),
            role=Role(raw["role"]),
            created_time=str(raw["created_time"]),
            revoked=bool(raw.get("revoked", False)),
        )


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request."""

    key_id: str
    """Id of the key used; the `actor` of events."""
    project: str
    """Granted project, or `*`."""
    role: Role
    """Granted role."""

    def can_see(self, project: str) -> bool:
        """Whether resources of `project` are visible to this caller."""
        return self.project in (ALL_PROJECTS, project)

    def visible_projects(self, requested: str = "") -> str | None:
        """The project a list is limited to (None: every project)."""
        if self.project == ALL_PROJECTS:
            return requested or None
        if requested and requested != self.project:
            raise PermissionDenied(f"this API key does not grant project '{requested}'")
        return self.project

    def require(self, access: Access) -> None:
        """Raise PERMISSION_DENIED unless the role allows `access`."""
        if access is not Access.PUBLIC and self.role not in _ALLOWED[access]:
            raise PermissionDenied(f"the {self.role.value} role may not do this")

    def require_project(self, project: str) -> None:
        """Raise PERMISSION_DENIED unless the key grants `project` (for writes)."""
        if not self.can_see(project):
            raise PermissionDenied(f"this API key does not grant project '{project}'")


SYSTEM = Principal(key_id="system", project=ALL_PROJECTS, role=Role.SERVICE)


def generate_api_key() -> str:
    """A new random key."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """The bucket key for an API key: hex SHA-256."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """In-memory mirror of the API key bucket, kept current by a watch."""

    def __init__(self, *, resync_interval_s: float = 60.0) -> None:
        self._by_hash: dict[str, ApiKeyRecord] = {}
        self._resync_interval_s = resync_interval_s
        self._ready = asyncio.Event()

    @property
    def ready(self) -> asyncio.Event:
        """Set once the whole bucket has been loaded."""
        return self._ready

    def authenticate(self, presented: str | None) -> Principal:
        """The principal for a presented key, or UNAUTHENTICATED."""
        if not presented:
            raise Unauthenticated("missing API key: send 'authorization: Bearer <key>'")
        # Looking up by SHA-256 leaks nothing useful through timing: an attacker cannot
        # steer the hash of a guess towards a stored one.
        record = self._by_hash.get(hash_api_key(presented))
        if record is None:
            raise Unauthenticated("invalid API key")
        if record.revoked:
            raise Unauthenticated("API key revoked")
        return Principal(key_id=record.id, project=record.project, role=record.role)

    def load(self, entries: Iterable[tuple[str, bytes | None]]) -> None:
        """Replace the mirror (tests, and each resync)."""
        fresh: dict[str, ApiKeyRecord] = {}
        for key_hash, value in entries:
            if value:
                with contextlib.suppress(ValueError, KeyError, json.JSONDecodeError):
                    fresh[key_hash] = ApiKeyRecord.from_json(value)
        self._by_hash = fresh

    def _apply(self, key_hash: str, value: bytes | None) -> None:
        if key_hash == _BOOTSTRAP_MARKER:
            return
        if not value:
            self._by_hash.pop(key_hash, None)
            return
        try:
            self._by_hash[key_hash] = ApiKeyRecord.from_json(value)
        except (ValueError, KeyError, json.JSONDecodeError):
            _log.warning("api_key_record_unreadable", key_hash_prefix=key_hash[:8])

    async def run(self, kv: KeyValue) -> None:
        """Watch the bucket until cancelled, restarting the watch periodically."""
        while True:
            try:
                await self._watch_once(kv)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS hiccup: keep the last known keys and retry
                _log.warning("api_key_watch_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _watch_once(self, kv: KeyValue) -> None:
        watcher = await kv.watchall()
        staged: dict[str, bytes | None] = {}
        initial = True
        try:
            loop = asyncio.get_running_loop()
            until = loop.time() + self._resync_interval_s
            while (remaining := until - loop.time()) > 0:
                try:
                    entry = await watcher.updates(timeout=remaining)  # type: ignore[no-untyped-call]  # nats-py
                except nats.errors.TimeoutError:
                    break
                if entry is None:  # end of the initial snapshot
                    if initial:
                        self.load(staged.items())
                        initial = False
                        self._ready.set()
                    continue
                value = None if entry.operation in ("DEL", "PURGE") else entry.value
                if initial:
                    staged[entry.key] = value
                else:
                    self._apply(entry.key, value)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]  # nats-py


async def create_api_key(
    kv: KeyValue, *, name: str, project: str, role: Role, key: str | None = None
) -> tuple[str, ApiKeyRecord]:
    """Store a new key; returns (the key — shown once, the record)."""
    secret = key or generate_api_key()
    record = ApiKeyRecord(
        id=new_id("key"), name=name, project=project, role=role, created_time=rfc3339(utcnow())
    )
    await kv.create(hash_api_key(secret), record.to_json())
    return secret, record


async def list_api_keys(kv: KeyValue) -> list[ApiKeyRecord]:
    """Every stored key record (revoked ones included)."""
    records = []
    for name in await _key_names(kv):
        entry = await kv.get(name)
        if entry.value:
            records.append(ApiKeyRecord.from_json(entry.value))
    return sorted(records, key=lambda r: r.created_time)


async def revoke_api_key(kv: KeyValue, key_id: str) -> ApiKeyRecord | None:
    """Mark the key with this id revoked; None when no such key."""
    for name in await _key_names(kv):
        entry = await kv.get(name)
        if not entry.value:
            continue
        record = ApiKeyRecord.from_json(entry.value)
        if record.id == key_id:
            revoked = replace(record, revoked=True)
            await kv.update(name, revoked.to_json(), last=entry.revision)
            return revoked
    return None


async def _key_names(kv: KeyValue) -> list[str]:
    try:
        return [n for n in await kv.keys() if n != _BOOTSTRAP_MARKER]
    except NoKeysError:  # nats-py's answer for an empty bucket
        return []


async def ensure_service_key(kv: KeyValue, key: str) -> None:
    """Register a service's own SERVICE_API_KEY (role `service`, all projects) if absent.

    Idempotent and race-free (`create` fails when the key exists), and a key an operator
    revoked stays revoked: an existing record is never touched.
    """
    with contextlib.suppress(KeyWrongLastSequenceError):
        await create_api_key(kv, name="service", project=ALL_PROJECTS, role=Role.SERVICE, key=key)


async def ensure_bootstrap_admin_key(kv: KeyValue, configured: str | None) -> str | None:
    """Make sure a first admin key exists.

    With `configured` (BOOTSTRAP_ADMIN_KEY) that key is registered if it is not already.
    Without it, the first process to start on an empty bucket generates one and returns
    it (the caller prints it once); later starts return None. A marker entry created
    with `create` makes the generation race-free across replicas.
    """
    if configured:
        try:
            await create_api_key(
                kv, name="bootstrap-admin", project=ALL_PROJECTS, role=Role.ADMIN, key=configured
            )
        except KeyWrongLastSequenceError:
            return None  # another replica registered it first
        with contextlib.suppress(KeyWrongLastSequenceError):
            await kv.create(_BOOTSTRAP_MARKER, b"configured")
        return None
    try:
        await kv.get(_BOOTSTRAP_MARKER)
        return None
    except NotFoundError:
        pass
    try:
        await kv.create(_BOOTSTRAP_MARKER, b"generated")
    except KeyWrongLastSequenceError:
        return None
    secret, _ = await create_api_key(kv, name="bootstrap-admin", project=ALL_PROJECTS, role=Role.ADMIN)
    return secret
