"""Loyalty → Rewards in the console: the catalogue with its stock and the form that adds a reward —
through the real app on every store, and once in headless Chromium against a live server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.models import AuditEntry
from memberops.runtime import Context
from tests import factories
from tests.browser import Page, expect, new_console, serving, sign_in
from tests.console import csrf_in, log_in
from tests.loyalty.coupon_factories import make_template
from tests.loyalty.reward_factories import funded_member, make_reward
from tests.loyalty.test_rewards import redeem


def seed(context: Context, workspace: Workspace) -> None:
    """A coupon template, and a tote bag of which one of ten was redeemed."""
    with context.store.transaction() as session:
        make_template(session, workspace.id, "SHIP-FREE", kind="free_shipping")
        make_reward(session, workspace, "TOTE", points_price=500, cash_amount="9.90", stock=10, per_member_limit=1)
        member = funded_member(session, workspace, "c1", 600)
    redeem(context, workspace, member, "TOTE", "k1")


class TestPage:
    @pytest.fixture
    def clients(self, context: Context, workspace: Workspace) -> Iterator[tuple[TestClient, TestClient]]:
        with context.store.transaction() as session:
            factories.make_user(session, workspace, role="analyst", email="analyst@example.com")
            factories.make_user(session, workspace, role="marketer", email="marketer@example.com")
        with TestClient(create_app(context)) as analyst, TestClient(create_app(context)) as marketer:
            assert log_in(analyst, "analyst@example.com").status_code == 303
            assert log_in(marketer, "marketer@example.com").status_code == 303
            yield analyst, marketer

    def test_the_catalogue_and_the_form(self, clients: tuple[TestClient, TestClient], context: Context,
                                        workspace: Workspace) -> None:
        analyst, marketer = clients
        seed(context, workspace)
        page = analyst.get("/loyalty/rewards")
        assert page.status_code == 200 and page.text.count('data-testid="reward-row"') == 1
        assert "9 / 10" in page.text and "500 pts + 9.90 CNY" in page.text
        assert 'data-testid="create-reward-form"' not in page.text  # analysts read, they do not change
        form = marketer.get("/loyalty/rewards").text
        fields = {"csrf_token": csrf_in(form), "code": "SHIP", "name": "Free shipping coupon", "kind": "coupon",
                  "coupon_template": "SHIP-FREE", "benefit_code": "", "points": "200", "stock": ""}
        created = marketer.post("/loyalty/rewards", data=fields, follow_redirects=False)
        assert created.status_code == 303 and created.headers["location"] == "/loyalty/rewards?created=SHIP"
        assert "coupon SHIP-FREE" in marketer.get("/loyalty/rewards").text
        bad = marketer.post("/loyalty/rewards", data={**fields, "code": "BAD", "points": "0"})
        assert bad.status_code == 422 and 'data-testid="form-error"' in bad.text and 'value="BAD"' in bad.text
        taken = marketer.post("/loyalty/rewards", data=fields)
        assert taken.status_code == 409 and "exists already" in taken.text
        assert analyst.post("/loyalty/rewards", data={**fields, "code": "NO", "csrf_token": csrf_in(page.text)}
                            ).status_code == 403
        with context.store.read() as session:
            assert session.scalars(select(AuditEntry.actor_type).where(AuditEntry.action == "reward.create")).all() \
                == ["user", "user"]


# --- in a real browser ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def console_url(tmp_path_factory: pytest.TempPathFactory, console_database_url: str) -> Iterator[str]:
    context, workspace = new_console(tmp_path_factory, "rewards-e2e", console_database_url)
    seed(context, workspace)
    with serving(context, "rewards-e2e") as base_url:
        yield base_url


@pytest.mark.browser
def test_an_operator_adds_a_reward_in_chromium(page: Page) -> None:
    sign_in(page)
    page.get_by_test_id("nav-rewards").click()
    expect(page.get_by_test_id("reward-stock")).to_have_text("9 / 10")
    page.get_by_test_id("new-reward-code").fill("SHIP")
    page.get_by_test_id("new-reward-name").fill("Free shipping coupon")
    page.get_by_test_id("new-reward-kind").select_option("coupon")
    page.get_by_test_id("new-reward-template").select_option("SHIP-FREE")
    page.get_by_test_id("new-reward-points").fill("200")
    page.get_by_test_id("new-reward-stock").fill("50")
    page.get_by_test_id("create-reward").click()
    expect(page.get_by_test_id("flash")).to_have_text("Reward SHIP created.")
    expect(page.get_by_test_id("reward-code")).to_have_text(["SHIP", "TOTE"])
    expect(page.get_by_test_id("reward-stock")).to_have_text(["50 / 50", "9 / 10"])
