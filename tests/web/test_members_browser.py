"""Member search and the 360° profile in a real browser (Debian's Chromium, Playwright) against a live
server over a small resolved brand: sign in, search by phone, open the profile, read the timeline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from memberops.accounts import service as accounts
from memberops.config import Settings
from memberops.db import migrate
from memberops.runtime import Context
from tests import factories
from tests.browser import CHROMIUM, CHROMIUM_ARGS, serving
from tests.insight.test_profile import T0, import_customers, lake_order, resolve, write_lake

pytestmark = pytest.mark.browser

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)
if not CHROMIUM.exists():  # pragma: no cover - depends on the environment
    pytest.skip(f"{CHROMIUM} not found (apt-get install chromium)", allow_module_level=True)

EMAIL = "marketer@example.com"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A console over a resolved two-person brand with Ana's orders and events; yields (base URL, members)."""

    data_dir = tmp_path_factory.mktemp("members-e2e")
    context = Context.from_settings(Settings(data_dir=data_dir, secret_key="e2e-secret-key"))
    migrate.upgrade(context.store)
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session, name="E2E brand")
        factories.make_user(session, workspace, role="marketer", email=EMAIL)
    import_customers(context, workspace, data_dir, "crm.csv",
                     "r1,138 0013 8001,ana@example.com,LS001,Ana Lima,Ana,Lima\n"
                     "r2,13900139000,bo@example.com,LS002,Bo Chen,Bo,Chen\n")
    members = resolve(context, workspace)
    write_lake(context, workspace, "orders", [lake_order("o1", "r1", 1, "100.00"), lake_order("o2", "r1", 5, "42.50")])
    write_lake(context, workspace, "events", [
        {"channel": "crm", "event_id": "e1", "type": "coupon_claim", "customer_key": "r1",
         "occurred_at": T0 + timedelta(days=3), "properties": '{"coupon_code": "SAVE10"}'}])
    write_lake(context, workspace, "refunds", [
        {"channel": "crm", "refund_id": "rf1", "order_id": "o1", "refunded_at": T0 + timedelta(days=2),
         "amount": Decimal("10.00")}])

    with serving(context, "members-e2e") as base_url:
        yield base_url, {"ana": members["crm/r1"], "bo": members["crm/r2"]}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, served: tuple[str, dict[str, str]]) -> Iterator[Page]:
    base_url, _ = served
    context = browser.new_context(base_url=base_url)
    page = context.new_page()
    foreign: list[str] = []
    page.on("request", lambda request: foreign.append(request.url) if not request.url.startswith(base_url) else None)
    try:
        yield page
    finally:
        context.close()
    assert foreign == [], f"the console fetched from another origin: {foreign}"


def sign_in(page: Page) -> None:
    page.goto("/")
    page.get_by_test_id("login-email").fill(EMAIL)
    page.get_by_test_id("login-password").fill(factories.PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("user-email")).to_have_text(EMAIL)


class TestMembersInBrowser:
    def test_search_by_phone_then_read_the_timeline(self, page: Page, served: tuple[str, dict[str, str]]) -> None:
        base_url, members = served
        sign_in(page)

        page.get_by_test_id("nav-members").click()
        page.get_by_test_id("member-search-input").fill("138-0013-8001")
        page.get_by_test_id("member-search-submit").click()

        results = page.get_by_test_id("member-result")
        expect(results).to_have_count(1)
        expect(results.first).to_contain_text("+8613800138001")
        results.first.get_by_test_id("member-result-link").click()

        expect(page).to_have_url(f"{base_url}/members/{members['ana']}")
        expect(page.get_by_test_id("member-name")).to_have_text("Ana Lima")
        expect(page.get_by_test_id("golden-email")).to_have_text("ana@example.com")
        entries = page.get_by_test_id("timeline-entry")
        expect(entries).to_have_count(4)
        expect(entries.nth(0)).to_contain_text("Order o2 · 42.50 CNY")
        expect(entries.nth(1)).to_contain_text("coupon claim")
        expect(entries.nth(2)).to_contain_text("Refund 10.00 on order o1")
        expect(entries.nth(3)).to_contain_text("Order o1 · 100.00 CNY (refunded 10.00)")

    def test_search_by_name_finds_both_by_part(self, page: Page, served: tuple[str, dict[str, str]]) -> None:
        sign_in(page)
        page.goto("/members")
        page.get_by_test_id("member-search-input").fill("CHEN")
        page.keyboard.press("Enter")

        expect(page.get_by_test_id("member-result-link")).to_have_text(["Bo Chen"])
