"""Domain exceptions. No HTTP here: trace/api/problems.py maps them once."""

from __future__ import annotations

from collections.abc import Mapping


class DomainError(Exception):
    """Base of every error the domain raises on purpose."""

    title = "Request cannot be processed"

    def __init__(self, detail: str, *, fields: Mapping[str, list[str]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.fields: dict[str, list[str]] = dict(fields or {})


class NotFound(DomainError):
    """Missing, or not visible to the caller: both look the same from outside."""

    title = "Not found"


class ValidationFailed(DomainError):
    title = "Invalid input"


class Conflict(DomainError):
    title = "Conflict"


class Forbidden(DomainError):
    title = "Not allowed"


class Unauthenticated(DomainError):
    title = "Authentication required"


class PayloadTooLarge(DomainError):
    title = "Upload too large"


class UpstreamUnavailable(DomainError):
    """Something outside trace (a network printer) refused or dropped the connection."""

    title = "Upstream unavailable"
