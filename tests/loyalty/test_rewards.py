"""The rewards catalogue in the state store — on every store: defining rewards (versioned, audited),
redeeming items, coupons and benefits for points (+ cash), the refusals, replays, cancellation and
fulfilment, and the stock and balances under concurrent redemptions (issue 6, "Ledger rules")."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from memberops.accounts.models import Workspace
from memberops.audit.models import AuditEntry
from memberops.errors import DomainError
from memberops.loyalty import benefits, coupons, points, reward_fulfilment, rewards, tiers
from memberops.loyalty.benefit_schemas import BenefitDefinitionIn
from memberops.loyalty.coupon_models import Coupon
from memberops.loyalty.errors import IdempotencyKeyReused, InsufficientPoints
from memberops.loyalty.models import PointsAllocation, PointsLot, PointsMovement
from memberops.loyalty.profile import loyalty_section
from memberops.loyalty.reward_errors import (
    FulfilmentNotAllowed,
    InvalidReward,
    RewardExists,
    RewardLimitReached,
    RewardNotAvailable,
    RewardOutOfStock,
    RewardRedemptionNotCancellable,
)
from memberops.loyalty.reward_models import Reward
from memberops.runtime import Context
from tests.loyalty.coupon_factories import make_template, order
from tests.loyalty.factories import set_programme
from tests.loyalty.reward_factories import OPERATOR, POS, funded_member, make_reward, reward_spec
from tests.loyalty.test_points import check_ledger

NOW = datetime(2026, 6, 10, 4, 0, tzinfo=UTC)


def redeem(context: Context, workspace: Workspace, member: str, code: str, key: str, quantity: int = 1,
           now: datetime = NOW) -> rewards.RewardRedeemed:
    with context.store.transaction() as session:
        return rewards.redeem_reward(session, workspace, member, code, quantity=quantity, idempotency_key=key,
                                     actor=POS, now=now)


def stock_of(context: Context, workspace: Workspace, code: str) -> int:
    with context.store.read() as session:
        return rewards.get_reward(session, workspace.id, code).redeemed_count


def available(context: Context, workspace: Workspace, member: str) -> int:
    with context.store.read() as session:
        return check_ledger(session, member).available


class TestCatalogue:
    def test_a_change_makes_a_version_and_is_audited(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            make_reward(session, workspace, "TOTE", stock=10, cash_amount="9.90")
            with pytest.raises(RewardExists):
                make_reward(session, workspace, "TOTE")
        with context.store.transaction() as session:
            same = rewards.update_reward(session, workspace, "TOTE", reward_spec("TOTE", stock=10, cash_amount="9.90"),
                                         actor=OPERATOR)
            assert same.version == 1 and same.currency == "CNY"  # the programme's currency when none given
            changed = rewards.update_reward(session, workspace, "TOTE", reward_spec("TOTE", stock=5, points_price=80),
                                            actor=OPERATOR)
            assert (changed.version, changed.points, changed.stock, changed.cash_amount) == (2, 80, 5, None)
            actions = session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("reward.%"))
                                      .order_by(AuditEntry.id)).all()
            assert actions == ["reward.create", "reward.update"]

    def test_bad_definitions_name_the_field(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            for fields, field in (({"kind": "coupon", "coupon_template": "NOPE"}, "coupon_template"),
                                  ({"kind": "benefit", "benefit_code": "nope"}, "benefit_code"),
                                  ({"tiers": ["gold"]}, "tiers")):
                with pytest.raises(InvalidReward) as caught:
                    make_reward(session, workspace, "X", **fields)
                assert caught.value.facts["field"] == field
        with pytest.raises(ValueError, match="coupon_template"):
            reward_spec("X", kind="coupon")

    def test_stock_never_drops_below_what_was_redeemed(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            make_reward(session, workspace, "TOTE", stock=5)
            member = funded_member(session, workspace, "c1", 500)
        redeem(context, workspace, member, "TOTE", "k1", quantity=3)
        with context.store.transaction() as session, pytest.raises(InvalidReward):
            rewards.update_reward(session, workspace, "TOTE", reward_spec("TOTE", stock=2), actor=OPERATOR)


class TestRedeem:
    def test_an_item_takes_points_nearest_expiry_first_and_waits_for_fulfilment(
        self, context: Context, workspace: Workspace,
    ) -> None:
        with context.store.transaction() as session:
            make_reward(session, workspace, "BLANKET", points_price=150, cash_amount="49.00", stock=10)
            member = funded_member(session, workspace, "c1", 100, now=NOW - timedelta(days=200))
            points.adjust(session, workspace, member, points=300, reason="t", idempotency_key="later", actor=OPERATOR,
                          now=NOW - timedelta(days=10))
        done = redeem(context, workspace, member, "BLANKET", "k1", quantity=2)
        assert done.balance["available"] == 100 and not done.is_replay
        r = done.redemption
        assert (r.points, r.cash_amount, r.currency, r.fulfilment_status) == (300, Decimal("98.00"), "CNY", "pending")
        assert stock_of(context, workspace, "BLANKET") == 2
        with context.store.read() as session:
            check_ledger(session, member)
            taken = session.execute(select(PointsLot.points, PointsAllocation.points)
                                    .join(PointsLot, PointsLot.id == PointsAllocation.lot_id)
                                    .where(PointsAllocation.movement_id == r.points_movement_id)
                                    .order_by(PointsLot.id)).all()
            assert [tuple(t) for t in taken] == [(100, 100), (300, 200)]  # the older lot lapses first
            movement = session.get(PointsMovement, r.points_movement_id)
            assert movement is not None and (movement.source_type, movement.source_id) == ("reward", r.id)

    def test_a_coupon_reward_issues_a_coupon_per_unit(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            make_template(session, workspace.id, "SHIP-FREE", kind="free_shipping")
            make_reward(session, workspace, "SHIP", kind="coupon", coupon_template="SHIP-FREE", points_price=50)
            member = funded_member(session, workspace, "c1", 100)
        done = redeem(context, workspace, member, "SHIP", "k1", quantity=2)
        with context.store.read() as session:
            view = rewards.redemption_views(session, [done.redemption])[0]
            held = coupons.member_coupons(session, workspace.id, member)
        assert len(view.coupon_codes) == 2 and {c.status for c in held} == {"issued"} and len(held) == 2
        assert view.fulfilment_status is None

    def test_a_benefit_reward_grants_its_quota(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            benefits.define_benefit(session, workspace.id, BenefitDefinitionIn(
                code="queue-skip", name="Queue-skip pass", category="queue_skip"), actor=OPERATOR)
            make_reward(session, workspace, "SKIP", kind="benefit", benefit_code="queue-skip", benefit_quantity=2)
            member = funded_member(session, workspace, "c1", 100)
        redeem(context, workspace, member, "SKIP", "k1")
        with context.store.read() as session:
            (held,) = benefits.member_benefits(session, workspace.id, member)
        assert held.remaining == 2

    def test_a_replay_answers_the_first_outcome_and_moves_nothing(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            make_reward(session, workspace, "TOTE", stock=5)
            member = funded_member(session, workspace, "c1", 250)
        first = redeem(context, workspace, member, "TOTE", "k1")
        again = redeem(context, workspace, member, "TOTE", "k1")
        assert again.is_replay and again.redemption.id == first.redemption.id and again.balance == first.balance
        assert stock_of(context, workspace, "TOTE") == 1 and available(context, workspace, member) == 150
        with pytest.raises(IdempotencyKeyReused):
            redeem(context, workspace, member, "TOTE", "k1", quantity=2)

    def test_refusals_move_nothing(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            make_reward(session, workspace, "TOTE", stock=3, per_member_limit=2)
            make_reward(session, workspace, "WEEKLY", period_limit={"count": 1, "period": "week"})
            make_reward(session, workspace, "GONE", valid_until=NOW.isoformat())
            make_reward(session, workspace, "OFF", is_active=False)
            rich = funded_member(session, workspace, "c1", 10_000)
            poor = funded_member(session, workspace, "c2", 99)
        expect: list[tuple[Callable[[], object], type[DomainError], str]] = [
            (lambda: redeem(context, workspace, poor, "TOTE", "p1"), InsufficientPoints, ""),
            (lambda: redeem(context, workspace, rich, "TOTE", "r1", quantity=3), RewardLimitReached, ""),
            (lambda: redeem(context, workspace, rich, "GONE", "r2"), RewardNotAvailable, "ended"),
            (lambda: redeem(context, workspace, rich, "OFF", "r3"), RewardNotAvailable, "inactive"),
        ]
        for attempt, error, reason in expect:
            with pytest.raises(error) as caught:
                attempt()
            assert not reason or caught.value.facts["reason"] == reason
        redeem(context, workspace, rich, "TOTE", "r4", quantity=2)
        with pytest.raises(RewardOutOfStock) as out:
            redeem(context, workspace, funded_member_in(context, workspace, "c3", 500), "TOTE", "r5", quantity=2)
        assert out.value.facts["remaining"] == 1
        # Weekly: the Monday of the workspace's week starts a new allowance.
        redeem(context, workspace, rich, "WEEKLY", "w1")
        with pytest.raises(RewardLimitReached) as weekly:
            redeem(context, workspace, rich, "WEEKLY", "w2", now=NOW + timedelta(days=2))
        assert weekly.value.facts["period"] == "week"
        redeem(context, workspace, rich, "WEEKLY", "w3", now=NOW + timedelta(days=6))
        assert available(context, workspace, poor) == 99 and stock_of(context, workspace, "TOTE") == 2
        assert available(context, workspace, rich) == 10_000 - 400

    def test_tier_restriction(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, tiers=[{"code": "silver", "name": "Silver", "threshold": "0"},
                                                     {"code": "gold", "name": "Gold", "threshold": "1000"}])
            make_reward(session, workspace, "LOUNGE", tiers=["gold"])
            member = funded_member(session, workspace, "c1", 500)
        with pytest.raises(RewardNotAvailable) as caught:
            redeem(context, workspace, member, "LOUNGE", "k1")
        assert caught.value.facts["reason"] == "tier"
        with context.store.transaction() as session:
            tiers.set_tier(session, workspace, member, "gold", reason="vip", actor=OPERATOR)
        assert redeem(context, workspace, member, "LOUNGE", "k2").redemption.points == 100


def funded_member_in(context: Context, workspace: Workspace, source_id: str, held: int) -> str:
    with context.store.transaction() as session:
        return funded_member(session, workspace, source_id, held)


def test_period_start_is_in_the_workspace_time_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    sunday_late = datetime(2026, 6, 14, 17, 0, tzinfo=UTC)  # Monday 01:00 in Shanghai
    assert rewards.period_start(sunday_late, "week", shanghai) == datetime(2026, 6, 14, 16, 0, tzinfo=UTC)
    assert rewards.period_start(sunday_late, "day", ZoneInfo("UTC")) == datetime(2026, 6, 14, tzinfo=UTC)
    assert rewards.period_start(sunday_late, "month", shanghai) == datetime(2026, 5, 31, 16, 0, tzinfo=UTC)
    assert rewards.period_start(sunday_late, "year", shanghai) == datetime(2025, 12, 31, 16, 0, tzinfo=UTC)


class TestCancel:
    def test_points_stock_and_coupon_come_back_once(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            make_template(session, workspace.id, "SHIP-FREE", kind="free_shipping")
            make_reward(session, workspace, "SHIP", kind="coupon", coupon_template="SHIP-FREE", points_price=80, stock=4)
            member = funded_member(session, workspace, "c1", 100)
        done = redeem(context, workspace, member, "SHIP", "k1")
        with context.store.transaction() as session:
            cancelled = reward_fulfilment.cancel_redemption(session, workspace, done.redemption.id, reason="changed mind",
                                                  actor=OPERATOR, now=NOW)
            assert (cancelled.points_returned, cancelled.is_replay, cancelled.redemption.status) == (80, False, "cancelled")
            again = reward_fulfilment.cancel_redemption(session, workspace, done.redemption.id, reason="twice", actor=OPERATOR)
            assert again.is_replay and again.points_returned == 80
        assert available(context, workspace, member) == 100 and stock_of(context, workspace, "SHIP") == 0
        with context.store.read() as session:
            (coupon,) = session.scalars(select(Coupon)).all()
            reversal = session.get_one(PointsMovement, cancelled.redemption.reversal_movement_id)
            lot = session.scalars(select(PointsLot).where(PointsLot.movement_id == reversal.id)).one()
            original = session.scalars(select(PointsLot).order_by(PointsLot.id)).first()
            actions = session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("reward_redemption%"))).all()
        assert coupon.status == "voided"
        assert reversal is not None and (reversal.kind, reversal.reverses_id) == ("reverse", done.redemption.points_movement_id)
        assert original is not None and lot.expires_at == original.expires_at  # the points keep their lapse date
        assert actions == ["reward_redemption.cancel"]
        # cancelled units count no more against the member's limit: they may redeem again
        second = redeem(context, workspace, member, "SHIP", "k2").redemption
        with context.store.transaction() as session:  # a coupon an operator voided first is no obstacle
            coupons.void_coupon_by_id(session, workspace.id, second.coupon_ids[0], "misissued", actor=OPERATOR)
            assert reward_fulfilment.cancel_redemption(session, workspace, second.id, reason="void", actor=OPERATOR,
                                             now=NOW).points_returned == 80
        with context.store.read() as session:
            card = loyalty_section(session, workspace.id, member)
        assert card is not None and card["recent_rewards"] == ("SHIP reward ×1 on 2026-06-10 (cancelled); "
                                                               "SHIP reward ×1 on 2026-06-10 (cancelled)")

    def test_what_was_used_or_sent_cannot_be_cancelled(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            make_template(session, workspace.id, "SHIP-FREE", kind="amount_off")
            make_reward(session, workspace, "SHIP", kind="coupon", coupon_template="SHIP-FREE")
            make_reward(session, workspace, "TOTE")
            member = funded_member(session, workspace, "c1", 500)
        coupon_done = redeem(context, workspace, member, "SHIP", "k1")
        item_done = redeem(context, workspace, member, "TOTE", "k2")
        with context.store.transaction() as session:
            coupon = session.get(Coupon, coupon_done.redemption.coupon_ids[0])
            assert coupon is not None
            coupons.redeem_coupon(session, workspace.id, coupon.code, order(member), now=NOW)
            reward_fulfilment.set_fulfilment(session, workspace.id, item_done.redemption.id, "shipped", note="SF123",
                                   actor=OPERATOR)
            assert reward_fulfilment.set_fulfilment(session, workspace.id, item_done.redemption.id, "shipped",
                                          actor=OPERATOR).fulfilment_note == "SF123"
            with pytest.raises(FulfilmentNotAllowed):
                reward_fulfilment.set_fulfilment(session, workspace.id, coupon_done.redemption.id, "shipped", actor=OPERATOR)
        for redemption_id in (coupon_done.redemption.id, item_done.redemption.id):
            with context.store.transaction() as session, pytest.raises(RewardRedemptionNotCancellable):
                reward_fulfilment.cancel_redemption(session, workspace, redemption_id, reason="no", actor=OPERATOR)
        assert available(context, workspace, member) == 300
        with context.store.transaction() as session:
            assert reward_fulfilment.set_fulfilment(session, workspace.id, item_done.redemption.id, "collected",
                                          actor=OPERATOR).fulfilment_status == "collected"
            with pytest.raises(FulfilmentNotAllowed):
                reward_fulfilment.set_fulfilment(session, workspace.id, item_done.redemption.id, "shipped", actor=OPERATOR)


def race(n: int, work: Callable[[int], object]) -> list[str]:
    """Run ``work(i)`` in ``n`` threads released together; each outcome is ``ok`` or the error's code."""
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
            outcome = "ok"
        except DomainError as error:
            outcome = error.code
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return sorted(outcomes)


