"""Console → Insight → Settings in a real browser (Debian's Chromium, Playwright) against a live server: an
admin opens the settings, saves a bad value (the error names its line, nothing is saved), fixes it and saves
a new version; a form opened before a colleague's save is refused with a clear message.
One test on purpose: browser tests are slow, and the server-side tests cover every branch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memberops.accounts import service as accounts
from memberops.audit.service import Actor
from memberops.config import Settings
from memberops.db import migrate
from memberops.insight import config_store
from memberops.runtime import Context
from tests import factories
from tests.browser import CHROMIUM, CHROMIUM_ARGS, serving

pytestmark = pytest.mark.browser

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)
if not CHROMIUM.exists():  # pragma: no cover - depends on the environment
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)

EMAIL = "admin@example.com"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Context, str]]:
    """A live console with an admin; yields (base URL, context, workspace id)."""
    context = Context.from_settings(Settings(data_dir=tmp_path_factory.mktemp("insight-e2e"), secret_key="e2e"))
    migrate.upgrade(context.store)
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session, name="E2E brand")
        factories.make_user(session, workspace, role="admin", email=EMAIL)
    with serving(context, "insight-e2e") as base_url:
        yield base_url, context, workspace.id


def test_admin_edits_the_settings_and_a_stale_form_is_refused(served: tuple[str, Context, str]) -> None:
    base_url, context, workspace_id = served
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(base_url=base_url).new_page()
        foreign: list[str] = []
        page.on("request", lambda request: foreign.append(request.url) if not request.url.startswith(base_url) else None)
        try:
            page.goto("/")
            page.get_by_test_id("login-email").fill(EMAIL)
            page.get_by_test_id("login-password").fill(factories.PASSWORD)
            page.get_by_test_id("login-submit").click()

            page.get_by_test_id("nav-insight-settings").click()
            expect(page.get_by_test_id("settings-version")).to_have_text("0")
            expect(page.get_by_test_id("settings-rfm-window")).to_have_text("365")
            editor = page.get_by_test_id("settings-yaml")
            line = editor.input_value().splitlines().index("  window_days: 365") + 1
            editor.fill(editor.input_value().replace("  window_days: 365", "  window_days: 0", 1))
            page.get_by_test_id("settings-save").click()
            expect(page.get_by_test_id("settings-error-line")).to_have_text(f"line {line}")
            expect(page.get_by_test_id("settings-error")).to_contain_text("rfm.window_days")
            expect(page.get_by_test_id("settings-version")).to_have_text("0")  # nothing saved

            editor = page.get_by_test_id("settings-yaml")
            editor.fill(editor.input_value().replace("  window_days: 0", "  window_days: 730", 1))
            page.get_by_test_id("settings-save").click()
            expect(page.get_by_test_id("flash")).to_have_text("Saved: version 1 is in force.")
            expect(page.get_by_test_id("settings-rfm-window")).to_have_text("730")
            expect(page.get_by_test_id("settings-history-by")).to_have_text([EMAIL])

            with context.store.transaction() as session:  # a colleague saves version 2 while the form is open
                config_store.update(session, workspace_id, {"rfm": {"window_days": 90}}, actor=Actor.cli())
            editor = page.get_by_test_id("settings-yaml")
            editor.fill(editor.input_value().replace("new_days: 90", "new_days: 45"))
            page.get_by_test_id("settings-save").click()
            expect(page.get_by_test_id("settings-error")).to_contain_text(
                "you started from version 1, version 2 is now in force")
            expect(page.get_by_test_id("settings-version")).to_have_text("2")
            expect(page.get_by_test_id("settings-yaml")).to_contain_text("new_days: 45")  # the edit is kept
        finally:
            browser.close()
    assert foreign == [], f"the console fetched from another origin: {foreign}"
