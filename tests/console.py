"""What the console tests share through the real app (no browser): signing in through the login form as a
browser would, and reading what a page shows by its ``data-testid`` attributes and form fields.

The ``console`` fixture (a client over the test's context) is in ``tests/web/conftest.py``; the browser
tests have their own helpers in ``tests/browser.py``.
"""

from __future__ import annotations

import re
from html import unescape

import httpx
from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.runtime import Context
from tests import factories


def form_value(html: str, name: str) -> str:
    """The value of the first form field called ``name`` on a page."""
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no {name} field"
    return found.group(1)


def csrf_in(html: str) -> str:
    """The hidden csrf_token of the first form on a page."""
    token = form_value(html, "csrf_token")
    assert token, "an empty csrf_token field"
    return token


def text_of(html: str, testid: str) -> str:
    """The text inside the element carrying ``data-testid=testid`` (no nested tags)."""
    found = re.search(rf'data-testid="{re.escape(testid)}"[^>]*>([^<]*)<', html)
    assert found, f"no element with data-testid={testid!r}"
    return unescape(found.group(1).strip())


def texts_by_testid(html: str, testid: str, tag: str = "") -> list[str]:
    """The text of every element carrying ``data-testid=testid``, up to the first closing tag (or to the
    closing ``tag``), with the tags inside stripped and spaces collapsed."""
    found = re.findall(rf'data-testid="{re.escape(testid)}"[^>]*>(.*?)</{tag}', html, flags=re.S)
    return [" ".join(re.sub(r"<[^>]+>", "", text).split()) for text in found]


def log_in(client: TestClient, email: str, password: str = factories.PASSWORD,
           next_path: str | None = None) -> httpx.Response:
    """Sign in through the login form, as a browser would: GET the form, POST it back with its token."""
    page = client.get("/login")
    data = {"email": email, "password": password, "csrf_token": csrf_in(page.text)}
    if next_path is not None:
        data["next"] = next_path
    return client.post("/login", data=data, follow_redirects=False)


def signed_in(console: TestClient, context: Context, workspace: Workspace, role: str) -> TestClient:
    """``console`` signed in as a new operator of ``role`` (``<role>@example.com``)."""
    email = f"{role}@example.com"
    with context.store.transaction() as session:
        factories.make_user(session, workspace, role=role, email=email)
    assert log_in(console, email).status_code == 303
    return console
