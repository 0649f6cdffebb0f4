"""The points backfill on every store: imported orders replayed from the lake earn and reverse exactly as
the same orders posted live in time order would, never twice, and only from the member's enrolment on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.ingest.models import LiveOrder, LiveRefund
from memberops.loyalty import points
from memberops.loyalty.backfill import backfill_points
from memberops.loyalty.models import PointsLot, PointsMovement
from memberops.runtime import Context
from tests.insight.lake import Brand
from tests.loyalty.factories import enrol, post_order, set_programme
from tests.loyalty.test_points import check_ledger

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
JOINED = datetime(2025, 3, 1, 0, 0, tzinfo=UTC)
PROGRAMME = {
    "earn": {"points_per_unit": "1", "pending_days": 7, "birthday_month_multiplier": "1.5",
             "member_days": [{"day_of_month": 8, "multiplier": "2"}]},
    "expiry": {"policy": "rolling_months", "months": 12},
}
# (order id, ordered at, paid): before enrolment, a plain order that lapses before NOW, a member-day order
# (the 8th, local time), a birthday-month order (May), and a recent one still in its return window.
ORDERS = (
    ("early", datetime(2025, 2, 10, 3, 0, tzinfo=UTC), "80.00"),
    ("plain", datetime(2025, 6, 3, 3, 0, tzinfo=UTC), "120.00"),
    ("memberday", datetime(2025, 12, 8, 3, 0, tzinfo=UTC), "200.00"),
    ("birthday", datetime(2026, 5, 20, 3, 0, tzinfo=UTC), "300.00"),
    ("recent", datetime(2026, 11, 18, 3, 0, tzinfo=UTC), "50.00"),
)
# (refund id, order id, refunded at, amount): one before-enrolment order refunded, two partial refunds
REFUNDS = (
    ("r-early", "early", datetime(2025, 2, 12, tzinfo=UTC), "80.00"),
    ("r-bd-1", "birthday", datetime(2026, 5, 22, tzinfo=UTC), "100.00"),
    ("r-bd-2", "birthday", datetime(2026, 6, 2, tzinfo=UTC), "50.00"),
)


def _lake_brand(workspace: Workspace, customer: str, member_id: str, prefix: str) -> Brand:
    brand = Brand(workspace_id=workspace.id)
    brand.person(member_id, channel="pos", source_id=customer)
    for order_id, at, paid in ORDERS:
        brand.orders.append({**brand._common(), "channel": "pos", "order_id": f"{prefix}{order_id}",
                             "customer_key": customer, "store_id": None, "ordered_at": at, "status": "paid",
                             "gross_amount": Decimal(paid), "discount_amount": Decimal(0),
                             "shipping_amount": Decimal(0), "paid_amount": Decimal(paid), "currency": "CNY",
                             "coupon_codes": None})
    for refund_id, order_id, at, amount in REFUNDS:
        brand.refunds.append({**brand._common(), "channel": "pos", "refund_id": f"{prefix}{refund_id}",
                              "order_id": f"{prefix}{order_id}", "refunded_at": at, "amount": Decimal(amount)})
    return brand


def _movements(context: Context, member_id: str) -> int:
    with context.store.read() as session:
        return int(session.scalar(select(func.count()).select_from(PointsMovement)
                                  .where(PointsMovement.member_id == member_id)) or 0)


def _lots(context: Context, member_id: str) -> list[tuple[int, int, datetime, datetime | None]]:
    with context.store.read() as session:
        lots = session.scalars(select(PointsLot).where(PointsLot.member_id == member_id)).all()
        return sorted((lot.points, lot.remaining, lot.earned_at, lot.expires_at) for lot in lots)


def test_backfill_is_the_ledger_of_posting_the_orders_live_in_time_order(context: Context, workspace: Workspace) -> None:
    with context.store.transaction() as session:
        set_programme(session, workspace, **PROGRAMME)
        imported = enrol(session, workspace, "imported", birthday=date(1990, 5, 4), now=JOINED)
        live = enrol(session, workspace, "live", birthday=date(1990, 5, 4), now=JOINED)
    _lake_brand(workspace, "imported", imported, "i-").write(context.settings.lake_path)

    # the same history posted live, in time order, each at its own time, through the ledger calls the live
    # hooks make (the live path never sees an order placed before enrolment, so "early" stays out)
    timeline = sorted([(at, 0, order_id, paid) for order_id, at, paid in ORDERS if order_id != "early"]
                      + [(at, 1, refund_id, (order_id, amount)) for refund_id, order_id, at, amount in REFUNDS
                         if order_id != "early"], key=lambda event: (event[0], event[1]))
    for at, kind, event_id, detail in timeline:
        with context.store.transaction() as session:
            ws = session.get(Workspace, workspace.id)
            assert ws is not None
            if kind == 0:
                order = LiveOrder(workspace_id=ws.id, channel="pos", order_id=f"l-{event_id}", customer_key="live",
                                  member_id=live, ordered_at=at, paid_amount=Decimal(str(detail)))
                session.add(order)
                session.flush()
                points.earn_for_order(session, ws, order, now=at)
            else:
                assert isinstance(detail, tuple)
                order_id, amount = detail
                order = session.scalars(select(LiveOrder).where(LiveOrder.order_id == f"l-{order_id}")).one()
                order.refunded_amount += Decimal(amount)
                refund = LiveRefund(workspace_id=ws.id, channel="pos", refund_id=f"l-{event_id}",
                                    order_id=order.order_id, refunded_at=at, amount=Decimal(amount))
                session.add(refund)
                session.flush()
                points.reverse_for_refund(session, ws, refund, order, now=at)

    summary = backfill_points(context, workspace, now=NOW)
    with context.store.transaction() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        account = points.lock_account(session, ws.id, live)
        points.catch_up(session, account, points.active_programme(session, ws.id), NOW)

    assert summary.orders == 4 and summary.skipped_before_enrolment == 1 and summary.refunds == 2
    # 120 (lapsed in June 2026) + 200×2 (member day) + 300×1.5 (birthday month) + 50 (pending), and the
    # birthday order's 450 points reversed by half (150 of 300 refunded)
    assert summary.points_earned == 120 + 400 + 450 + 50 and summary.points_reversed == 225
    with context.store.read() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        mine = points.points_summary(session, ws, imported, now=NOW)
        theirs = points.points_summary(session, ws, live, now=NOW)
        check_ledger(session, imported)
        check_ledger(session, live)
    assert (mine.available, mine.pending, mine.debt) == (400 + 225, 50, 0)
    assert (mine.available, mine.pending, mine.debt, mine.expiring) == (
        theirs.available, theirs.pending, theirs.debt, theirs.expiring)
    assert _lots(context, imported) == _lots(context, live)


def test_a_rerun_or_a_later_live_post_earns_nothing_twice(context: Context, workspace: Workspace) -> None:
    with context.store.transaction() as session:
        set_programme(session, workspace, **PROGRAMME)
        member = enrol(session, workspace, "c1", now=JOINED)
    _lake_brand(workspace, "c1", member, "").write(context.settings.lake_path)
    first = backfill_points(context, workspace, now=NOW)
    before = _movements(context, member)
    again = backfill_points(context, workspace, now=NOW)
    assert first.orders == 4 and again.orders == 0 and again.refunds == 0
    assert again.already_posted == 4 + 2
    assert _movements(context, member) == before

    with context.store.transaction() as session:  # the POS retries the recent order live
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        outcome = post_order(session, ws, "recent", customer_key="c1", paid="50.00", ordered_at=ORDERS[-1][1])
    assert outcome.points == 50  # what it earned when backfilled, answered again
    assert _movements(context, member) == before


def test_orders_before_enrolment_earn_nothing_and_since_limits_the_replay(context: Context, workspace: Workspace) -> None:
    with context.store.transaction() as session:
        set_programme(session, workspace, **PROGRAMME)
        late = enrol(session, workspace, "late", now=datetime(2026, 1, 1, tzinfo=UTC))
    _lake_brand(workspace, "late", late, "").write(context.settings.lake_path)
    summary = backfill_points(context, workspace, since=datetime(2026, 5, 1, tzinfo=UTC), now=NOW)
    # ``since`` reads only "birthday" and "recent"; "early", "plain" and "memberday" precede the enrolment
    assert summary.skipped_before_enrolment == 0 and summary.orders == 2
    with context.store.read() as session:
        keys = set(session.scalars(select(PointsMovement.idempotency_key)
                                   .where(PointsMovement.member_id == late)).all())
    assert keys >= {points.order_key("pos", "birthday"), points.order_key("pos", "recent")}
    assert points.order_key("pos", "plain") not in keys and points.order_key("pos", "early") not in keys

    full = backfill_points(context, workspace, now=NOW)
    assert full.skipped_before_enrolment == 3 and full.orders == 0 and full.already_posted == 2 + 2


def test_a_member_marked_enrolled_gets_a_membership_and_their_history(context: Context, workspace: Workspace) -> None:
    from memberops.identity.models import Member

    with context.store.transaction() as session:
        set_programme(session, workspace, **PROGRAMME)
        person = Member(workspace_id=workspace.id, is_enrolled=True, enrolled_at=JOINED - timedelta(days=1))
        session.add(person)
        session.flush()
        member_id = person.id
    _lake_brand(workspace, "x1", member_id, "").write(context.settings.lake_path)
    summary = backfill_points(context, workspace, now=NOW)
    assert summary.orders == 4 and summary.members == 1
    with context.store.read() as session:
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        # no birthday known: the May order earns 300, half reversed; the member-day 400 stands
        assert points.points_summary(session, ws, member_id, now=NOW).available == 400 + 150
        check_ledger(session, member_id)


@pytest.mark.parametrize("replay", ["set-based", "member by member"])
def test_an_imported_order_earns_with_the_tier_held_when_it_was_placed(
        context: Context, workspace: Workspace, replay: str) -> None:
    """The tier history says which tier the member held at each order: an order before their first tier
    (before the programme had tiers, say) earns base points, one placed while Silver earns Silver's ×2 —
    not the tier the member holds at the time of the backfill."""
    from memberops.audit.service import Actor
    from memberops.loyalty import tiers
    from memberops.loyalty.backfill import backfill_points_per_member

    with context.store.transaction() as session:
        set_programme(session, workspace, earn={"points_per_unit": "1", "pending_days": 0},
                      expiry={"policy": "rolling_months", "months": 36},
                      tiers=[{"code": "silver", "name": "Silver", "threshold": "100000", "earn_multiplier": "2"},
                             {"code": "gold", "name": "Gold", "threshold": "200000", "earn_multiplier": "3"}])
        member = enrol(session, workspace, "c1", now=JOINED)
        ws = session.get(Workspace, workspace.id)
        assert ws is not None
        tiers.set_tier(session, ws, member, "silver", reason="migrated", actor=Actor.cli(),
                       now=datetime(2026, 1, 1, tzinfo=UTC))
        tiers.set_tier(session, ws, member, "gold", reason="promoted", actor=Actor.cli(), now=NOW - timedelta(days=1))
    brand = Brand(workspace_id=workspace.id)
    brand.person(member, channel="pos", source_id="c1")
    for order_id, at in (("before-silver", datetime(2025, 6, 3, 3, 0, tzinfo=UTC)),
                         ("while-silver", datetime(2026, 3, 3, 3, 0, tzinfo=UTC))):
        brand.orders.append({**brand._common(), "channel": "pos", "order_id": order_id, "customer_key": "c1",
                             "store_id": None, "ordered_at": at, "status": "paid", "gross_amount": None,
                             "discount_amount": None, "shipping_amount": None, "paid_amount": Decimal("100.00"),
                             "currency": "CNY", "coupon_codes": None})
    brand.write(context.settings.lake_path)
    run = backfill_points if replay == "set-based" else backfill_points_per_member
    summary = run(context, workspace, now=NOW)
    assert summary.points_earned == 100 + 200  # base, then Silver; never Gold's ×3 of today
    with context.store.read() as session:
        earned = dict(session.execute(select(PointsMovement.source_id, PointsMovement.points).where(
            PointsMovement.member_id == member, PointsMovement.kind == "earn")).all())
    assert earned == {"pos:before-silver": 100, "pos:while-silver": 200}
