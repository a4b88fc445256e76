"""Validation of the user-chosen identifiers every resource shares (names, projects)."""

from __future__ import annotations

import re

from libs.common.errors import InvalidArgument

__all__ = ["DEFAULT_PROJECT", "validate_name", "validate_project"]

DEFAULT_PROJECT = "default"

# RFC 1123 label: what Kubernetes uses for names, safe in URLs, subjects and logs.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def validate_name(value: str, *, field: str) -> str:
    """Return `value` if it is a valid resource name, else INVALID_ARGUMENT naming `field`."""
    if not value:
        raise InvalidArgument.for_field(field, "required")
    if not _NAME.fullmatch(value):
        raise InvalidArgument.for_field(
            field,
            "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit",
        )
    return value


def validate_project(value: str, *, field: str = "project") -> str:
    """Return the project (DEFAULT_PROJECT when empty) or INVALID_ARGUMENT naming `field`."""
    return validate_name(value or DEFAULT_PROJECT, field=field)
