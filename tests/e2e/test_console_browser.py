"""The console in a real browser: Debian's Chromium, driven by Playwright, against a live uvicorn server.

Most tests run the server in a thread of this process over a fresh data dir, on every state store, so they
need neither the CLI nor a free port found by luck: uvicorn is handed a socket already bound to port 0. One
more test starts the real ``memberops serve`` process, set up by ``memberops init`` and ``memberops users
create`` (on SQLite).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import factories
from tests.browser import (
    ADMIN_EMAIL,
    Browser,
    Page,
    expect,
    new_console,
    open_page,
    serving,
    sign_in,
    wait_for_health,
)

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def console_url(tmp_path_factory: pytest.TempPathFactory, console_database_url: str) -> Iterator[str]:
    """A console on 127.0.0.1 over a fresh data dir with one workspace and one admin; yields its base URL."""
    context, _ = new_console(tmp_path_factory, "console-e2e", console_database_url)
    with serving(context, "console-e2e") as base_url:
        yield base_url


@pytest.fixture
def cli_server(tmp_path: Path) -> Iterator[str]:
    """``memberops serve --no-jobs`` in a subprocess over a data dir set up by the CLI; yields its base URL."""
    env = {**os.environ, "MEMBEROPS_DATA_DIR": str(tmp_path), "MEMBEROPS_SECRET_KEY": "e2e-secret-key"}
    cli = [sys.executable, "-m", "memberops.cli"]
    for command in (["init"], ["users", "create", "--email", ADMIN_EMAIL, "--password", factories.PASSWORD,
                               "--role", "admin"]):
        done = subprocess.run([*cli, *command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"memberops {command[0]} failed:\n{done.stdout}\n{done.stderr}"

    with socket.socket() as probe:  # a port free a moment ago; the CLI takes a port number, not a socket
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_file = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen([*cli, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-jobs"],
                              env=env, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for_health(base_url, lambda: server.poll() is None)
        except RuntimeError as error:
            raise RuntimeError(f"{error}; its output:\n{(tmp_path / 'serve.log').read_text()}") from None
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log_file.close()


def api_get(url: str, key: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None


class TestConsoleInBrowser:
    def test_anonymous_visit_lands_on_login(self, page: Page, console_url: str) -> None:
        page.goto("/admin/keys")

        expect(page).to_have_url(f"{console_url}/login?next=/admin/keys")
        expect(page.get_by_test_id("login-form")).to_be_visible()

    def test_wrong_password_shows_the_error(self, page: Page) -> None:
        sign_in(page, password="not the password")

        expect(page.get_by_test_id("login-error")).to_have_text("Wrong e-mail or password.")
        expect(page.get_by_test_id("login-email")).to_have_value(ADMIN_EMAIL)
        assert not [c for c in page.context.cookies() if c["name"] == "memberops_session"]

    def test_right_password_shows_the_dashboard(self, page: Page, console_url: str) -> None:
        sign_in(page)

        expect(page).to_have_url(f"{console_url}/")
        expect(page.get_by_test_id("user-email")).to_have_text(ADMIN_EMAIL)
        expect(page.get_by_test_id("user-role")).to_have_text("admin")
        for card in ("members", "enrolled-members", "identity-records", "orders", "events", "outbox-backlog"):
            expect(page.get_by_test_id(f"count-{card}")).to_be_visible()
        expect(page.get_by_test_id("count-members-value")).to_have_text("0")
        session_cookie = next(c for c in page.context.cookies() if c["name"] == "memberops_session")
        assert session_cookie["httpOnly"] is True
        assert session_cookie["sameSite"] == "Lax"

    def test_create_an_api_key(self, page: Page, console_url: str) -> None:
        sign_in(page)
        page.get_by_test_id("nav-keys").click()
        page.get_by_test_id("new-key-name").fill("Browser POS")
        page.get_by_test_id("scope-read").check()
        page.get_by_test_id("scope-loyalty").check()
        page.get_by_test_id("create-key").click()

        new_key = page.get_by_test_id("new-key")
        expect(new_key).to_be_visible()
        key = new_key.input_value()
        assert key.startswith("mo_")
        status, me = api_get(f"{console_url}/api/v1/me", key)
        assert status == 200
        assert me["key_name"] == "Browser POS"

        page.get_by_test_id("back-to-keys").click()
        row = page.get_by_test_id("key-row").filter(has_text="Browser POS")
        expect(row).to_be_visible()
        assert key not in page.content()  # shown once, never again
        row.get_by_test_id("revoke-key").click()
        expect(page.get_by_test_id("key-row").filter(has_text="Browser POS").get_by_test_id("key-revoked")) \
            .to_be_visible()
        assert api_get(f"{console_url}/api/v1/me", key)[0] == 401

    def test_logout_returns_to_login(self, page: Page, console_url: str) -> None:
        sign_in(page)
        expect(page.get_by_test_id("user-email")).to_be_visible()

        page.get_by_test_id("logout").click()

        expect(page).to_have_url(f"{console_url}/login")
        expect(page.get_by_test_id("login-form")).to_be_visible()
        page.goto("/")
        expect(page).to_have_url(f"{console_url}/login")


class TestServedByTheCli:
    def test_sign_in_to_memberops_serve(self, browser: Browser, cli_server: str) -> None:
        with open_page(browser, cli_server) as page:
            sign_in(page)

            expect(page).to_have_url(f"{cli_server}/")
            expect(page.get_by_test_id("count-members")).to_be_visible()
            page.get_by_test_id("logout").click()
            expect(page.get_by_test_id("login-form")).to_be_visible()
