from __future__ import annotations

from memberops.errors import Conflict, DomainError, Invalid, NotFound


class AuthenticationFailed(DomainError):
    """Wrong e-mail or password, or an unknown, revoked or malformed API key. Says no more, on purpose."""

    code = "authentication_failed"


class MissingScope(DomainError):
    code = "missing_scope"

    def __init__(self, required: str, granted: list[str]) -> None:
        super().__init__(f"this API key lacks the {required!r} scope", required=required, granted=granted)


class RoleNotAllowed(DomainError):
    code = "role_not_allowed"

    def __init__(self, role: str, allowed: list[str]) -> None:
        super().__init__(f"role {role!r} may not do this; allowed: {', '.join(allowed)}", role=role)


class UserExists(Conflict):
    code = "user_exists"


class InvalidRole(Invalid):
    code = "invalid_role"


class InvalidScope(Invalid):
    code = "invalid_scope"


class WeakPassword(Invalid):
    code = "weak_password"


class WorkspaceNotFound(NotFound):
    code = "workspace_not_found"


class ApiKeyNotFound(NotFound):
    code = "api_key_not_found"
