"""Encryption of stored credentials (DESIGN §6).

`ENCRYPTION_KEYS` lists one or more Fernet keys, comma separated: the first encrypts,
all decrypt (MultiFernet), so keys rotate by prepending a new key, re-encrypting every
row (`agentmgr rotate-keys`) and then dropping the old key.

Each ciphertext is bound to its owner (a provider id): the Fernet key actually used is
derived from the configured key with HKDF, the owner id as context. A ciphertext copied
into another provider's row fails authentication there instead of decrypting.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from libs.common.settings import check_not_placeholder

__all__ = ["DecryptionError", "Keyring", "Sealed", "generate_key"]

_SALT = b"agentmgr/credential/v1"


class DecryptionError(Exception):
    """The ciphertext does not decrypt for this owner with any configured key."""


@dataclass(frozen=True, slots=True)
class Sealed:
    """A ciphertext and the fingerprint of the key that made it."""

    ciphertext: bytes
    """The Fernet token."""
    key_fingerprint: str
    """Non-secret fingerprint of the configured key used; tells rotation what is left to do."""


def generate_key() -> str:
    """A new random key in the form `ENCRYPTION_KEYS` expects."""
    return Fernet.generate_key().decode("ascii")


def _fingerprint(key: bytes) -> str:
    return hashlib.sha256(b"agentmgr/key-fingerprint/" + key).hexdigest()[:16]


class Keyring:
    """The configured keys; derives a per-owner MultiFernet for each operation."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("needs at least one key")
        self._keys = keys
        self._fingerprints = [_fingerprint(k) for k in keys]

    @classmethod
    def from_setting(cls, value: str) -> Keyring:
        """Parse `ENCRYPTION_KEYS`; errors describe the problem, never the value."""
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts:
            raise ValueError("must list at least one key")
        keys: list[bytes] = []
        for index, part in enumerate(parts, start=1):
            try:
                check_not_placeholder(part)
            except ValueError:
                raise ValueError(
                    f"key {index} is a placeholder; generate one with `agentmgr gen-key`"
                ) from None
            try:
                raw = base64.urlsafe_b64decode(part.encode("ascii"))
            except (binascii.Error, UnicodeEncodeError, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError(
                    f"key {index} is not a Fernet key (32 url-safe base64-encoded bytes); "
                    "generate one with `agentmgr gen-key`"
                )
            if len(set(raw)) < 8:
                raise ValueError(f"key {index} has too little entropy")
            keys.append(raw)
        if len(set(keys)) != len(keys):
            raise ValueError("lists the same key twice")
        return cls(keys)

    @property
    def primary_fingerprint(self) -> str:
        """Fingerprint of the key new ciphertexts are made with."""
        return self._fingerprints[0]

    @property
    def fingerprints(self) -> tuple[str, ...]:
        """Fingerprints of all configured keys, primary first."""
        return tuple(self._fingerprints)

    def _fernet(self, owner: str) -> MultiFernet:
        derived = []
        for key in self._keys:
            hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=owner.encode("utf-8"))
            derived.append(Fernet(base64.urlsafe_b64encode(hkdf.derive(key))))
        return MultiFernet(derived)

    def encrypt(self, *, owner: str, plaintext: str) -> Sealed:
        """Encrypt `plaintext` for `owner` with the primary key."""
        token = self._fernet(owner).encrypt(plaintext.encode("utf-8"))
        return Sealed(ciphertext=token, key_fingerprint=self.primary_fingerprint)

    def decrypt(self, *, owner: str, ciphertext: bytes) -> str:
        """Decrypt a ciphertext made for `owner` with any configured key."""
        try:
            return self._fernet(owner).decrypt(ciphertext).decode("utf-8")
        except (InvalidToken, UnicodeDecodeError):
            raise DecryptionError("credential does not decrypt with the configured keys") from None

    def rotate(self, *, owner: str, ciphertext: bytes) -> Sealed:
        """Re-encrypt with the primary key (decrypting with any configured key)."""
        try:
            token = self._fernet(owner).rotate(ciphertext)
        except InvalidToken:
            raise DecryptionError("credential does not decrypt with the configured keys") from None
        return Sealed(ciphertext=token, key_fingerprint=self.primary_fingerprint)
