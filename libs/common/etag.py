"""Etags (AIP-154): opaque tags that change whenever a resource's configuration does."""

from __future__ import annotations

import hashlib

from libs.common.errors import Aborted

__all__ = ["check_etag", "compute_etag"]


def compute_etag(resource_id: str, revision: int) -> str:
    """The etag of revision `revision` of a resource."""
    return hashlib.blake2b(f"{resource_id}:{revision}".encode(), digest_size=8).hexdigest()


def check_etag(sent: str, current: str, *, what: str) -> None:
    """ABORTED when the caller sent an etag and it is not the current one."""
    if sent and sent != current:
        raise Aborted(f"the {what} changed since it was read (stale etag); read it again and retry")
