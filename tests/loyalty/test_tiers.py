"""Tiers in the state store, on every store (issue 6, "Tiers"): upgrade at the order that crosses the
threshold, benefits once, refunds and evaluation, keep-tier and grace, windows, growth value, the tier's
earn multiplier, and evaluation run twice."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.db.base import utcnow
from memberops.loyalty import benefits, points, tiers
from memberops.loyalty.benefit_models import BenefitGrant
from memberops.loyalty.benefit_schemas import BenefitDefinitionIn
from memberops.loyalty.models import LoyaltyEvent
from memberops.loyalty.tier_models import GrowthMovement, TierChange
from memberops.runtime import Context
from tests.loyalty.factories import enrol, post_order, post_refund, set_programme

SILVER = {"code": "silver", "name": "Silver", "threshold": "500"}
GOLD = {"code": "gold", "name": "Gold", "threshold": "1000", "earn_multiplier": "2",
        "benefits": [{"code": "lounge", "quantity": 2}]}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def tiered(session: Session, workspace: Workspace, **rules: Any) -> None:
    earn = rules.pop("earn", {})
    set_programme(session, workspace, tiers=[SILVER, GOLD], tier_rules=rules, earn=earn)
    if benefits._benefit_by_code(session, workspace.id, "lounge") is None:
        benefits.define_benefit(session, workspace.id, BenefitDefinitionIn(code="lounge", name="Lounge pass",
                                                                           category="other"), actor=Actor.cli())


def tier(context: Context, workspace: Workspace, member_id: str) -> str | None:
    with context.store.read() as session:
        held = tiers.tier_of(session, workspace.id, member_id)
        return None if held is None else held.tier


def history(context: Context, member_id: str) -> list[tuple[str | None, str | None, str]]:
    with context.store.read() as session:
        return [(c.from_tier, c.to_tier, c.reason) for c in session.scalars(
            select(TierChange).where(TierChange.member_id == member_id).order_by(TierChange.id))]


def lounge_grants(context: Context, member_id: str) -> list[tuple[int, str]]:
    with context.store.read() as session:
        return [(g.quantity, g.grant_key) for g in session.scalars(
            select(BenefitGrant).where(BenefitGrant.member_id == member_id).order_by(BenefitGrant.id))]


def evaluate(context: Context, workspace: Workspace, when: str) -> tiers.TierRun:
    with context.store.transaction() as session:
        return tiers.evaluate_tiers(session, workspace, as_of=at(when))


@pytest.fixture
def member(context: Context, workspace: Workspace) -> str:
    with context.store.transaction() as session:
        return enrol(session, workspace)


def test_the_default_programme_gives_no_tier(context: Context, workspace: Workspace, member: str) -> None:
    with context.store.transaction() as session:
        post_order(session, workspace, paid="5000.00", ordered_at=utcnow() - timedelta(hours=1))
    assert tier(context, workspace, member) is None
    assert evaluate(context, workspace, "2026-12-01T00:00:00+00:00").members == 0
    with context.store.read() as session:
        assert points.points_summary(session, workspace, member).tier is None


class TestUpgrade:
    def test_the_order_that_crosses_the_threshold_upgrades_and_grants_benefits_once(
            self, context: Context, workspace: Workspace, member: str) -> None:
        recent = utcnow() - timedelta(hours=2)
        with context.store.transaction() as session:
            tiered(session, workspace)
            post_order(session, workspace, "o1", paid="300.00", ordered_at=recent)
        assert tier(context, workspace, member) is None
        with context.store.transaction() as session:
            post_order(session, workspace, "o2", paid="250.00", ordered_at=recent)
        assert tier(context, workspace, member) == "silver"
        with context.store.transaction() as session:
            outcome = post_order(session, workspace, "o3", paid="450.00", ordered_at=recent)
        assert outcome.points == 450  # earned at silver's rate: gold applies from the next order
        assert tier(context, workspace, member) == "gold"
        assert history(context, member) == [(None, "silver", "upgrade"), ("silver", "gold", "upgrade")]
        grants = lounge_grants(context, member)
        assert [quantity for quantity, _ in grants] == [2]
        with context.store.transaction() as session:  # the order replayed, then the upgrade and grant retried
            assert post_order(session, workspace, "o3", paid="450.00", ordered_at=recent).status == "duplicate"
            assert tiers.upgrade_if_qualified(session, workspace, member) is None
            programme = tiers.active_programme(session, workspace.id)
            again = tiers.grant_tier_benefits(session, workspace, programme, member, "gold", at=utcnow(),
                                              anniversary=recent.date())
            assert again.made == 0
            events = session.scalars(select(LoyaltyEvent.payload).where(
                LoyaltyEvent.member_id == member, LoyaltyEvent.type == "tier_changed").order_by(LoyaltyEvent.id)).all()
        assert lounge_grants(context, member) == grants
        assert [e["to"] for e in events] == ["silver", "gold"]

    def test_a_tier_benefit_nobody_defined_is_reported_not_dropped(
            self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, tiers=[{**GOLD, "benefits": [{"code": "spa", "quantity": 1}]}])
            outcome = post_order(session, workspace, paid="1000.00", ordered_at=utcnow() - timedelta(hours=1))
        assert tier(context, workspace, member) == "gold"
        assert [w.code for w in outcome.warnings] == ["tier_benefit_not_defined"]

    @pytest.mark.parametrize(("stacking", "expected"), [("max", 200), ("multiply", 300)])
    def test_the_tier_multiplier_combines_with_the_others(
            self, context: Context, workspace: Workspace, member: str, stacking: str, expected: int) -> None:
        recent = utcnow() - timedelta(hours=1)
        with context.store.transaction() as session:
            tiered(session, workspace, earn={"channel_multipliers": {"pos": "1.5"}, "stacking": stacking})
            first = post_order(session, workspace, "o1", paid="1000.00", ordered_at=recent)
            second = post_order(session, workspace, "o2", paid="100.00", ordered_at=recent)
        assert first.points == 1500  # not gold yet when it earned
        assert second.points == expected

    def test_refunds_reduce_spend_but_only_evaluation_downgrades(
            self, context: Context, workspace: Workspace, member: str) -> None:
        recent = utcnow() - timedelta(hours=1)
        with context.store.transaction() as session:
            tiered(session, workspace)
            post_order(session, workspace, "o1", paid="600.00", ordered_at=recent)
            post_refund(session, workspace, "r1", order_id="o1", amount="300.00", refunded_at=recent)
        assert tier(context, workspace, member) == "silver"
        with context.store.read() as session:
            status = tiers.tier_status(session, workspace, member)
        assert (status.metric_value, status.next_tier, status.missing) == (Decimal("300.00"), "gold", Decimal("700.00"))
        run = evaluate(context, workspace, (utcnow() + timedelta(days=1)).isoformat())
        assert (run.downgraded, tier(context, workspace, member)) == (1, None)
        assert history(context, member)[-1] == ("silver", None, "downgrade")


class TestEvaluation:
    def test_calendar_year_keep_tier_and_grace(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            tiered(session, workspace, window="calendar_year", keep_ratio="0.8", grace_months=3)
            kept, dropped = enrol(session, workspace, "c1"), enrol(session, workspace, "c2")
            post_order(session, workspace, "a1", customer_key="c1", paid="1000.00", ordered_at=at("2025-03-01T10:00:00+00:00"))
            post_order(session, workspace, "b1", customer_key="c2", paid="1000.00", ordered_at=at("2025-03-01T10:00:00+00:00"))
        assert evaluate(context, workspace, "2025-06-01T00:00:00+00:00").upgraded == 2
        with context.store.transaction() as session:
            post_order(session, workspace, "a2", customer_key="c1", paid="850.00", ordered_at=at("2026-02-01T10:00:00+00:00"))
            post_order(session, workspace, "b2", customer_key="c2", paid="700.00", ordered_at=at("2026-02-01T10:00:00+00:00"))
        for when in ("2026-02-15T00:00:00+00:00", "2026-04-15T00:00:00+00:00", "2027-03-31T23:59:59+00:00"):
            run = evaluate(context, workspace, when)  # 2024 (won later), then 2025 (met): both keep gold
            assert (run.downgraded, run.kept) == (0, 0), when
        run = evaluate(context, workspace, "2027-04-01T00:00:00+00:00")  # grace over: 2026 is judged
        assert (run.downgraded, run.kept) == (1, 1)
        assert (tier(context, workspace, kept), tier(context, workspace, dropped)) == ("gold", "silver")
        assert history(context, kept)[-1] == ("gold", "gold", "keep")
        assert history(context, dropped)[-1] == ("gold", "silver", "downgrade")
        assert [key.rsplit(":", 2)[1] for _, key in lounge_grants(context, kept)] == ["2025", "2026", "2027"]  # once a year held

    def test_evaluation_run_twice_changes_nothing_more(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            tiered(session, workspace, window="calendar_year", keep_ratio="0.8")
            for key, paid in (("c1", "900.00"), ("c2", "450.00"), ("c3", "100.00")):
                enrol(session, workspace, key)
                post_order(session, workspace, f"o-{key}", customer_key=key, paid=paid,
                           ordered_at=at("2025-03-01T10:00:00+00:00"))
        with context.store.transaction() as session:
            for key in ("c1", "c2", "c3"):
                member_id = enrol(session, workspace, key)
                tiers.set_tier(session, workspace, member_id, "gold", reason="migrated from the old system",
                               actor=Actor.cli(), now=at("2025-01-05T00:00:00+00:00"))

        def snapshot() -> tuple[Any, ...]:
            with context.store.read() as session:
                return (session.scalar(select(func.count()).select_from(TierChange)),
                        session.scalar(select(func.count()).select_from(BenefitGrant)),
                        session.scalar(select(func.count()).select_from(LoyaltyEvent)),
                        tuple(session.scalars(select(TierChange.to_tier).order_by(TierChange.id))))

        first = evaluate(context, workspace, "2026-01-10T00:00:00+00:00")
        after_first = snapshot()
        second = evaluate(context, workspace, "2026-01-10T00:00:00+00:00")
        assert (first.kept, first.downgraded) == (1, 2)  # 900 ≥ 800 keeps gold; 450 ≥ 400 silver; 100: none
        assert (second.kept, second.downgraded, second.upgraded, second.benefits_granted) == (0, 0, 0, 0)
        assert snapshot() == after_first

    def test_rolling_and_calendar_windows_at_their_boundaries(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            tiered(session, workspace)  # rolling 12 months, no grace, keep at the full threshold
            member_id = enrol(session, workspace)
            post_order(session, workspace, paid="600.00", ordered_at=at("2025-11-01T00:00:00+00:00"))
        assert evaluate(context, workspace, "2025-11-02T00:00:00+00:00").upgraded == 1
        assert evaluate(context, workspace, "2026-11-01T00:00:00+00:00").downgraded == 0  # the order's instant: in
        assert evaluate(context, workspace, "2026-11-01T00:00:01+00:00").downgraded == 1  # a second later: out
        assert tier(context, workspace, member_id) is None
        with context.store.transaction() as session:  # the same member under a calendar-year programme
            tiers.set_tier(session, workspace, member_id, "silver", reason="test", actor=Actor.cli(),
                           now=at("2025-11-02T00:00:00+00:00"))
            tiered(session, workspace, window="calendar_year")
        assert evaluate(context, workspace, "2026-12-31T23:59:59+00:00").downgraded == 0  # 2025 is still judged
        assert evaluate(context, workspace, "2027-01-01T00:00:00+00:00").downgraded == 1  # 2026 had nothing


class TestGrowth:
    def test_qualification_counts_growth_earned_in_the_window_not_a_balance(
            self, context: Context, workspace: Workspace, member: str) -> None:
        now = utcnow()
        with context.store.transaction() as session:
            tiered(session, workspace, metric="growth", growth_per_unit="1", growth_events={"review": 50})
            post_order(session, workspace, "old", paid="400.00", ordered_at=now - timedelta(days=400))
            post_order(session, workspace, "o1", paid="300.00", ordered_at=now - timedelta(days=1))
        assert tier(context, workspace, member) is None  # 700 earned in all, 300 in the window
        with context.store.transaction() as session:
            points.redeem(session, workspace, member, points=300, reason="gift", idempotency_key="r1", actor=Actor.cli())
            assert tiers.award_event_growth(session, workspace, member, "review", idempotency_key="review-1") == 50
            assert tiers.award_event_growth(session, workspace, member, "review", idempotency_key="review-1") == 0
            post_order(session, workspace, "o2", paid="150.00", ordered_at=now - timedelta(hours=1))
            growth = session.scalar(select(func.sum(GrowthMovement.value)).where(GrowthMovement.member_id == member))
        assert growth == 900
        assert tier(context, workspace, member) == "silver"  # 300 + 50 + 150 earned, whatever was redeemed
        with context.store.read() as session:
            assert tiers.tier_status(session, workspace, member).metric_value == Decimal(500)
