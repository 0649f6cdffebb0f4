"""Loyalty on a OneID merge (issue 6, "Enrolment"/OneID), on every state store: an operator's merge applied
by a resolution run moves the absorbed member's membership, points (lots keep their expiry), coupons and
benefits to the survivor once; a replayed run moves nothing; a refund of the absorbed member's order
reverses from the survivor; a split afterwards does not crash."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.identity import decisions
from memberops.identity.models import Member
from memberops.identity.resolve import resolve_identities
from memberops.loyalty import merge, points
from memberops.loyalty.coupon_models import Coupon
from memberops.loyalty.models import Membership, PointsLot, PointsMovement
from memberops.runtime import Context
from tests.loyalty.coupon_factories import make_template
from tests.loyalty.factories import WHEN, enrol, post_order, post_refund
from tests.loyalty.test_points import check_ledger


def _two_members(context: Context, workspace: Workspace) -> tuple[str, str]:
    """c1 (100 points, joined first) and c2 (50 points, spent 20, holding a coupon)."""
    from memberops.loyalty.coupons import issue_coupon

    with context.store.transaction() as session:
        a = enrol(session, workspace, "c1", phone="13800138001")
        post_order(session, workspace, "o1", customer_key="c1")
    with context.store.transaction() as session:
        b = enrol(session, workspace, "c2", phone="13900139002")
        post_order(session, workspace, "o2", customer_key="c2", paid="50.00", ordered_at=WHEN + timedelta(days=40))
        points.redeem(session, workspace, b, points=20, reason="", idempotency_key="b-r1", actor=Actor.cli())
        make_template(session, workspace.id, "WELCOME-10")
        issue_coupon(session, workspace.id, "WELCOME-10", b, "b-coupon")
    return a, b


def _merge(context: Context, workspace: Workspace) -> None:
    with context.store.transaction() as session:
        decisions.decide(session, workspace, kind="merge", record_a=("pos", "c1"), record_b=("pos", "c2"),
                         reason="same person", actor=Actor.cli())
    resolve_identities(context, workspace, actor=Actor.cli(), probabilistic=False)


def test_a_merge_moves_points_lots_membership_and_coupons_once(context: Context, workspace: Workspace) -> None:
    a, b = _two_members(context, workspace)
    with context.store.read() as session:
        b_lot_expiry = session.scalar(select(PointsLot.expires_at).where(PointsLot.member_id == b))
    _merge(context, workspace)
    with context.store.read() as session:
        assert session.get_one(Member, b).merged_into_id == a
        assert (check_ledger(session, a).available, check_ledger(session, b).available) == (130, 0)
        moved = session.scalars(select(PointsLot).where(PointsLot.member_id == a, PointsLot.origin_lot_id.is_not(None))).one()
        assert (moved.points, moved.expires_at) == (30, b_lot_expiry)  # lots keep their expiry
        kinds = session.execute(select(PointsMovement.member_id, PointsMovement.kind, PointsMovement.points)
                                .where(PointsMovement.source_type == "merge")).all()
        assert sorted(kinds) == sorted([(b, "transfer_out", 30), (a, "transfer_in", 30)])
        (membership,) = session.scalars(select(Membership)).all()
        assert membership.member_id == a
        assert session.get_one(Member, a).is_enrolled and not session.get_one(Member, b).is_enrolled
        assert session.scalars(select(Coupon.member_id)).all() == [a]
        count = session.scalar(select(func.count()).select_from(PointsMovement))
    resolve_identities(context, workspace, actor=Actor.cli(), probabilistic=False)  # a replayed run
    with context.store.transaction() as session:
        assert merge.absorb_merged_members(session, workspace).members == 0  # the daily repair finds nothing
        assert session.scalar(select(func.count()).select_from(PointsMovement)) == count
        assert check_ledger(session, a).available == 130
        # B's order refunded after the merge: its points come back from A, where its lot went
        assert post_refund(session, workspace, "r2", order_id="o2", amount="50.00").points == 50
        account = check_ledger(session, a)
        assert (account.available, account.debt) == (80, 0)  # 30 from B's lot, the 20 B spent from A's points


def test_a_split_after_a_merge_leaves_the_points_with_the_survivor(context: Context, workspace: Workspace) -> None:
    a, b = _two_members(context, workspace)
    _merge(context, workspace)
    with context.store.transaction() as session:  # the operator undoes the merge: c2 is someone else
        decisions.decide(session, workspace, kind="pin_apart", record_a=("pos", "c1"), record_b=("pos", "c2"),
                         reason="not the same after all", actor=Actor.cli())
    resolve_identities(context, workspace, actor=Actor.cli(), probabilistic=False)
    with context.store.transaction() as session:
        c2 = enrol(session, workspace, "c2", phone="13900139002")  # c2's person, apart again, joins anew
        assert c2 not in (a, b)
        assert check_ledger(session, a).available == 130  # the points stay with the survivor
        assert check_ledger(session, c2).available == 0
        assert session.get_one(Member, c2).is_enrolled
        assert post_order(session, workspace, "o3", customer_key="c2", paid="10.00").points == 10


def test_a_merge_moves_growth_referrals_and_reward_redemptions_once(context: Context, workspace: Workspace) -> None:
    """B's growth value, the friends B referred (and so the counts), B's own binding as a friend and B's
    reward redemptions become A's; A's per-member reward limit then counts what B redeemed."""
    from memberops.loyalty import referral_reports, referrals, rewards, tiers
    from memberops.loyalty.referral_models import ReferralBinding
    from memberops.loyalty.reward_errors import RewardLimitReached
    from memberops.loyalty.reward_models import RewardRedemption
    from memberops.loyalty.tier_models import GrowthMovement
    from tests.loyalty.factories import set_programme
    from tests.loyalty.reward_factories import OPERATOR, make_reward

    with context.store.transaction() as session:
        set_programme(session, workspace, referrals={"enabled": True, "referrer_points": 0, "friend_points": 0})
        a = enrol(session, workspace, "c1", phone="13800138001")
        b = enrol(session, workspace, "c2", phone="13900139002")
        carol = enrol(session, workspace, "c3", phone="13700137003")
        dave = enrol(session, workspace, "c4", phone="13600136004")
        referrals.bind_referral(session, workspace, carol, referrals.ensure_referral_code(session, workspace.id, b))
        referrals.bind_referral(session, workspace, b, referrals.ensure_referral_code(session, workspace.id, dave))
        tiers.award_growth(session, workspace.id, b, value=40, source_type="event", source_id="review",
                           idempotency_key="growth:b:1", occurred_at=WHEN)
        make_reward(session, workspace, "MUG", points_price=10, per_member_limit=1)
        points.adjust(session, workspace, b, points=50, reason="test", idempotency_key="fund-b", actor=OPERATOR)
        points.adjust(session, workspace, a, points=50, reason="test", idempotency_key="fund-a", actor=OPERATOR)
        rewards.redeem_reward(session, workspace, b, "MUG", quantity=1, idempotency_key="b-mug", actor=OPERATOR)
    _merge(context, workspace)
    with context.store.transaction() as session:
        assert session.scalars(select(GrowthMovement.member_id)).all() == [a]
        bindings = dict(session.execute(select(ReferralBinding.friend_member_id, ReferralBinding.referrer_member_id)).all())
        assert bindings == {carol: a, a: dave}
        assert referral_reports.referral_summary(session, workspace, a).counts["bindings"] == 1
        assert session.scalars(select(RewardRedemption.member_id)).all() == [a]
        with pytest.raises(RewardLimitReached):  # B's redemption counts against the survivor's limit
            rewards.redeem_reward(session, workspace, a, "MUG", quantity=1, idempotency_key="a-mug", actor=OPERATOR)
    with context.store.transaction() as session:  # a replayed repair moves nothing more
        again = merge.absorb_merged_members(session, workspace)
        assert (again.growth_movements, again.referral_bindings, again.reward_redemptions) == (0, 0, 0)
        assert session.scalar(select(func.count()).select_from(GrowthMovement)) == 1


def test_a_friend_already_bound_keeps_their_binding_and_no_one_becomes_their_own_referrer(
        context: Context, workspace: Workspace) -> None:
    from memberops.loyalty import referrals
    from memberops.loyalty.referral_models import ReferralBinding
    from tests.loyalty.factories import set_programme

    with context.store.transaction() as session:
        set_programme(session, workspace, referrals={"enabled": True, "referrer_points": 0, "friend_points": 0})
        a = enrol(session, workspace, "c1", phone="13800138001")
        b = enrol(session, workspace, "c2", phone="13900139002")
        carol = enrol(session, workspace, "c3", phone="13700137003")
        referrals.bind_referral(session, workspace, a, referrals.ensure_referral_code(session, workspace.id, carol))
        referrals.bind_referral(session, workspace, b, referrals.ensure_referral_code(session, workspace.id, a))
    _merge(context, workspace)
    with context.store.read() as session:
        bindings = sorted(session.execute(select(ReferralBinding.friend_member_id,
                                                 ReferralBinding.referrer_member_id)).all())
    assert bindings == sorted([(a, carol), (b, a)])  # A's own binding stands; A referring B stays recorded on B


class TestTierOnMerge:
    """Issue 6, tiers: "upgrade as soon as qualified" holds for growth value a merge brings; downgrades
    still wait for the evaluation; the tier history says why."""

    @staticmethod
    def _tiered_pair(context: Context, workspace: Workspace, growth_a: int, growth_b: int) -> tuple[str, str]:
        from memberops.db.base import utcnow
        from memberops.loyalty import tiers
        from tests.loyalty.test_tiers import tiered

        earned_at = utcnow() - timedelta(days=10)
        with context.store.transaction() as session:
            tiered(session, workspace, metric="growth")
            a = enrol(session, workspace, "c1", phone="13800138001")
            b = enrol(session, workspace, "c2", phone="13900139002")
            for member_id, value in ((a, growth_a), (b, growth_b)):
                tiers.award_growth(session, workspace.id, member_id, value=value, source_type="event",
                                   source_id="review", idempotency_key=f"growth:{member_id}", occurred_at=earned_at)
                points.lock_account(session, workspace.id, member_id)
                tiers.upgrade_if_qualified(session, workspace, member_id)
        return a, b

    def test_merged_growth_that_qualifies_upgrades_the_survivor_at_once(
            self, context: Context, workspace: Workspace) -> None:
        from memberops.loyalty.tier_models import MemberTier, TierChange
        from tests.loyalty.test_tiers import history, lounge_grants, tier

        a, b = self._tiered_pair(context, workspace, 400, 700)  # A none (below 500), B silver
        assert (tier(context, workspace, a), tier(context, workspace, b)) == (None, "silver")
        _merge(context, workspace)
        # A takes B's silver, then 1,100 growth value (400 + 700) is gold at once, with gold's benefits
        assert tier(context, workspace, a) == "gold"
        assert history(context, a) == [(None, "silver", "merge"), ("silver", "gold", "upgrade")]
        with context.store.read() as session:
            changes = session.scalars(select(TierChange).where(TierChange.member_id == a).order_by(TierChange.id)).all()
            assert all(change.actor == "system:merge" and b in change.note for change in changes)
            assert changes[-1].metric_value == "1100"
            assert session.scalar(select(MemberTier).where(MemberTier.member_id == b)) is None
        assert [quantity for quantity, _ in lounge_grants(context, a)] == [2]
        resolve_identities(context, workspace, actor=Actor.cli(), probabilistic=False)  # a replayed run
        with context.store.transaction() as session:
            merge.absorb_merged_members(session, workspace)
        assert len(history(context, a)) == 2 and len(lounge_grants(context, a)) == 1

    def test_a_merge_never_downgrades(self, context: Context, workspace: Workspace) -> None:
        from memberops.loyalty import tiers
        from tests.loyalty.test_tiers import history, tier

        a, b = self._tiered_pair(context, workspace, 0, 600)  # B silver
        with context.store.transaction() as session:  # A gold with no value in the window
            tiers.set_tier(session, workspace, a, "gold", reason="migrated", actor=Actor.cli())
        _merge(context, workspace)
        assert tier(context, workspace, a) == "gold"  # 600 would be silver: only the evaluation may say so
        assert history(context, a) == [(None, "gold", "manual")]
