"""The loyalty console in a real browser (Debian's Chromium, Playwright) against a live server: an admin edits
the programme as YAML and saves a new version, then adjusts a member's points from the member page.
One test on purpose: browser tests are slow, and the server-side tests cover every branch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from memberops.accounts import service as accounts
from memberops.config import Settings
from memberops.db import migrate
from memberops.db.base import utcnow
from memberops.runtime import Context
from tests import factories
from tests.browser import CHROMIUM, CHROMIUM_ARGS, serving
from tests.loyalty import factories as loyalty

pytestmark = pytest.mark.browser

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)
if not CHROMIUM.exists():  # pragma: no cover - depends on the environment
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)

EMAIL = "admin@example.com"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A live console with an admin and one enrolled member holding 100 points; yields (base URL, member)."""
    context = Context.from_settings(Settings(data_dir=tmp_path_factory.mktemp("loyalty-e2e"), secret_key="e2e"))
    migrate.upgrade(context.store)
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session, name="E2E brand")
        factories.make_user(session, workspace, role="admin", email=EMAIL)
        member = loyalty.enrol(session, workspace, "c1")
        loyalty.post_order(session, workspace, "o1", ordered_at=utcnow() - timedelta(days=1))
    with serving(context, "loyalty-e2e") as base_url:
        yield base_url, member


def test_admin_edits_the_programme_then_adjusts_a_members_points(served: tuple[str, str]) -> None:
    base_url, member = served
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

            page.get_by_test_id("nav-programme").click()
            expect(page.get_by_test_id("programme-version")).to_have_text("1")
            editor = page.get_by_test_id("programme-yaml")
            editor.fill(editor.input_value().replace("welcome_points: 0", "welcome_points: oops"))
            page.get_by_test_id("programme-save").click()
            expect(page.get_by_test_id("programme-error")).to_contain_text("enrolment.welcome_points")
            expect(page.get_by_test_id("programme-version")).to_have_text("1")  # nothing saved
            editor = page.get_by_test_id("programme-yaml")
            editor.fill(editor.input_value().replace("welcome_points: oops", "welcome_points: 50"))
            page.get_by_test_id("programme-save").click()
            expect(page.get_by_test_id("flash")).to_have_text("Saved: version 2 is active.")
            expect(page.get_by_test_id("programme-welcome-points")).to_have_text("50")
            expect(page.get_by_test_id("programme-history-by")).to_have_text([EMAIL, "system:default"])

            page.goto(f"/members/{member}")
            expect(page.get_by_test_id("points-available")).to_have_text("100")
            page.get_by_test_id("adjust-points").fill("25")
            page.get_by_test_id("adjust-reason").fill("goodwill for a late delivery")
            page.get_by_test_id("adjust-submit").click()
            expect(page.get_by_test_id("points-flash")).to_have_text("Points adjusted: +25.")
            expect(page.get_by_test_id("points-available")).to_have_text("125")
            expect(page.get_by_test_id("ledger-reason").first).to_have_text("goodwill for a late delivery")
        finally:
            browser.close()
    assert foreign == [], f"the console fetched from another origin: {foreign}"
