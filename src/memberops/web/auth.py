"""Signing in to and out of the console."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response

from memberops.accounts import service as accounts
from memberops.accounts.errors import AuthenticationFailed
from memberops.api.deps import ContextDep
from memberops.web.rendering import ConsoleRoute, render
from memberops.web.session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    ConsoleSession,
    Operator,
    current_operator,
    delete_cookie,
    login_csrf_ok,
    login_csrf_value,
    require_form,
    safe_next,
    see_other,
    set_cookie,
    set_login_csrf_cookie,
)

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

WRONG_CREDENTIALS = "Wrong e-mail or password."
STALE_FORM = "This login form had expired or was not sent from this site. Please sign in again."


def _login_form(request: Request, context: ContextDep, *, next_path: str, status_code: int = 200,
                email: str = "", error: str = "") -> Response:
    token = login_csrf_value(request, context.settings)
    response = render(request, "login.html", status_code=status_code, csrf_token=token, next_path=next_path,
                      email=email, error=error)
    set_login_csrf_cookie(response, request, context.settings, token)
    return response


@router.get("/login")
def login_page(request: Request, context: ContextDep, session: ConsoleSession, next: str = "/") -> Response:
    """The login form; an operator already signed in goes straight on to ``next``."""
    if current_operator(request, session) is not None:
        return see_other(safe_next(next))
    return _login_form(request, context, next_path=safe_next(next))


@router.post("/login")
def log_in(
    request: Request, context: ContextDep, session: ConsoleSession,
    email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/",
) -> Response:
    """Check the e-mail and password; on success set the session cookie and go on to ``next``.

    Every failure reads the same (no hint whether the e-mail exists) and sets no session cookie.
    """
    next_path = safe_next(next)
    if not login_csrf_ok(request, context.settings, csrf_token):
        return _login_form(request, context, next_path=next_path, status_code=403, email=email, error=STALE_FORM)
    try:
        opened = accounts.log_in(session, email=email, password=password, hours=context.settings.session_hours)
    except AuthenticationFailed:
        return _login_form(request, context, next_path=next_path, status_code=401, email=email,
                           error=WRONG_CREDENTIALS)
    response = see_other(next_path)
    set_cookie(response, request, context.settings, SESSION_COOKIE, opened.token,
               max_age=context.settings.session_hours * 3600)
    delete_cookie(response, request, context.settings, LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def log_out(
    request: Request, context: ContextDep, session: ConsoleSession,
    operator: Annotated[Operator, Depends(require_form())],
) -> Response:
    """End the operator's session (the stored one, not just the cookie) and show the login page."""
    accounts.log_out(session, operator.token)
    response = see_other("/login")
    delete_cookie(response, request, context.settings, SESSION_COOKIE)
    return response
