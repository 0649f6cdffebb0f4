"""The demo brand's loyalty setup on a small generated brand, on every store: its joined members are enrolled,
buyers have points for their past orders, the ledger adds up, coupons are issued (some redeemed), the
liability report has lines, members hold several tiers (profile and console show them), and a second run
changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.service import Actor
from memberops.demo.clock import REFERENCE_END
from memberops.demo.generate import generate_brand
from memberops.demo.load import import_brand
from memberops.demo.loyalty import setup_demo_loyalty
from memberops.identity.resolve import resolve_identities
from memberops.loyalty import points
from memberops.loyalty.coupon_models import Coupon
from memberops.loyalty.event_models import EventEarning
from memberops.loyalty.expiry import points_liability
from memberops.loyalty.models import Membership, PointsAccount, PointsLot, PointsMovement
from memberops.loyalty.programmes import active_programme
from memberops.loyalty.referral_models import ReferralBinding
from memberops.loyalty.reward_models import Reward, RewardRedemption
from memberops.loyalty.tier_models import MemberTier
from memberops.runtime import Context
from tests.console import signed_in, texts_by_testid
from tests.factories import make_key

NOW = datetime(2026, 11, 15, 2, 0, tzinfo=UTC)  # two weeks after the demo brand's history ends


def _counts(context: Context, workspace_id: str) -> tuple[int, int, int]:
    with context.store.read() as session:
        return (
            int(session.scalar(select(func.count()).select_from(PointsMovement)
                               .where(PointsMovement.workspace_id == workspace_id)) or 0),
            int(session.scalar(select(func.count()).select_from(Coupon).where(Coupon.workspace_id == workspace_id)) or 0),
            int(session.scalar(select(func.count()).select_from(Membership)
                               .where(Membership.workspace_id == workspace_id)) or 0),
        )


def test_the_demo_brand_runs_a_programme_with_points_coupons_and_a_liability(
    context: Context, workspace: Workspace, tmp_path: Path,
) -> None:
    brand = tmp_path / "brand"
    generate_brand(brand, members=300, seed=7, end=REFERENCE_END)
    import_brand(context, workspace, brand)
    resolve_identities(context, workspace, actor=Actor.system())

    summary = setup_demo_loyalty(context, workspace, now=NOW)

    assert summary.members == summary.enrolled > 0
    assert summary.backfill.orders > 0 and summary.backfill.points_earned > 0
    assert summary.backfill.events > 0 and summary.backfill.points_for_events > 0  # app sign-ins and shares
    assert summary.coupons_issued > 0 and summary.coupons_redeemed > 0 and summary.benefits_granted > 0
    # the referrals the channels recorded (referrer's member card) are bound, converted friends rewarded
    assert summary.referrals.bound > 0 and summary.referrals.rewarded > 0
    assert summary.referrals.points == summary.referrals.rewarded * 300
    assert summary.rewards_redeemed > 0
    # the evaluation after the backfill ranks members by their imported spend: most are Sprouts, a share
    # reaches the higher tiers
    assert summary.tiers is not None and sum(summary.tiers.by_tier.values()) == summary.members
    assert len(summary.tiers.by_tier) >= 3
    assert summary.tiers.by_tier["sprout"] > summary.tiers.by_tier["bloom"] > 0
    with context.store.read() as session:
        ranked = session.scalars(select(MemberTier.member_id).where(
            MemberTier.workspace_id == workspace.id, MemberTier.tier != "sprout").order_by(MemberTier.member_id)).first()
    assert ranked is not None
    with context.store.read() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        programme = active_programme(session, ws.id).programme
        assert programme.earn.member_days[0].day_of_month == 8 and programme.expiry.months == 12
        assert programme.earn.category_rules["newborn_gift"].multiplier == 2 and "sign_in" in programme.events
        assert session.scalar(select(func.count()).select_from(EventEarning).where(
            EventEarning.workspace_id == ws.id, EventEarning.event_type == "sign_in", EventEarning.streak >= 1,
            EventEarning.movement_id.is_not(None)))
        # some members check in daily long enough for the 7-day streak bonus
        assert session.scalar(select(func.count()).select_from(EventEarning).where(
            EventEarning.workspace_id == ws.id, EventEarning.event_type == "sign_in", EventEarning.streak >= 7,
            EventEarning.points > 1))
        # members who bought since they joined have points; every balance is its ledger's sum
        buyers = set(session.scalars(select(PointsMovement.member_id).where(
            PointsMovement.workspace_id == ws.id, PointsMovement.source_type == "order")).all())
        assert buyers
        for account in session.scalars(select(PointsAccount).where(PointsAccount.workspace_id == ws.id)).all():
            sums = session.execute(select(
                func.coalesce(func.sum(PointsMovement.available_delta), 0),
                func.coalesce(func.sum(PointsMovement.pending_delta), 0),
                func.coalesce(func.sum(PointsMovement.debt_delta), 0),
            ).where(PointsMovement.member_id == account.member_id)).one()
            assert (account.available, account.pending, account.debt) == tuple(sums)
            lots = session.scalars(select(PointsLot).where(PointsLot.member_id == account.member_id)).all()
            assert account.available + account.pending == sum(lot.remaining for lot in lots)
        earned = [points.points_summary(session, ws, member_id, now=NOW) for member_id in sorted(buyers)]
        assert sum(1 for balance in earned if balance.available + balance.pending > 0) > len(buyers) // 2
        assert any(balance.expiring for balance in earned)
        kinds = set(session.scalars(select(Reward.kind).join(RewardRedemption, RewardRedemption.reward_id == Reward.id)
                                    .where(Reward.workspace_id == ws.id)).all())
        assert len(kinds) >= 2  # members redeemed more than one kind of reward
        statuses = set(session.scalars(select(Coupon.status).where(Coupon.workspace_id == ws.id)).all())
        assert {"issued", "redeemed"} <= statuses
        liability = points_liability(session, ws, as_of=NOW)
        assert liability.points > 0 and liability.by_expiry_month
        holder = session.scalars(select(Coupon.member_id).where(Coupon.workspace_id == ws.id,
                                                                Coupon.member_id.in_(sorted(buyers)))).first()
        assert holder is not None

    # the 360° profile shows it (points as of today: the card reads the clock)
    with context.store.transaction() as session:
        auth = {"Authorization": f"Bearer {make_key(session, workspace, 'read')}"}
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        card = client.get(f"/api/v1/members/{holder}", headers=auth).json()["loyalty"]
    assert card["status"] == "active" and "points_available" in card and card["coupons"]
    assert len(card["referral_code"]) == 8
    with context.store.read() as session:
        referrer = session.scalars(select(ReferralBinding.referrer_member_id).where(
            ReferralBinding.workspace_id == workspace.id, ReferralBinding.status == "rewarded")).first()
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        mine = client.get(f"/api/v1/members/{referrer}/referrals", headers=auth).json()
    assert mine["counts"]["rewarded"] + mine["counts"]["pending"] >= 1 and mine["points_earned"] >= 200
    # a ranked member's profile and console page show the tier and how they got it
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        card = client.get(f"/api/v1/members/{ranked}", headers=auth).json()["loyalty"]
        assert card["tier"] in {"bloom", "blossom", "golden"} and card["tier_since"] == NOW.date().isoformat()
        assert card["tier_history"] == [f"{NOW.date().isoformat()} none → {card['tier']} (upgrade)"]
        page = signed_in(client, context, workspace, "marketer").get(f"/members/{ranked}")
    assert page.status_code == 200
    assert texts_by_testid(page.text, "points-tier-name")[0] in {"Bloom", "Blossom", "Golden Acorn"}
    assert f"none → {card['tier']} (upgrade)" in page.text and 'data-testid="points-tier-history"' in page.text

    before = _counts(context, workspace.id)
    again = setup_demo_loyalty(context, workspace, now=NOW)
    assert again.enrolled == 0 and again.backfill.orders == 0 and again.coupons_issued == 0
    assert again.referrals.bound == again.referrals.rewarded == 0
    assert again.rewards_redeemed == 0
    assert again.backfill.events == 0
    assert again.tiers is not None and again.tiers.upgraded == again.tiers.benefits_granted == 0
    assert _counts(context, workspace.id) == before
