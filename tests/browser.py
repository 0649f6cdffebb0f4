"""What the browser tests share: where Chromium is and how it is started, a console served in a thread over a
fresh data dir, a page that fails its test when it loads anything off-site, and the sign-in form.

The server runs in this process over the test's context; uvicorn is handed a socket already bound to port
0, so no free port is found by luck. The fixtures built on these (``browser``, ``page``,
``console_database_url``) are in ``tests/conftest.py``; a module gives ``page`` its console through a
``console_url`` fixture, and serves it on every state store by building it on ``console_database_url``.

Importing this module skips the importing test module when Playwright is not installed; a missing Chromium
skips only the tests that start it (the ``browser`` fixture).
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from memberops.accounts import service as accounts
from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.config import Settings
from memberops.db import migrate
from memberops.runtime import Context
from tests import factories

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)

__all__ = ["ADMIN_EMAIL", "CHROMIUM", "Browser", "Page", "chromium", "expect", "new_console", "open_page", "serving",
           "sign_in", "wait_for_health"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
STARTUP_SECONDS = 90  # a limit, not a wait: polled every 0.1 s; a loaded machine or xdist worker needs more than 30 s
ADMIN_EMAIL = "admin@example.com"


def wait_for_health(base_url: str, is_running: Callable[[], bool]) -> None:
    """Poll ``/health`` until it answers 200, for at most ``STARTUP_SECONDS``."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if not is_running():
            raise RuntimeError("the console server stopped while starting")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the console server did not answer /health within {STARTUP_SECONDS} s")


@contextmanager
def serving(context: Context, name: str) -> Iterator[str]:
    """The console and API of ``context`` on 127.0.0.1 in a thread; yields the base URL, closes the context."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(context), log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        wait_for_health(base_url, thread.is_alive)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        context.close()


def new_console(tmp_path_factory: pytest.TempPathFactory, name: str, database_url: str, *, role: str = "admin",
                email: str = ADMIN_EMAIL) -> tuple[Context, Workspace]:
    """A context over a fresh data dir and the store at ``database_url`` (the ``console_database_url``
    fixture: "" for SQLite in the data dir), built by the migrations, with the workspace "E2E brand" and one
    user of ``role`` who signs in as ``email`` with ``factories.PASSWORD``."""
    context = Context.from_settings(Settings(data_dir=tmp_path_factory.mktemp(name), database_url=database_url,
                                             secret_key="e2e-secret-key"))
    migrate.upgrade(context.store)
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session, name="E2E brand")
        factories.make_user(session, workspace, role=role, email=email)
    return context, workspace


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless; skips the test when it is not installed."""
    if not CHROMIUM.exists():  # pragma: no cover - depends on the environment
        pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def open_page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A fresh browser profile (no cookies) on ``base_url``; fails the test if the page loads anything off-site."""
    context = browser.new_context(base_url=base_url)
    page = context.new_page()
    foreign: list[str] = []
    page.on("request", lambda request: foreign.append(request.url) if not request.url.startswith(base_url) else None)
    try:
        yield page
    finally:
        context.close()
    assert foreign == [], f"the console fetched from another origin: {foreign}"


def sign_in(page: Page, email: str = ADMIN_EMAIL, password: str = factories.PASSWORD) -> None:
    """Fill in and send the login form, as an operator would."""
    page.goto("/")
    page.get_by_test_id("login-email").fill(email)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-submit").click()
