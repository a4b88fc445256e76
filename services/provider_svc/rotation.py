"""Online re-encryption of stored keys with the primary encryption key (DESIGN §6).

Run with `ENCRYPTION_KEYS=new,old` (the services running with the same list). Rows
are claimed in small batches with `FOR UPDATE SKIP LOCKED` and re-encrypted in short
transactions, so readers and writers carry on meanwhile; a row re-encrypted or
rewritten already carries the primary key's fingerprint and is not picked again. The
command is therefore resumable and safe to rerun. When it reports nothing remaining,
the old key can be dropped from ENCRYPTION_KEYS.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.crypto import DecryptionError, Keyring
from services.provider_svc.repository import ProviderRepository

__all__ = ["RotationReport", "rotate_keys"]


@dataclass
class RotationReport:
    """What a rotation run did."""

    rotated: int = 0
    """Keys re-encrypted by this run."""
    unreadable: list[str] = field(default_factory=list)
    """Providers whose key decrypts with none of the configured keys (left as they are)."""
    by_fingerprint: dict[str, int] = field(default_factory=dict)
    """Stored keys per encrypting key afterwards; only the primary should remain."""


async def rotate_keys(
    *, engine: AsyncEngine, repository: ProviderRepository, keyring: Keyring, batch_size: int = 100
) -> RotationReport:
    """Re-encrypt every key not yet encrypted with the primary key."""
    report = RotationReport()
    skipped: set[str] = set()
    while True:
        async with engine.begin() as conn:
            rows = await repository.claim_unrotated(
                conn, primary_fingerprint=keyring.primary_fingerprint, limit=batch_size + len(skipped)
            )
            rows = [row for row in rows if row[0] not in skipped][:batch_size]
            for provider_id, ciphertext, _fingerprint in rows:
                try:
                    sealed = keyring.rotate(owner=provider_id, ciphertext=ciphertext)
                except DecryptionError:
                    skipped.add(provider_id)
                    report.unreadable.append(provider_id)
                    continue
                await repository.store_rotated(
                    conn, provider_id, ciphertext=sealed.ciphertext, key_fingerprint=sealed.key_fingerprint
                )
                report.rotated += 1
        if not rows:
            break
    async with engine.connect() as conn:
        report.by_fingerprint = await repository.count_by_fingerprint(conn)
    return report
