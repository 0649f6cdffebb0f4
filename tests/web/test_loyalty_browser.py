"""The loyalty console in a real browser (Debian's Chromium, Playwright) against a live server: an admin edits
the programme as YAML and saves a new version, then adjusts a member's points from the member page.
One test on purpose: browser tests are slow, and the server-side tests cover every branch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from memberops.db.base import utcnow
from tests.browser import ADMIN_EMAIL, Page, expect, new_console, serving, sign_in
from tests.loyalty import factories as loyalty

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, console_database_url: str) -> Iterator[tuple[str, str]]:
    """A live console with an admin and one enrolled member holding 100 points; yields (base URL, member)."""
    context, workspace = new_console(tmp_path_factory, "loyalty-e2e", console_database_url)
    with context.store.transaction() as session:
        member = loyalty.enrol(session, workspace, "c1")
        loyalty.post_order(session, workspace, "o1", ordered_at=utcnow() - timedelta(days=1))
    with serving(context, "loyalty-e2e") as base_url:
        yield base_url, member


@pytest.fixture(scope="module")
def console_url(served: tuple[str, str]) -> str:
    return served[0]


def test_admin_edits_the_programme_then_adjusts_a_members_points(page: Page, served: tuple[str, str]) -> None:
    _, member = served
    sign_in(page)

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
    expect(page.get_by_test_id("programme-history-by")).to_have_text([ADMIN_EMAIL, "system:default"])

    page.goto(f"/members/{member}")
    expect(page.get_by_test_id("points-available")).to_have_text("100")
    page.get_by_test_id("adjust-points").fill("25")
    page.get_by_test_id("adjust-reason").fill("goodwill for a late delivery")
    page.get_by_test_id("adjust-submit").click()
    expect(page.get_by_test_id("points-flash")).to_have_text("Points adjusted: +25.")
    expect(page.get_by_test_id("points-available")).to_have_text("125")
    expect(page.get_by_test_id("ledger-reason").first).to_have_text("goodwill for a late delivery")
