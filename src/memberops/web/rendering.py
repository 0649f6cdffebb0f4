"""Rendering console pages: the Jinja2 environment, the console's route class and its error pages.

Console routes answer with HTML of their own, never with the API's problem+json: :class:`ConsoleRoute`
turns a :class:`ConsolePageError` (raised by a dependency or a view) into a page and puts the security
headers on every console response. The headers live here, on the console's routes, rather than in a
global middleware, so the API's responses stay exactly as the API defines them.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

import memberops

WEB_DIR = Path(__file__).parent
STATIC_DIR = WEB_DIR / "static"

# default-src 'self' forbids inline scripts and styles: templates carry neither, on purpose.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages hold CSRF tokens, customer counts and, once, a new API key: no cache may keep them.
    "Cache-Control": "no-store",
}


def format_when(value: datetime | None, timezone: str = "UTC") -> str:
    """A stored UTC time as the workspace reads it: ``2024-05-01 14:03`` in its time zone, or ``—``."""
    if value is None:
        return "—"
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo("UTC")
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")


def sentence(message: str) -> str:
    """A service's message (``passwords need at least 10 characters``) as a sentence for a page."""
    message = message.strip()
    if not message:
        return message
    message = message[0].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else f"{message}."


def short_id(value: str) -> str:
    """The tail of a long id, enough to tell entries apart on a page (the full id is in its title).

    The tail, not the head: ids are UUIDv7, whose leading digits are a timestamp shared by neighbours.
    """
    return f"…{value[-8:]}" if len(value) > 12 else value


def _build_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=WEB_DIR / "templates")
    templates.env.filters["when"] = format_when
    templates.env.filters["thousands"] = lambda n: f"{n:,}"
    templates.env.filters["sentence"] = sentence
    templates.env.filters["short_id"] = short_id
    templates.env.globals["version"] = memberops.__version__
    return templates


TEMPLATES = _build_templates()


def render(request: Request, template: str, *, status_code: int = 200, **values: Any) -> Response:
    """Render ``template`` with ``values``; Jinja2 autoescapes every value."""
    return TEMPLATES.TemplateResponse(request, template, values, status_code=status_code)


def error_page(request: Request, status_code: int, title: str, message: str, **values: Any) -> Response:
    """A console error page: what went wrong, in words, and a way back."""
    return render(request, "error.html", status_code=status_code, status=status_code, title=title,
                  message=message, **values)


class ConsolePageError(Exception):
    """A request the console answers with a page of its own (a redirect, a 403 page …)."""

    def response(self, request: Request) -> Response:
        raise NotImplementedError


class ConsoleRoute(APIRoute):
    """An API route for console pages: HTML errors and security headers on every response."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except ConsolePageError as error:
                response = error.response(request)
            except RequestValidationError:
                # Forms declare defaults for every field, so this means a hand-made request.
                response = error_page(request, 422, "That request was not understood",
                                      "Some of what was sent is missing or malformed. Go back and try again.")
            response.headers.update(SECURITY_HEADERS)
            return response

        return console_handler
