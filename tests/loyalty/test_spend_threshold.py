"""Joining by spending (issue 6, "Enrolment": spend threshold), on every state store: the crossing order
enrols and earns, refunds and the window count, and two orders crossing at once enrol the member once."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.identity.models import Member
from memberops.identity.service import resolve_customer
from memberops.loyalty import enrolment
from memberops.loyalty.errors import SpendThresholdNotReached
from memberops.loyalty.models import LoyaltyEvent, Membership, PointsMovement
from memberops.runtime import Context
from tests.loyalty.factories import WHEN, post_order, post_refund, set_programme

THRESHOLD: dict[str, Any] = {"mode": "spend_threshold", "welcome_points": 10,
             "spend_threshold": {"amount": "300.00", "window_days": 30}}


def _setup(context: Context, workspace: Workspace, **threshold: object) -> str:
    with context.store.transaction() as session:
        set_programme(session, workspace, enrolment={**THRESHOLD,
                                                     "spend_threshold": {**THRESHOLD["spend_threshold"], **threshold}})
        return resolve_customer(session, workspace, channel="pos", source_id="c1", identifiers={}).member.id


def _enrolments(context: Context) -> int:
    with context.store.read() as session:
        return int(session.scalar(select(func.count()).select_from(LoyaltyEvent)
                                  .where(LoyaltyEvent.type == "member_enrolled")) or 0)


class TestSpendThreshold:
    def test_the_crossing_order_enrols_and_earns(self, context: Context, workspace: Workspace) -> None:
        member = _setup(context, workspace)
        with context.store.transaction() as session:
            assert post_order(session, workspace, "o1", paid="200.00").points is None
            assert post_order(session, workspace, "o2", paid="100.00", ordered_at=WHEN + timedelta(days=1)).points == 100
            assert post_order(session, workspace, "o3", paid="50.00", ordered_at=WHEN + timedelta(days=2)).points == 50
            assert session.get_one(Member, member).is_enrolled
            welcome = session.scalar(select(PointsMovement.points).where(PointsMovement.source_type == "enrolment"))
            assert welcome == 10
        assert _enrolments(context) == 1

    def test_refunds_and_the_window_count(self, context: Context, workspace: Workspace) -> None:
        member = _setup(context, workspace)
        with context.store.transaction() as session:
            post_order(session, workspace, "o1", paid="200.00")
            post_refund(session, workspace, "r1", order_id="o1", amount="150.00")  # 50 left counts
            assert post_order(session, workspace, "o2", paid="200.00", ordered_at=WHEN + timedelta(days=1)).points is None
            # 30 days after o1 the window (30 days up to the order) has left o1 out: o2 + o3 reach 300
            assert post_order(session, workspace, "o3", paid="100.00", ordered_at=WHEN + timedelta(days=30)).points == 100
            assert session.get_one(Member, member).is_enrolled

    def test_the_crossing_order_may_not_earn(self, context: Context, workspace: Workspace) -> None:
        _setup(context, workspace, crossing_order_earns=False)
        with context.store.transaction() as session:
            assert post_order(session, workspace, "o1", paid="300.00").points == 0
            assert post_order(session, workspace, "o2", paid="10.00", ordered_at=WHEN + timedelta(hours=1)).points == 10

    def test_direct_enrolment_needs_the_spend(self, context: Context, workspace: Workspace) -> None:
        import pytest

        _setup(context, workspace)
        with pytest.raises(SpendThresholdNotReached) as raised, context.store.transaction() as session:
            enrolment.enrol(session, workspace, channel="pos", source_id="c1", identifiers={})
        assert raised.value.facts == {"spend": "0", "threshold": "300.00", "window_days": 30}

    def test_two_orders_crossing_at_once_enrol_once(self, context: Context, workspace: Workspace) -> None:
        """Two terminals post an order each for the same buyer at once, each enough to cross the threshold:
        one membership, one welcome gift, both orders earn (each request in its own transaction)."""
        member = _setup(context, workspace)
        barrier = threading.Barrier(2)
        earned: list[int | None] = []
        errors: list[BaseException] = []

        def terminal(n: int) -> None:
            barrier.wait()
            try:
                with context.store.transaction() as session:
                    earned.append(post_order(session, workspace, f"t{n}", paid="300.00",
                                             ordered_at=WHEN + timedelta(minutes=n)).points)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=terminal, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        assert sorted(earned) == [300, 300]  # type: ignore[type-var]
        assert _enrolments(context) == 1
        with context.store.read() as session:
            assert session.scalar(select(func.count()).select_from(Membership)) == 1
            assert session.scalar(select(func.count()).select_from(PointsMovement).where(
                PointsMovement.member_id == member, PointsMovement.source_type == "enrolment")) == 1
            assert session.get_one(Member, member).is_enrolled

    def test_two_orders_crossing_together_enrol_once(self, context: Context, workspace: Workspace) -> None:
        """Neither order alone reaches the threshold; whichever commits second sees both and enrols."""
        _setup(context, workspace)
        barrier = threading.Barrier(2)
        earned: list[int | None] = []

        def terminal(n: int) -> None:
            barrier.wait()
            with context.store.transaction() as session:
                earned.append(post_order(session, workspace, f"t{n}", paid="150.00",
                                         ordered_at=WHEN + timedelta(minutes=n)).points)

        threads = [threading.Thread(target=terminal, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(earned, key=str) == [150, None]
        assert _enrolments(context) == 1


def test_spend_counts_paid_net_of_refunds(context: Context, workspace: Workspace) -> None:
    from memberops.loyalty.programme import SpendThreshold

    member = _setup(context, workspace)
    rules = SpendThreshold(amount=Decimal(1), window_days=30, counts="paid_excluding_shipping")
    with context.store.transaction() as session:
        post_order(session, workspace, "o1", paid="120.00", shipping_amount=Decimal("20.00"))
        post_refund(session, workspace, "r1", order_id="o1", amount="30.00")
        assert enrolment.counted_spend(session, workspace.id, member, rules, until=WHEN) == Decimal("70.00")
