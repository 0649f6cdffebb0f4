"""Who is signed in to the console, and whether a form really comes from our own page.

* The session cookie ``memberops_session`` carries the random token :func:`accounts.log_in` issued;
  the store keeps only its hash.
* Signed-in forms carry the session's own CSRF token (synchroniser token). The login form has no session
  yet, so it uses a double-submit cookie, ``memberops_csrf``: a random value, signed with the
  workspace's signing key, that the form must echo back.
* :func:`require_role` (pages) and :func:`require_form` (POST handlers) are the dependencies every
  console view starts from; both answer anonymous visitors with a redirect to the login page.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request, Response
from fastapi.responses import RedirectResponse
from itsdangerous import BadSignature, URLSafeTimedSerializer

from memberops.accounts import service as accounts
from memberops.accounts.models import OperatorUser, Workspace
from memberops.accounts.service import Role
from memberops.api.deps import ContextDep
from memberops.audit.service import Actor
from memberops.config import Settings
from memberops.web.rendering import ConsolePageError, error_page

if TYPE_CHECKING:
    from sqlalchemy.orm import Session
else:
    # The console never builds a query, so it imports no SQLAlchemy at run time; FastAPI only needs a
    # name it can resolve for a parameter that a dependency fills.
    Session = object

SESSION_COOKIE = "memberops_session"
LOGIN_CSRF_COOKIE = "memberops_csrf"
LOGIN_CSRF_MAX_AGE = 2 * 3600  # a login form left open longer than this is sent again
CSRF_FIELD = "csrf_token"


# -- one transaction per request -------------------------------------------------------------------


def console_session(request: Request, context: ContextDep) -> Iterator[Session]:
    """One transaction per request: a reading one for GET (no SQLite write lock), a writing one otherwise.

    Used with ``scope="function"`` so a POST's changes are committed *before* its redirect is sent:
    the browser's next GET must see them.
    """
    opener = context.store.read if request.method in ("GET", "HEAD") else context.store.transaction
    with opener() as session:
        yield session


ConsoleSession = Annotated[Session, Depends(console_session, scope="function")]


# -- cookies ---------------------------------------------------------------------------------------


def is_secure(request: Request, settings: Settings) -> bool:
    """Whether cookies get the Secure flag: as configured, else when the request came over HTTPS."""
    if settings.cookie_secure is not None:
        return settings.cookie_secure
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, settings: Settings, name: str, value: str,
               max_age: int) -> None:
    """Set one of the console's cookies: HttpOnly, SameSite=Lax, whole site."""
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=is_secure(request, settings))


def delete_cookie(response: Response, request: Request, settings: Settings, name: str) -> None:
    """Expire a console cookie (same attributes as when set, or browsers keep it)."""
    response.delete_cookie(name, path="/", httponly=True, samesite="lax", secure=is_secure(request, settings))


# -- redirects -------------------------------------------------------------------------------------


def safe_next(value: str | None) -> str:
    """``value`` if it is a path on this site, else ``/``: the login page never redirects elsewhere.

    ``//host`` and ``/\\host`` are read by browsers as another host, so both are refused.
    """
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def login_url(next_path: str | None = None) -> str:
    """The login page, asked to come back to ``next_path`` afterwards."""
    next_path = safe_next(next_path)
    return "/login" if next_path == "/" else f"/login?next={quote(next_path, safe='/')}"


def see_other(url: str) -> RedirectResponse:
    """A 303 redirect: after a POST the browser follows it with a GET."""
    return RedirectResponse(url, status_code=303)


# -- the signed-in operator ------------------------------------------------------------------------


@dataclass(frozen=True)
class Operator:
    """The operator behind the request, their workspace and their session's CSRF token."""

    user: OperatorUser
    workspace: Workspace
    csrf_token: str
    token: str  # the cookie's session token, needed to log out

    @property
    def actor(self) -> Actor:
        """Who the services record in the audit log for changes made on this request."""
        return Actor("user", self.user.id)

    @property
    def is_admin(self) -> bool:
        return self.user.role == Role.admin


