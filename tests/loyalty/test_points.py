"""The points ledger in the state store — on every store: earning on live orders, reversal on refunds,
redemption, adjustment, expiry, debts, idempotency, and the invariants that hold after any sequence.

Regression tests name the defect other loyalty systems are known for (issue 6, "Ledger rules")."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from memberops.accounts.models import Workspace
from memberops.audit.models import AuditEntry
from memberops.audit.service import Actor
from memberops.ingest.models import LiveOrder, LiveRefund
from memberops.loyalty import expiry, points
from memberops.loyalty.errors import IdempotencyKeyReused, InsufficientPoints, MemberNotEnrolled
from memberops.loyalty.models import LoyaltyEvent, PointsAccount, PointsAllocation, PointsLot, PointsMovement
from memberops.runtime import Context
from tests.conftest import PG_URL
from tests.loyalty.factories import WHEN, enrol, live_order, post_order, post_refund, set_programme

POS = Actor("api_key", "pos-1")


def check_ledger(session: Session, member_id: str) -> PointsAccount:
    """The invariants: the cached balance is the ledger's sum and the lots' remainder; every lot's remainder
    is its points less what was allocated from it; nothing negative; a debt only with nothing available."""
    account = session.scalars(select(PointsAccount).where(PointsAccount.member_id == member_id)).one()
    sums = session.execute(select(
        func.coalesce(func.sum(PointsMovement.available_delta), 0), func.coalesce(func.sum(PointsMovement.pending_delta), 0),
        func.coalesce(func.sum(PointsMovement.debt_delta), 0),
    ).where(PointsMovement.member_id == member_id)).one()
    assert (account.available, account.pending, account.debt) == tuple(sums)
    lots = session.scalars(select(PointsLot).where(PointsLot.member_id == member_id)).all()
    for lot in lots:
        allocated = session.execute(select(func.coalesce(func.sum(PointsAllocation.points), 0))
                                    .where(PointsAllocation.lot_id == lot.id)).scalar_one()
        assert 0 <= lot.remaining == lot.points - allocated
    assert account.available == sum(lot.remaining for lot in lots if lot.state == "available")
    assert account.pending == sum(lot.remaining for lot in lots if lot.state == "pending")
    assert account.available >= 0 and account.pending >= 0 and account.debt >= 0
    assert account.debt == 0 or account.available == 0
    return account


def balance(context: Context, workspace: Workspace, member_id: str, now: datetime | None = None) -> points.PointsSummary:
    with context.store.read() as session:
        return points.points_summary(session, workspace, member_id, now=now)


@pytest.fixture
def member(context: Context, workspace: Workspace) -> str:
    with context.store.transaction() as session:
        return enrol(session, workspace)


class TestEarning:
    def test_an_enrolled_buyer_earns_on_the_paid_amount(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            outcome = post_order(session, workspace, paid="88.80", gross_amount=Decimal("100.00"),
                                 discount_amount=Decimal("11.20"))
        assert outcome.points == 88
        assert balance(context, workspace, member).available == 88

    def test_a_buyer_not_enrolled_earns_nothing(self, context: Context, workspace: Workspace) -> None:
        from memberops.identity.service import resolve_customer

        with context.store.transaction() as session:
            resolve_customer(session, workspace, channel="pos", source_id="c9", identifiers={})
            assert post_order(session, workspace, "o9", customer_key="c9").points is None
            assert post_order(session, workspace, "o10", customer_key="unknown").points is None

    def test_a_member_enrolled_elsewhere_gets_a_membership_on_the_first_order(
            self, context: Context, workspace: Workspace) -> None:
        from memberops.identity.service import resolve_customer

        with context.store.transaction() as session:
            resolve_customer(session, workspace, channel="pos", source_id="c2", identifiers={}, is_enrolled=True)
            assert post_order(session, workspace, "o2", customer_key="c2").points == 100

    def test_regression_pos_retry_does_not_double_points(self, context: Context, workspace: Workspace, member: str) -> None:
        """Offline POS retries doubled points: the same order posted again earns nothing more."""
        with context.store.transaction() as session:
            assert post_order(session, workspace).points == 100
        with context.store.transaction() as session:
            assert post_order(session, workspace).status == "duplicate"
            # and even if the hook ran twice for one order, the ledger's key would refuse it
            assert points.earn_for_order(session, workspace, live_order(session, "o1")) == 100
        with context.store.read() as session:
            assert check_ledger(session, member).available == 100
            assert session.scalar(select(func.count()).select_from(PointsMovement)) == 1

    def test_pending_period_then_available(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, earn={"pending_days": 7})
            order = LiveOrder(workspace_id=workspace.id, channel="pos", order_id="o1", customer_key="c1",
                              member_id=member, ordered_at=WHEN, paid_amount=Decimal("50.00"))
            session.add(order)
            session.flush()
            assert points.earn_for_order(session, workspace, order, now=WHEN) == 50
        assert (balance(context, workspace, member, WHEN).pending, balance(context, workspace, member, WHEN).available) == (50, 0)
        with context.store.transaction() as session, pytest.raises(InsufficientPoints):
            points.redeem(session, workspace, member, points=10, reason="", idempotency_key="r", actor=POS,
                          now=WHEN + timedelta(days=6))
        later = WHEN + timedelta(days=7)
        assert balance(context, workspace, member, later).available == 50
        with context.store.transaction() as session:
            result = points.redeem(session, workspace, member, points=10, reason="", idempotency_key="r", actor=POS,
                                   now=later)
            assert result.balance == {"available": 40, "pending": 0, "debt": 0}
            check_ledger(session, member)

    def test_member_day_in_the_workspace_time_zone(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            session.get_one(Workspace, workspace.id).timezone = "Asia/Shanghai"
            set_programme(session, workspace, earn={"member_days": [{"day_of_month": 8, "multiplier": 2}]})
            # 2026-03-07 17:00 UTC is already the 8th in Shanghai
            assert post_order(session, workspace, "o1", ordered_at=datetime(2026, 3, 7, 17, tzinfo=UTC)).points == 200
            assert post_order(session, workspace, "o2", ordered_at=datetime(2026, 3, 7, 15, tzinfo=UTC)).points == 100

    def test_daily_cap(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, earn={"daily_cap": 150})
            assert post_order(session, workspace, "o1").points == 100
            assert post_order(session, workspace, "o2").points == 50
            assert post_order(session, workspace, "o3").points == 0
            assert post_order(session, workspace, "o4", ordered_at=WHEN + timedelta(days=1)).points == 100

    def test_welcome_points(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, enrolment={"welcome_points": 30})
            member_id = enrol(session, workspace, "c5")
            enrol(session, workspace, "c5")
            assert check_ledger(session, member_id).available == 30


class TestRefunds:
    def test_regression_refund_reverses_points(self, context: Context, workspace: Workspace, member: str) -> None:
        """Refunds that never reversed points: a full refund takes every point of the order back."""
        with context.store.transaction() as session:
            post_order(session, workspace)
            assert post_refund(session, workspace).points == 100
            assert check_ledger(session, member).available == 0

    def test_regression_refund_never_deducts_twice(self, context: Context, workspace: Workspace, member: str) -> None:
        """Refunds that deducted twice: a replayed refund is a duplicate, and the ledger refuses it too."""
        with context.store.transaction() as session:
            post_order(session, workspace, paid="200.00")
            assert post_refund(session, workspace, amount="50.00").points == 50
            assert post_refund(session, workspace, amount="50.00").status == "duplicate"
            refund = session.scalars(select(LiveRefund)).one()
            assert points.reverse_for_refund(session, workspace, refund, live_order(session, "o1")) == 50
            assert check_ledger(session, member).available == 150

    def test_partial_refunds_reverse_in_proportion(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            post_order(session, workspace, paid="123.45")  # 123 points
            assert post_refund(session, workspace, "r1", amount="61.73").points == 62
            assert post_refund(session, workspace, "r2", amount="61.72").points == 61
            assert check_ledger(session, member).available == 0

    def test_spent_points_become_a_debt_that_later_earnings_settle(
            self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            post_order(session, workspace)
            points.redeem(session, workspace, member, points=80, reason="gift", idempotency_key="k1", actor=POS)
            assert post_refund(session, workspace).points == 100
            account = check_ledger(session, member)
            assert (account.available, account.debt) == (0, 80)
            assert post_order(session, workspace, "o2", paid="50.00").points == 50
            account = check_ledger(session, member)
            assert (account.available, account.debt) == (0, 30)
            post_order(session, workspace, "o3", paid="50.00")
            assert (check_ledger(session, member).available, account.debt) == (20, 0)

    def test_spent_points_show_as_a_negative_balance_when_allowed(
            self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, allow_negative=True)
            post_order(session, workspace)
            points.redeem(session, workspace, member, points=80, reason="", idempotency_key="k1", actor=POS)
            post_refund(session, workspace)
        summary = balance(context, workspace, member)
        assert (summary.available, summary.debt) == (-80, 80)

    def test_spent_points_come_from_other_points_first(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            post_order(session, workspace, "o1")
            post_order(session, workspace, "o2", ordered_at=WHEN + timedelta(days=1))
            points.redeem(session, workspace, member, points=150, reason="", idempotency_key="k1", actor=POS)
            post_refund(session, workspace, order_id="o2")  # o2's lot is nearly untouched: 50 from it... and o1's
            account = check_ledger(session, member)
            assert (account.available, account.debt) == (0, 50)


class TestRedeem:
    def test_insufficient_points_moves_nothing(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            post_order(session, workspace)
        with context.store.transaction() as session, pytest.raises(InsufficientPoints) as raised:
            points.redeem(session, workspace, member, points=101, reason="", idempotency_key="k", actor=POS)
        assert raised.value.facts == {"member_id": member, "requested": 101, "available": 100}
        with context.store.read() as session:
            assert check_ledger(session, member).available == 100

    def test_replay_returns_the_first_outcome(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            post_order(session, workspace)
            first = points.redeem(session, workspace, member, points=30, reason="", idempotency_key="k", actor=POS)
            points.redeem(session, workspace, member, points=30, reason="", idempotency_key="k2", actor=POS)
            again = points.redeem(session, workspace, member, points=30, reason="", idempotency_key="k", actor=POS)
            assert again.is_replay and again.movement.id == first.movement.id
            assert again.balance == first.balance == {"available": 70, "pending": 0, "debt": 0}
            assert check_ledger(session, member).available == 40
            with pytest.raises(IdempotencyKeyReused):
                points.redeem(session, workspace, member, points=31, reason="", idempotency_key="k", actor=POS)

    def test_not_enrolled(self, context: Context, workspace: Workspace) -> None:
        from memberops.identity.service import resolve_customer

        with context.store.transaction() as session:
            person = resolve_customer(session, workspace, channel="pos", source_id="x", identifiers={}).member.id
            with pytest.raises(MemberNotEnrolled):
                points.redeem(session, workspace, person, points=1, reason="", idempotency_key="k", actor=POS)

    def test_regression_spends_are_linked_to_lots_so_expiry_takes_only_what_is_left(
            self, context: Context, workspace: Workspace, member: str) -> None:
        """Spends not linked to lots made balances collapse at expiry: a redemption consumes the lot nearest
        to expiry, so when that lot lapses only its unspent remainder expires."""
        with context.store.transaction() as session:
            post_order(session, workspace, "o1", ordered_at=WHEN)  # 100, lapses WHEN + 12 months
            post_order(session, workspace, "o2", ordered_at=WHEN + timedelta(days=60))  # 100, lapses 2 months later
            points.redeem(session, workspace, member, points=120, reason="", idempotency_key="k", actor=POS)
        lapse = datetime(2027, 3, 2, tzinfo=UTC)
        with context.store.transaction() as session:
            run = expiry.run_expiry(session, workspace, as_of=lapse)
            assert run.expired_points == 0  # the first lot was spent entirely
            assert check_ledger(session, member).available == 80
        with context.store.transaction() as session:
            assert expiry.run_expiry(session, workspace, as_of=lapse + timedelta(days=61)).expired_points == 80
            assert check_ledger(session, member).available == 0


class TestConcurrentRedemptions:
    def test_parallel_redemptions_never_overdraw(self, context: Context, workspace: Workspace, member: str) -> None:
        """Twenty terminals redeem 10 points each, at once, from a balance of 100: ten succeed, ten are
        refused, the balance ends at zero — each thread in its own transaction."""
        with context.store.transaction() as session:
            post_order(session, workspace)
        barrier = threading.Barrier(20)
        results: list[str] = []
        lock = threading.Lock()

        def terminal(n: int) -> None:
            barrier.wait()
            try:
                with context.store.transaction() as session:
                    points.redeem(session, workspace, member, points=10, reason="", idempotency_key=f"t{n}", actor=POS)
                outcome = "ok"
            except InsufficientPoints:
                outcome = "refused"
            with lock:
                results.append(outcome)

        threads = [threading.Thread(target=terminal, args=(n,)) for n in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(results) == ["ok"] * 10 + ["refused"] * 10
        with context.store.read() as session:
            assert check_ledger(session, member).available == 0

    def test_parallel_replays_of_one_key_redeem_once(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            post_order(session, workspace)
        barrier = threading.Barrier(8)
        ids: list[int] = []

        def terminal() -> None:
            barrier.wait()
            with context.store.transaction() as session:
                result = points.redeem(session, workspace, member, points=10, reason="", idempotency_key="same",
                                       actor=POS)
                ids.append(result.movement.id)

        threads = [threading.Thread(target=terminal) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(ids) == 8 and len(set(ids)) == 1
        with context.store.read() as session:
            assert check_ledger(session, member).available == 90


class TestAdjust:
    def test_adjustments_are_available_at_once_and_audited(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            result = points.adjust(session, workspace, member, points=40, reason="goodwill", idempotency_key="a1",
                                   actor=Actor("user", "op-1"))
            assert result.balance["available"] == 40
            points.adjust(session, workspace, member, points=-15, reason="correction", idempotency_key="a2",
                          actor=Actor("user", "op-1"))
            assert check_ledger(session, member).available == 25
            entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "loyalty.points.adjust")).all()
            assert [(e.actor_id, e.detail["points"]) for e in entries] == [("op-1", 40), ("op-1", -15)]
            with pytest.raises(IdempotencyKeyReused):  # the same size the other way is another request
                points.adjust(session, workspace, member, points=-40, reason="x", idempotency_key="a1", actor=POS)

    def test_negative_beyond_the_balance(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session, pytest.raises(InsufficientPoints):
            points.adjust(session, workspace, member, points=-5, reason="x", idempotency_key="a", actor=POS)
        with context.store.transaction() as session:
            set_programme(session, workspace, allow_negative=True)
            points.adjust(session, workspace, member, points=-5, reason="x", idempotency_key="a", actor=POS)
            assert check_ledger(session, member).debt == 5


class TestExpiryRun:
    def test_expiry_and_warnings(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            post_order(session, workspace)
        lapse = WHEN + timedelta(days=365)
        with context.store.transaction() as session:
            assert expiry.run_expiry(session, workspace, as_of=lapse - timedelta(days=10)).warned_members == 1
            assert expiry.run_expiry(session, workspace, as_of=lapse - timedelta(days=9)).warned_members == 0
        with context.store.transaction() as session:
            run = expiry.run_expiry(session, workspace, as_of=lapse)
            assert (run.members, run.expired_points) == (1, 100)
            assert expiry.run_expiry(session, workspace, as_of=lapse).expired_points == 0
            assert check_ledger(session, member).available == 0
            events = session.scalars(select(LoyaltyEvent.type).order_by(LoyaltyEvent.id)).all()
            assert events == ["member_enrolled", "points_expiring", "points_expired"]

    def test_liability_by_expiry_month(self, context: Context, workspace: Workspace, member: str) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, point_value="0.05")
            post_order(session, workspace, "o1")
            post_order(session, workspace, "o2", paid="40.00", ordered_at=WHEN + timedelta(days=31))
            report = expiry.points_liability(session, workspace, as_of=WHEN + timedelta(days=40))
        assert [(m.month, m.points, m.value) for m in report.by_expiry_month] == [
            ("2027-03", 100, Decimal("5.00")), ("2027-04", 40, Decimal("2.00"))]
        assert (report.points, report.value, report.programme_version) == (140, Decimal("7.00"), 2)


# --- any sequence -------------------------------------------------------------------------------------------

operations = st.lists(st.one_of(
    st.tuples(st.just("earn"), st.integers(0, 500)),
    st.tuples(st.just("redeem"), st.integers(1, 300)),
    st.tuples(st.just("refund"), st.integers(0, 10), st.integers(1, 100)),  # which order, percent of what is left
    st.tuples(st.just("adjust"), st.integers(-200, 200).filter(bool)),
    st.tuples(st.just("time"), st.integers(1, 200)),  # days pass, then the points run
    st.tuples(st.just("replay"), st.integers(0, 50)),
), min_size=1, max_size=25)


@pytest.mark.parametrize("allow_negative", [False, True], ids=["debt", "negative"])
@settings(max_examples=40 if not PG_URL else 15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=operations, pending_days=st.sampled_from([0, 3]))
def test_any_sequence_keeps_the_ledger_whole(context: Context, workspace: Workspace, allow_negative: bool,
                                             steps: list[tuple[int | str, ...]], pending_days: int) -> None:
    """For any sequence of earns, redemptions, refunds, expiries, adjustments and replays: the balance is
    the ledger's sum, never below zero unless allowed, replays move nothing, lots are never over-consumed,
    and every point is accounted for (granted = held + spent + expired + reversed + owed)."""
    with context.store.transaction() as session:
        set_programme(session, workspace, allow_negative=allow_negative, earn={"pending_days": pending_days})
        member_id = enrol(session, workspace, f"p-{datetime.now(UTC).timestamp()}")
    now = WHEN
    orders: list[LiveOrder] = []
    done: list[tuple[str, int, str]] = []  # (kind, points, key) of redemptions and adjustments that went through
    for number, step in enumerate(steps):
        with context.store.transaction() as session:
            kind = step[0]
            if kind == "earn":
                order = LiveOrder(workspace_id=workspace.id, channel="pos", order_id=f"{member_id}-{number}",
                                  customer_key="c", member_id=member_id, ordered_at=now,
                                  paid_amount=Decimal(int(step[1])))
                session.add(order)
                session.flush()
                points.earn_for_order(session, workspace, order, now=now)
                orders.append(order)
            elif kind == "redeem":
                try:
                    points.redeem(session, workspace, member_id, points=int(step[1]), reason="",
                                  idempotency_key=f"{member_id}-r{number}", actor=POS, now=now)
                    done.append(("redeem", int(step[1]), f"{member_id}-r{number}"))
                except InsufficientPoints:
                    pass
            elif kind == "refund" and orders:
                order = session.get_one(LiveOrder, orders[int(step[1]) % len(orders)].id)
                amount = ((order.paid_amount - order.refunded_amount) * int(step[2]) / 100).quantize(Decimal("0.01"))
                if amount > 0:
                    order.refunded_amount += amount
                    refund = LiveRefund(workspace_id=workspace.id, channel="pos", refund_id=f"{member_id}-f{number}",
                                        order_id=order.order_id, refunded_at=now, amount=amount)
                    session.add(refund)
                    session.flush()
                    points.reverse_for_refund(session, workspace, refund, order, now=now)
            elif kind == "adjust":
                try:
                    points.adjust(session, workspace, member_id, points=int(step[1]), reason="test",
                                  idempotency_key=f"{member_id}-a{number}", actor=POS, now=now)
                    done.append(("adjust", int(step[1]), f"{member_id}-a{number}"))
                except InsufficientPoints:
                    assert not allow_negative
            elif kind == "time":
                now += timedelta(days=int(step[1]))
                expiry.run_expiry(session, workspace, as_of=now)
            elif kind == "replay" and done:
                what, count, key = done[int(step[1]) % len(done)]
                before = session.scalar(select(func.count()).select_from(PointsMovement))
                replayed = (points.redeem if what == "redeem" else points.adjust)(
                    session, workspace, member_id, points=count, reason="", idempotency_key=key, actor=POS, now=now)
                assert replayed.is_replay
                assert session.scalar(select(func.count()).select_from(PointsMovement)) == before
            account = check_ledger(session, member_id)
            totals = dict(session.execute(
                select(PointsMovement.kind, func.sum(PointsMovement.points))
                .where(PointsMovement.member_id == member_id).group_by(PointsMovement.kind)).all())
            positive_adjust = int(session.scalar(select(func.coalesce(func.sum(PointsMovement.points), 0)).where(
                PointsMovement.member_id == member_id, PointsMovement.kind == "adjust",
                PointsMovement.available_delta > 0)) or 0)
            granted = totals.get("earn", 0) + positive_adjust
            taken = (totals.get("redeem", 0) + totals.get("expire", 0) + totals.get("reverse", 0)
                     + totals.get("adjust", 0) - positive_adjust)
            assert granted - taken == account.available + account.pending - account.debt
            shown = points.points_summary(session, workspace, member_id, now=now)
            assert shown.available >= 0 or allow_negative
