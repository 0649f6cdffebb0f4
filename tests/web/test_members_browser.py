"""Member search and the 360° profile in a real browser (Debian's Chromium, Playwright) against a live
server over a small resolved brand: sign in, search by phone, open the profile, read the timeline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.browser import Page, expect, new_console, serving, sign_in
from tests.insight.test_profile import T0, import_customers, lake_order, resolve, write_lake

pytestmark = pytest.mark.browser

EMAIL = "marketer@example.com"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory,
           console_database_url: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A console over a resolved two-person brand with Ana's orders and events; yields (base URL, members)."""
    context, workspace = new_console(tmp_path_factory, "members-e2e", console_database_url, role="marketer",
                                     email=EMAIL)
    import_customers(context, workspace, context.settings.data_dir, "crm.csv",
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
def console_url(served: tuple[str, dict[str, str]]) -> str:
    return served[0]


def sign_in_the_marketer(page: Page) -> None:
    """Sign in and wait for the dashboard to show who is signed in."""
    sign_in(page, EMAIL)
    expect(page.get_by_test_id("user-email")).to_have_text(EMAIL)


class TestMembersInBrowser:
    def test_search_by_phone_then_read_the_timeline(self, page: Page, served: tuple[str, dict[str, str]]) -> None:
        base_url, members = served
        sign_in_the_marketer(page)

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
        sign_in_the_marketer(page)
        page.goto("/members")
        page.get_by_test_id("member-search-input").fill("CHEN")
        page.keyboard.press("Enter")

        expect(page.get_by_test_id("member-result-link")).to_have_text(["Bo Chen"])