def current_operator(request: Request, session: Session) -> Operator | None:
    """The operator signed in with this request's cookie, or ``None`` (no cookie, expired, deactivated)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    found = accounts.session_user(session, token)
    if found is None:
        return None
    user, operator_session = found
    # A primary-key lookup of the user's own workspace; accounts has no by-id getter (see api/deps.py).
    workspace = session.get(Workspace, user.workspace_id)
    if workspace is None:
        return None
    return Operator(user=user, workspace=workspace, csrf_token=operator_session.csrf_token, token=token)


class LoginRequired(ConsolePageError):
    """No one is signed in: off to the login page, coming back afterwards to where they were going."""

    def __init__(self, next_path: str | None) -> None:
        super().__init__("login required")
        self.next_path = next_path

    def response(self, request: Request) -> Response:
        return see_other(login_url(self.next_path))


class RoleForbidden(ConsolePageError):
    """The operator's role may not open this page."""

    def __init__(self, operator: Operator, allowed: tuple[Role, ...]) -> None:
        super().__init__("role not allowed")
        self.operator = operator
        self.allowed = allowed

    def response(self, request: Request) -> Response:
        allowed = ", ".join(role.value for role in self.allowed)
        return error_page(request, 403, "Not for your role",
                          f"This page is for the {allowed} role; you are signed in as "
                          f"{self.operator.user.role}. Ask an admin if you need it.",
                          operator=self.operator)


class CsrfRejected(ConsolePageError):
    """A form without our token: sent from another site, or from a page older than the session."""

    def __init__(self, operator: Operator | None = None) -> None:
        super().__init__("csrf token missing or wrong")
        self.operator = operator

    def response(self, request: Request) -> Response:
        return error_page(request, 403, "This form could not be accepted",
                          "The form's security token is missing or out of date, so nothing was changed. "
                          "Reload the page and send the form again.", operator=self.operator)


def tokens_match(sent: str | None, expected: str) -> bool:
    """Constant-time comparison, so a token cannot be guessed a character at a time."""
    if not sent or not expected:
        return False
    return hmac.compare_digest(sent.encode(), expected.encode())


def _check_role(operator: Operator, roles: tuple[Role, ...]) -> None:
    if roles and operator.user.role not in roles:
        raise RoleForbidden(operator, roles)


def require_role(*roles: Role) -> Callable[..., Operator]:
    """A dependency for console pages: the signed-in operator, whose role must be one of ``roles``
    (no roles: any). Anonymous visitors are redirected (303) to ``/login?next=<this page>``."""

    def dependency(request: Request, session: ConsoleSession) -> Operator:
        operator = current_operator(request, session)
        if operator is None:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(path if request.method == "GET" else None)
        _check_role(operator, roles)
        return operator

    return dependency


async def sent_csrf_token(request: Request) -> str:
    """The ``csrf_token`` field of the submitted form ('' if there is none)."""
    value = (await request.form()).get(CSRF_FIELD)
    return value if isinstance(value, str) else ""


SentCsrfToken = Annotated[str, Depends(sent_csrf_token)]


def require_form(*roles: Role) -> Callable[..., Operator]:
    """A dependency for console POST handlers: :func:`require_role`, and the form's ``csrf_token`` must be
    the session's. A missing or wrong token answers 403 before the view runs, so nothing changes."""

    def dependency(request: Request, session: ConsoleSession, sent: SentCsrfToken) -> Operator:
        operator = current_operator(request, session)
        if operator is None:
            raise LoginRequired(None)
        if not tokens_match(sent, operator.csrf_token):
            raise CsrfRejected(operator)
        _check_role(operator, roles)
        return operator

    return dependency


# -- the login form's double-submit cookie ---------------------------------------------------------


def _login_serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.signing_key(), salt="memberops.console.login-csrf")


def login_csrf_value(request: Request, settings: Settings) -> str:
    """The login form's token: the one in a still-valid ``memberops_csrf`` cookie (so two open tabs both
    work), else a new random one."""
    return _read_login_cookie(request, settings) or secrets.token_urlsafe(32)


def _read_login_cookie(request: Request, settings: Settings) -> str | None:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not cookie:
        return None
    try:
        value = _login_serializer(settings).loads(cookie, max_age=LOGIN_CSRF_MAX_AGE)
    except BadSignature:  # also covers an expired signature
        return None
    return value if isinstance(value, str) else None


def set_login_csrf_cookie(response: Response, request: Request, settings: Settings, value: str) -> None:
    """Send the login form's token as a signed cookie; the form echoes the raw value back."""
    set_cookie(response, request, settings, LOGIN_CSRF_COOKIE, _login_serializer(settings).dumps(value),
               max_age=LOGIN_CSRF_MAX_AGE)


def login_csrf_ok(request: Request, settings: Settings, sent: str) -> bool:
    """Whether the login form echoed the value of its own signed cookie: a cross-site page can do
    neither, so no one can be logged in to an attacker's account behind their back."""
    expected = _read_login_cookie(request, settings)
    return expected is not None and tokens_match(sent, expected)
