"""The root of every domain error.

Services raise subclasses with a stable ``code`` and the facts of the case; the faces map them to an
HTTP status (``memberops.api.errors``) or a CLI exit code. No HTTP status lives in a domain class.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code: str = "domain_error"

    def __init__(self, message: str, **facts: Any) -> None:
        super().__init__(message)
        self.message = message
        self.facts = facts


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class Forbidden(DomainError):
    code = "forbidden"


class Invalid(DomainError):
    code = "invalid"