class TestConcurrentRedemptions:
    def test_members_racing_for_the_last_units(self, context: Context, workspace: Workspace) -> None:
        """Eight members, each in their own transaction, race for three units: three win, five are told
        the stock is gone, and nobody loses points they did not spend."""
        with context.store.transaction() as session:
            make_reward(session, workspace, "LAST", stock=3, points_price=100)
            members = [funded_member(session, workspace, f"c{i}", 100) for i in range(8)]
        outcomes = race(8, lambda i: redeem(context, workspace, members[i], "LAST", f"k{i}"))
        assert outcomes == ["ok"] * 3 + ["reward_out_of_stock"] * 5
        with context.store.read() as session:
            assert session.scalars(select(Reward)).one().redeemed_count == 3
            assert sorted(check_ledger(session, m).available for m in members) == [0] * 3 + [100] * 5

    def test_one_members_terminals(self, context: Context, workspace: Workspace) -> None:
        """One member's six terminals redeem at once: 250 points pay for two, the others are refused —
        points never below zero; and six retries of one key redeem once."""
        with context.store.transaction() as session:
            make_reward(session, workspace, "TOTE", points_price=100)
            make_reward(session, workspace, "MUG", points_price=10, per_member_limit=1)
            member = funded_member(session, workspace, "c1", 250)
        outcomes = race(6, lambda i: redeem(context, workspace, member, "TOTE", f"t{i}"))
        assert outcomes == ["insufficient_points"] * 4 + ["ok"] * 2
        outcomes = race(6, lambda i: redeem(context, workspace, member, "MUG", "same"))
        assert outcomes == ["ok"] * 6
        outcomes = race(4, lambda i: redeem(context, workspace, member, "MUG", f"m{i}"))
        assert outcomes == ["reward_limit_reached"] * 4
        with context.store.read() as session:
            assert check_ledger(session, member).available == 40
            assert len(rewards.member_redemptions(session, workspace.id, member)) == 3
