"""Providers: the resource, its closed enumerations and its field rules (DESIGN §2)."""

from __future__ import annotations

import datetime as dt
import enum
import json
from dataclasses import dataclass, field

from libs.common.errors import InvalidArgument
from libs.common.etag import compute_etag
from libs.common.jsonvalue import JsonObject

__all__ = [
    "CONFIG_MAX_BYTES",
    "Provider",
    "ProviderType",
    "Validation",
    "ValidationStatus",
    "api_key_hint",
    "check_api_key",
    "check_config",
]

CONFIG_MAX_BYTES = 16 * 1024
API_KEY_MAX_LENGTH = 4096


class ProviderType(enum.StrEnum):
    """Where models are served."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    GOOGLE = "google"
    GROQ = "groq"
    MISTRAL = "mistral"
    OLLAMA = "ollama"
    OPENAI_COMPATIBLE = "openai_compatible"
    TEST = "test"

    @property
    def needs_base_url(self) -> bool:
        """Types without a well-known endpoint."""
        return self in (ProviderType.OPENAI_COMPATIBLE, ProviderType.OLLAMA)

    @property
    def needs_api_key(self) -> bool:
        """Hosted APIs always want a key."""
        return self in (
            ProviderType.OPENAI,
            ProviderType.ANTHROPIC,
            ProviderType.GOOGLE,
            ProviderType.GROQ,
            ProviderType.MISTRAL,
        )

    @classmethod
    def parse(cls, value: str, *, field_path: str) -> ProviderType:
        """The type named `value`, or INVALID_ARGUMENT listing the choices."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(t.value for t in cls)
            raise InvalidArgument.for_field(
                field_path, "required" if not value else f"must be one of {choices}"
            ) from None


class ValidationStatus(enum.StrEnum):
    """Outcome of a provider validation; closed (DESIGN §2)."""

    UNKNOWN = "unknown"
    PENDING = "pending"
    VALID = "valid"
    AUTH_FAILED = "auth_failed"
    UNREACHABLE = "unreachable"
    RATE_LIMITED = "rate_limited"
    TIMEOUT = "timeout"
    UNEXPECTED_RESPONSE = "unexpected_response"

    @classmethod
    def parse(cls, value: str, *, field_path: str) -> ValidationStatus:
        """The status named `value`, or INVALID_ARGUMENT listing the choices."""
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(s.value for s in cls)
            raise InvalidArgument.for_field(field_path, f"must be one of {choices}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Validation:
    """What the latest validation found."""

    status: ValidationStatus = ValidationStatus.UNKNOWN
    """The outcome."""
    detail: str = ""
    """One sentence for humans; never the upstream body."""
    checked_time: dt.datetime | None = None
    """When the check finished."""
    models: tuple[str, ...] = ()
    """Models the provider reported."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Provider:
    """A provider as stored (without its secret)."""

    id: str
    """Opaque id, `prv_…`."""
    project: str
    """Owning project."""
    name: str
    """Unique in the project."""
    type: ProviderType
    """Where models are served."""
    base_url: str
    """API root; empty for the type's default."""
    config: JsonObject = field(default_factory=dict)
    """Non-secret options."""
    api_key_hint: str = ""
    """Start and end of the stored key, e.g. `sk-…a1b2`."""
    validation: Validation = field(default_factory=Validation)
    """Latest validation."""
    create_time: dt.datetime
    """Creation time."""
    update_time: dt.datetime
    """Last configuration change."""
    revision: int = 1
    """Grows with every configuration change; the etag is derived from it."""

    @property
    def etag(self) -> str:
        """Opaque version tag of the configuration (AIP-154)."""
        return compute_etag(self.id, self.revision)


def api_key_hint(key: str) -> str:
    """`sk-…a1b2`: enough to recognise a key, too little to use it."""
    if not key:
        return ""
    if len(key) >= 16:
        prefix = key[:3] if key[:3].isascii() else ""
        return f"{prefix}…{key[-4:]}"
    if len(key) >= 10:
        return f"…{key[-2:]}"
    return "…"


def check_api_key(key: str, *, field_path: str) -> str:
    """Reject keys that cannot be right (whitespace, control characters, absurd length)."""
    if len(key) > API_KEY_MAX_LENGTH:
        raise InvalidArgument.for_field(field_path, f"must be at most {API_KEY_MAX_LENGTH} characters")
    if key != key.strip() or any(ch.isspace() or not ch.isprintable() for ch in key):
        raise InvalidArgument.for_field(field_path, "must not contain whitespace or control characters")
    return key


_SECRETISH = ("api_key", "apikey", "secret", "password", "token", "authorization", "credential")


def check_config(config: JsonObject, *, field_path: str) -> JsonObject:
    """Non-secret options only, at most CONFIG_MAX_BYTES of JSON."""
    size = len(json.dumps(config, separators=(",", ":")).encode())
    if size > CONFIG_MAX_BYTES:
        raise InvalidArgument.for_field(field_path, f"must be at most {CONFIG_MAX_BYTES} bytes of JSON")
    pending: list[tuple[str, object]] = [(field_path, config)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, dict):
            for key, child in value.items():
                lowered = key.lower().replace("-", "_")
                if any(word in lowered for word in _SECRETISH):
                    raise InvalidArgument.for_field(
                        f"{path}.{key}", "config holds no secrets; put the credential in api_key"
                    )
                pending.append((f"{path}.{key}", child))
        elif isinstance(value, list):
            pending.extend((f"{path}[{i}]", child) for i, child in enumerate(value))
    return config
