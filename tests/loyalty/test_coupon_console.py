"""The loyalty console pages: coupon templates, a member's coupons and benefits — through the real app on
every store, and in headless Chromium against a live server."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.service import Actor
from memberops.loyalty import benefits, coupons
from memberops.loyalty.benefit_schemas import BenefitDefinitionIn
from memberops.loyalty.coupon_rules import display_code
from memberops.runtime import Context
from tests import factories
from tests.browser import Page, expect, new_console, serving, sign_in
from tests.console import log_in
from tests.loyalty.coupon_factories import make_member, make_template, order


def seed(context: Context, workspace_id: str) -> tuple[str, str]:
    """A template, a member holding one used and one unused coupon, and a benefit grant; (member, code)."""
    with context.store.transaction() as session:
        make_template(session, workspace_id, "SPRING-20", stock=50)
        make_template(session, workspace_id, "TENPCT", kind="percent_off", max_discount=Decimal("30"))
        member = make_member(session, workspace_id)
        used = coupons.issue_coupon(session, workspace_id, "SPRING-20", member, "k1").coupon
        unused = coupons.issue_coupon(session, workspace_id, "TENPCT", member, "k2").coupon
        coupons.redeem_coupon(session, workspace_id, used.code, order(member))
        benefits.define_benefit(session, workspace_id, BenefitDefinitionIn(
            code="queue-skip", name="Queue-skip pass", category="queue_skip"), actor=Actor.cli())
        benefits.grant_benefit(session, workspace_id, member, "queue-skip", 3, "api", "g1")
        return member, unused.code


class TestPages:
    @pytest.fixture
    def client(self, context: Context, workspace: Workspace) -> Iterator[TestClient]:
        with context.store.transaction() as session:
            factories.make_user(session, workspace, role="analyst", email="analyst@example.com")
        with TestClient(create_app(context)) as client:
            assert log_in(client, "analyst@example.com").status_code == 303
            yield client

    def test_templates_and_a_member(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        member, code = seed(context, workspace.id)
        page = client.get("/loyalty/coupons")
        assert page.status_code == 200
        assert page.text.count('data-testid="coupon-template-row"') == 2
        assert "1 / 50" in page.text and "10% off (max 30)" in page.text
        looked_up = client.get(f"/loyalty/coupons?member_id={member}", follow_redirects=False)
        assert looked_up.status_code == 303 and looked_up.headers["location"] == f"/loyalty/members/{member}"
        mine = client.get(f"/loyalty/members/{member}").text
        assert mine.count('data-testid="member-coupon-row"') == 2 and display_code(code) in mine
        assert 'data-testid="member-benefit-remaining">3<' in mine
        assert client.get("/loyalty/members/nobody").status_code == 404

    def test_anonymous_visitors_log_in_first(self, context: Context) -> None:
        with TestClient(create_app(context)) as anonymous:
            response = anonymous.get("/loyalty/coupons", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login")


# --- in a real browser ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seeded_server(tmp_path_factory: pytest.TempPathFactory,
                  console_database_url: str) -> Iterator[tuple[str, str]]:
    """A live console over a fresh data dir with an admin and seeded coupons; yields (base URL, member)."""
    context, workspace = new_console(tmp_path_factory, "coupons-e2e", console_database_url)
    member, _ = seed(context, workspace.id)
    with serving(context, "coupons-e2e") as base_url:
        yield base_url, member


@pytest.fixture(scope="module")
def console_url(seeded_server: tuple[str, str]) -> str:
    return seeded_server[0]


@pytest.mark.browser
def test_an_operator_finds_a_members_coupons_in_chromium(page: Page, seeded_server: tuple[str, str]) -> None:
    _, member = seeded_server
    sign_in(page)
    page.get_by_test_id("nav-coupons").click()
    expect(page.get_by_test_id("coupon-template-row")).to_have_count(2)
    expect(page.get_by_test_id("coupons-redeemed-value")).to_have_text("1")
    page.get_by_test_id("member-lookup-id").fill(member)
    page.get_by_test_id("member-lookup-submit").click()
    expect(page.get_by_test_id("member-id")).to_have_text(member)
    expect(page.get_by_test_id("member-coupon-status")).to_have_text(["issued", "redeemed"])
    expect(page.get_by_test_id("member-benefit-remaining")).to_have_text("3")
