"""Admin pages: operators, API keys and the audit log. Only the ``admin`` role may open them.

Each change goes through the accounts service with the operator as the actor, so the service records it
in the audit log in the same transaction.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response

from memberops.accounts import service as accounts
from memberops.accounts.errors import ApiKeyNotFound
from memberops.accounts.service import Role, Scope
from memberops.api.errors import status_for
from memberops.audit import service as audit
from memberops.errors import DomainError
from memberops.web.rendering import ConsoleRoute, error_page, render
from memberops.web.session import ConsoleSession, Operator, require_form, require_role, see_other

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)

AdminPage = Annotated[Operator, Depends(require_role(Role.admin))]
AdminForm = Annotated[Operator, Depends(require_form(Role.admin))]

AUDIT_PAGE_SIZE = 200

ROLE_HINTS = {
    Role.admin: "everything, including operators and API keys",
    Role.marketer: "segments, campaigns, journeys, loyalty",
    Role.analyst: "reads everything, changes nothing",
    Role.associate: "their own customers and tasks",
}
SCOPE_HINTS = {
    Scope.ingest: "post customers, orders, refunds, events",
    Scope.loyalty: "enrol, earn, redeem, coupons (point of sale)",
    Scope.read: "read members, traits, segments, reports",
    Scope.engage: "campaigns, journeys, sends",
    Scope.admin: "everything, including keys",
}


# -- operators -------------------------------------------------------------------------------------


def _users_page(request: Request, session: ConsoleSession, operator: Operator, *, status_code: int = 200,
                error: str = "", email: str = "", role: str = Role.analyst.value, created_id: str = "") -> Response:
    users = accounts.list_users(session, operator.workspace.id)
    created = next((user for user in users if user.id == created_id), None)
    return render(request, "admin/users.html", status_code=status_code, operator=operator, active="users",
                  users=users, roles=ROLE_HINTS, error=error, email=email, role=role, created=created)


@router.get("/users")
def users_page(request: Request, session: ConsoleSession, operator: AdminPage, created: str = "") -> Response:
    """The workspace's operators and a form to add one."""
    return _users_page(request, session, operator, created_id=created)


@router.post("/users")
def create_user(
    request: Request, session: ConsoleSession, operator: AdminForm,
    email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = Role.analyst.value,
) -> Response:
    """Add an operator. A domain error (weak password 422, e-mail taken 409 …) shows in the form."""
    email = email.strip()
    if "@" not in email:
        return _users_page(request, session, operator, status_code=422, error="Enter the operator's e-mail address.",
                           email=email, role=role)
    try:
        user = accounts.create_user(session, operator.workspace, email=email, password=password, role=role,
                                    actor=operator.actor)
    except DomainError as error:
        # The password is never sent back into the form.
        return _users_page(request, session, operator, status_code=status_for(error), error=error.message,
                           email=email, role=role)
    return see_other(f"/admin/users?created={user.id}")


# -- API keys --------------------------------------------------------------------------------------


def _keys_page(request: Request, session: ConsoleSession, operator: Operator, *, status_code: int = 200,
               error: str = "", name: str = "", scopes: list[str] | None = None) -> Response:
    keys = accounts.list_api_keys(session, operator.workspace.id)
    return render(request, "admin/keys.html", status_code=status_code, operator=operator, active="keys",
                  keys=keys, scope_hints=SCOPE_HINTS, error=error, name=name, checked=scopes or [])


@router.get("/keys")
def keys_page(request: Request, session: ConsoleSession, operator: AdminPage) -> Response:
    """The workspace's API keys (never their secrets) and a form to issue one."""
    return _keys_page(request, session, operator)


@router.post("/keys")
def create_key(
    request: Request, session: ConsoleSession, operator: AdminForm,
    name: Annotated[str, Form()] = "", scopes: Annotated[list[str] | None, Form()] = None,
) -> Response:
    """Issue a key and show it, this once: only its hash is kept, so it cannot be shown again."""
    name = name.strip()
    chosen = scopes or []
    if not name:
        return _keys_page(request, session, operator, status_code=422, error="Give the key a name.",
                          scopes=chosen)
    try:
        issued = accounts.create_api_key(session, operator.workspace, name=name, scopes=chosen,
                                         actor=operator.actor)
    except DomainError as error:
        return _keys_page(request, session, operator, status_code=status_for(error), error=error.message,
                          name=name, scopes=chosen)
    # Rendered, not redirected: the secret must not travel in a URL or be fetchable again.
    return render(request, "admin/key_created.html", status_code=201, operator=operator, active="keys",
                  issued=issued)


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, session: ConsoleSession, operator: AdminForm, key_id: str) -> Response:
    """Revoke a key at once; requests made with it are refused from now on."""
    try:
        accounts.revoke_api_key(session, operator.workspace.id, key_id, operator.actor)
    except ApiKeyNotFound:
        return error_page(request, 404, "No such API key",
                          "That key does not exist in this workspace. It may have been deleted.", operator=operator)
    return see_other("/admin/keys")


# -- audit log -------------------------------------------------------------------------------------


@router.get("/audit")
def audit_page(request: Request, session: ConsoleSession, operator: AdminPage) -> Response:
    """The newest audit entries of the workspace, newest first."""
    entries = audit.recent(session, operator.workspace.id, AUDIT_PAGE_SIZE)
    # Entries name operators by id; the page shows their e-mail, which only admins see here.
    emails = {user.id: user.email for user in accounts.list_users(session, operator.workspace.id)}
    return render(request, "admin/audit.html", operator=operator, active="audit", entries=entries,
                  emails=emails, limit=AUDIT_PAGE_SIZE)
