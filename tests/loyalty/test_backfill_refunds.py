"""Refunds in the points backfill (issue 6, "refunds that never reverse points, refunds that deduct twice"):
an order's refunds split between the live path (``POST /api/v1/refunds``) and the lake count as their sum,
a refund in both places counts once, and ``--since`` still reverses a refund that reached the lake late for
an order placed before it. Points and the spend the tiers count alike, on every store."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.loyalty import points, tiers
from memberops.loyalty.backfill import BackfillSummary, backfill_points
from memberops.loyalty.models import PointsMovement
from memberops.runtime import Context
from tests.insight.lake import Brand
from tests.loyalty.factories import enrol, post_order, post_refund, set_programme
from tests.loyalty.test_backfill import JOINED, NOW
from tests.loyalty.test_points import check_ledger

PROGRAMME: dict[str, Any] = {
    "earn": {"points_per_unit": "1", "pending_days": 0},
    "expiry": {"policy": "rolling_months", "months": 24},
    "tiers": [{"code": "silver", "name": "Silver", "threshold": "5000"}],
}
ORDERED = datetime(2026, 6, 10, 3, 0, tzinfo=UTC)


def _lake(workspace: Workspace, member_id: str, *, orders: list[tuple[str, datetime, str]],
          refunds: list[tuple[str, str, datetime, str]]) -> Brand:
    """The lake's copy of the customer ``c1``'s ``orders`` (id, at, paid) and ``refunds`` (id, order id,
    at, amount)."""
    brand = Brand(workspace_id=workspace.id)
    brand.person(member_id, channel="pos", source_id="c1")
    for order_id, at, paid in orders:
        brand.orders.append({**brand._common(), "channel": "pos", "order_id": order_id, "customer_key": "c1",
                             "store_id": None, "ordered_at": at, "status": "paid", "gross_amount": Decimal(paid),
                             "discount_amount": Decimal(0), "shipping_amount": Decimal(0),
                             "paid_amount": Decimal(paid), "currency": "CNY", "coupon_codes": None})
    for refund_id, order_id, at, amount in refunds:
        brand.refunds.append({**brand._common(), "channel": "pos", "refund_id": refund_id, "order_id": order_id,
                              "refunded_at": at, "amount": Decimal(amount)})
    return brand


def _member_with_live_history(context: Context, workspace: Workspace) -> str:
    """A member whose order ``o`` (200.00, 200 points) was posted live and refunded live by 60.00 (``L1``)."""
    with context.store.transaction() as session:
        set_programme(session, workspace, **PROGRAMME)
        member = enrol(session, workspace, "c1", now=JOINED)
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        assert post_order(session, ws, "o", paid="200.00", ordered_at=ORDERED).points == 200
        assert post_refund(session, ws, "L1", order_id="o", amount="60.00",
                           refunded_at=datetime(2026, 6, 20, tzinfo=UTC)).points == 60
    return member


def _available(context: Context, workspace: Workspace, member_id: str) -> int:
    with context.store.read() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        check_ledger(session, member_id)
        return points.points_summary(session, ws, member_id, now=NOW).available


def _spend(context: Context, workspace: Workspace) -> Decimal:
    """What spend tiers count: paid less refunded, each order once."""
    with context.store.read() as session:
        orders = tiers.qualifying_orders(workspace.id)
        return Decimal(str(session.scalar(select(func.sum(orders.c.paid_amount - orders.c.refunded_amount)))))


def _reversed(context: Context, member_id: str) -> int:
    with context.store.read() as session:
        return int(session.scalar(select(func.sum(PointsMovement.points)).where(
            PointsMovement.member_id == member_id, PointsMovement.kind == "reverse")) or 0)


class TestRefundsSplitBetweenLiveAndLake:
    def test_a_live_and_an_imported_refund_add_up(self, context: Context, workspace: Workspace) -> None:
        member = _member_with_live_history(context, workspace)
        # the order's export reached the lake, the live refund's not yet; a marketplace file brought I1,
        # made before L1 (the reversal counts the refunds already reversed whatever their time)
        _lake(workspace, member, orders=[("o", ORDERED, "200.00")],
              refunds=[("I1", "o", datetime(2026, 6, 15, tzinfo=UTC), "40.00")]).write(context.settings.lake_path)
        summary = backfill_points(context, workspace, now=NOW)
        assert (summary.refunds, summary.points_reversed, summary.already_posted) == (1, 40, 2)
        assert _reversed(context, member) == 60 + 40  # 100.00 of 200.00 refunded: half the points
        assert _available(context, workspace, member) == 100
        assert _spend(context, workspace) == Decimal("100.00")

        with context.store.transaction() as session:  # a refund posted live after the backfill counts too
            ws = session.get(Workspace, workspace.id)
            assert ws is not None
            post_refund(session, ws, "L2", order_id="o", amount="20.00", refunded_at=NOW)
        assert _spend(context, workspace) == Decimal("80.00")
        # the live path reverses on the order's live refunds alone (see the report); the next backfill
        # takes back whatever of the 120.00 refunded it missed, and sets the tier row anew, each refund once
        backfill_points(context, workspace, now=NOW)
        assert _reversed(context, member) == 120
        assert _available(context, workspace, member) == 80
        assert _spend(context, workspace) == Decimal("80.00")
        backfill_points(context, workspace, now=NOW)
        assert _reversed(context, member) == 120

    def test_a_refund_in_both_places_counts_once(self, context: Context, workspace: Workspace) -> None:
        member = _member_with_live_history(context, workspace)
        # the live refund L1 was exported to the lake, and a refund file repeats I1
        refunds = [("L1", "o", datetime(2026, 6, 20, tzinfo=UTC), "60.00"),
                   ("I1", "o", datetime(2026, 6, 25, tzinfo=UTC), "40.00"),
                   ("I1", "o", datetime(2026, 6, 25, tzinfo=UTC), "40.00")]
        _lake(workspace, member, orders=[("o", ORDERED, "200.00")], refunds=refunds).write(context.settings.lake_path)
        summary = backfill_points(context, workspace, now=NOW)
        assert (summary.refunds, summary.points_reversed, summary.already_posted) == (1, 40, 2)
        assert _reversed(context, member) == 100
        assert _available(context, workspace, member) == 100
        assert _spend(context, workspace) == Decimal("100.00")


def _check_since(context: Context, workspace: Workspace, member: str, summary: BackfillSummary) -> None:
    assert (summary.orders, summary.refunds, summary.points_reversed) == (0, 1, 50)
    assert _reversed(context, member) == 50
    assert _available(context, workspace, member) == 100 + 50 - 50
    assert _spend(context, workspace) == Decimal("100.00")


def test_since_reverses_a_late_refund_of_an_earlier_order(context: Context, workspace: Workspace) -> None:
    with context.store.transaction() as session:
        set_programme(session, workspace, **PROGRAMME)
        member = enrol(session, workspace, "c1", now=JOINED)
    earlier, later = ("o1", datetime(2026, 3, 10, tzinfo=UTC), "100.00"), ("o2", datetime(2026, 9, 10, tzinfo=UTC), "50.00")
    _lake(workspace, member, orders=[earlier, later], refunds=[]).write(context.settings.lake_path)
    first = backfill_points(context, workspace, now=NOW)
    assert (first.orders, first.points_earned) == (2, 150)

    # the marketplace's refund file arrives after that run: half of the March order, refunded in April
    _lake(workspace, member, orders=[], refunds=[("R1", "o1", datetime(2026, 4, 2, tzinfo=UTC), "50.00")]).write(
        context.settings.lake_path, stem="b2")
    summary = backfill_points(context, workspace, since=datetime(2026, 9, 1, tzinfo=UTC), now=NOW)
    _check_since(context, workspace, member, summary)
    again = backfill_points(context, workspace, since=datetime(2026, 9, 1, tzinfo=UTC), now=NOW)
    assert (again.refunds, again.points_reversed, again.already_posted) == (0, 0, 2)  # o2 and R1: never twice
    assert _reversed(context, member) == 50
