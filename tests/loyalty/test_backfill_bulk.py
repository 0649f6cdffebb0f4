"""The set-based points backfill writes exactly the ledger of the member by member one (the live ledger calls,
order by order): the same movements, lots, allocations, rewarded events and expiry events, row for row, on
every store — for a seeded random history with member days, caps, category rules, refunds that outrun what
is left (debts later settled), lapsing lots, sign-in streaks, capped shares and a once-per-member event."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from memberops.accounts import service as accounts
from memberops.accounts.models import Workspace
from memberops.ingest.models import LiveOrder
from memberops.loyalty import points
from memberops.loyalty.backfill import backfill_points, backfill_points_per_member
from memberops.loyalty.event_models import EventEarning
from memberops.loyalty.models import LoyaltyEvent, PointsAccount, PointsAllocation, PointsLot, PointsMovement
from memberops.runtime import Context
from tests.insight.lake import Brand
from tests.loyalty.factories import enrol, set_programme
from tests.loyalty.test_points import check_ledger

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=200)
START = datetime(2024, 9, 1, tzinfo=UTC)
PROGRAMME: dict[str, Any] = {
    "enrolment": {"mode": "free", "welcome_points": 50},
    "earn": {"points_per_unit": "1", "pending_days": 7, "birthday_month_multiplier": "1.5", "stacking": "max",
             "member_days": [{"day_of_month": 8, "multiplier": "2"}], "daily_cap": 900, "monthly_cap": 2500,
             "category_rules": {"gift": {"multiplier": "3", "bonus_per_unit": "5"}}},
    "events": {"sign_in": {"points": 1, "max_per_day": 1, "streak": {"days": 7, "bonus": 20}},
               "share": {"points": 2, "max_per_day": 2, "max_per_month": 9},
               "complete_profile": {"points": 30, "once_per_member": True, "required_fields": ["phone"]}},
    "expiry": {"policy": "rolling_months", "months": 12},
}
MEMBERS = 14


def _history(workspace_id: str, members: dict[str, str], seed: int) -> Brand:
    """A seeded history per customer: orders (some with lines), refunds (some long after, some in two
    parts), sign-in runs with repeats, shares and profile events."""
    chance = random.Random(seed)
    brand = Brand(workspace_id=workspace_id)
    for customer, member_id in sorted(members.items()):
        brand.person(member_id, channel="pos", source_id=customer)
        for number in range(chance.randint(3, 16) if customer != "c12" else 0):
            order_id = f"{customer}-o{number}"
            at = START + timedelta(days=chance.uniform(0, 800), hours=chance.randint(0, 23))
            paid = Decimal(chance.choice(["35.50", "120.00", "480.00", "999.90", "1500.00", "64.20"]))
            brand.orders.append({**brand._common(), "channel": "pos", "order_id": order_id, "customer_key": customer,
                                 "store_id": None, "ordered_at": at, "status": "paid", "gross_amount": paid,
                                 "discount_amount": Decimal(0), "shipping_amount": Decimal(0), "paid_amount": paid,
                                 "currency": "CNY", "coupon_codes": None})
            if chance.random() < 0.4:
                gift = (paid * Decimal("0.4")).quantize(Decimal("0.01"))
                for line_no, (sku, category, amount) in enumerate((("g1", "gift", gift), ("b1", "baby", paid - gift)), 1):
                    brand.items.append({**brand._common(), "channel": "pos", "order_id": order_id, "line_no": line_no,
                                        "sku": sku, "category": category, "brand": "b", "quantity": 1,
                                        "unit_price": amount, "amount": amount})
            roll = chance.random()
            if roll < 0.3:  # refunded within days, in one or two parts
                parts = [paid] if chance.random() < 0.5 else [(paid / 3).quantize(Decimal("0.01")),
                                                              (paid / 4).quantize(Decimal("0.01"))]
                for index, amount in enumerate(parts):
                    brand.refunds.append({**brand._common(), "channel": "pos", "refund_id": f"{order_id}-r{index}",
                                          "order_id": order_id, "refunded_at": at + timedelta(days=2 + 5 * index),
                                          "amount": amount})
            elif roll < 0.45:  # refunded long after its points were spent or lapsed: a debt
                brand.refunds.append({**brand._common(), "channel": "pos", "refund_id": f"{order_id}-late",
                                      "order_id": order_id, "refunded_at": at + timedelta(days=chance.randint(360, 480)),
                                      "amount": paid})
        if customer == "c12":  # a refund after the order's points lapsed: a debt, settled by the next order
            for order_id, days, paid in (("c12-debt", 20, Decimal("480.00")), ("c12-next", 500, Decimal("1500.00"))):
                brand.orders.append({**brand._common(), "channel": "pos", "order_id": order_id, "customer_key": customer,
                                     "store_id": None, "ordered_at": START + timedelta(days=days), "status": "paid",
                                     "gross_amount": paid, "discount_amount": Decimal(0),
                                     "shipping_amount": Decimal(0), "paid_amount": paid, "currency": "CNY",
                                     "coupon_codes": None})
            brand.refunds.append({**brand._common(), "channel": "pos", "refund_id": "c12-debt-late",
                                  "order_id": "c12-debt", "refunded_at": START + timedelta(days=420),
                                  "amount": Decimal("480.00")})
            continue
        if customer == "c02":  # bought live before the backfill (see _twin); the lake refunds it
            brand.refunds.append({**brand._common(), "channel": "pos", "refund_id": "c02-o0-lake",
                                  "order_id": "c02-o0", "refunded_at": START + timedelta(days=30),
                                  "amount": Decimal("300.00")})
        day = START + timedelta(days=chance.randint(0, 300), hours=9)
        for number in range(chance.randint(0, 40)):
            day += timedelta(days=1 if chance.random() < 0.8 else chance.randint(2, 5))
            for repeat in range(1 if chance.random() < 0.85 else 2):
                brand.events.append({**brand._common(), "channel": "app", "event_id": f"{customer}-s{number}-{repeat}",
                                     "type": "sign_in", "customer_key": customer,
                                     "occurred_at": day + timedelta(minutes=7 * repeat)})
        for number in range(chance.randint(0, 12)):
            brand.events.append({**brand._common(), "channel": "app", "event_id": f"{customer}-sh{number}",
                                 "type": "share", "customer_key": customer,
                                 "occurred_at": START + timedelta(days=chance.randint(0, 60) // 4 * 4, hours=number)})
        for number in range(chance.randint(0, 2)):
            brand.events.append({**brand._common(), "channel": "app", "event_id": f"{customer}-p{number}",
                                 "type": "complete_profile", "customer_key": customer,
                                 "occurred_at": START + timedelta(days=100 + 50 * number)})
    # the events of the lake's customer keys are keyed by the app's channel: link those records too
    for customer, member_id in sorted(members.items()):
        brand.person(member_id, channel="app", source_id=customer)
    return brand


def _twin(context: Context, slug: str) -> tuple[Workspace, dict[str, str]]:
    """A workspace with the programme and :data:`MEMBERS` enrolled customers (some with a phone, one with a
    birthday), one of whom bought live before the backfill (its lake refund is replayed live too)."""
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session, slug=slug, name=slug, timezone="Asia/Shanghai")
        set_programme(session, workspace, **PROGRAMME)
        members = {}
        for number in range(MEMBERS):
            customer = f"c{number:02d}"
            fields: dict[str, Any] = {"phone": f"+86138000000{number:02d}"} if number % 3 else {}
            if number == 4:
                fields["birthday"] = date(1990, 2, 14)
            members[customer] = enrol(session, workspace, customer, now=START - timedelta(days=10 - number % 2 * 400),
                                      **fields)
        bought = START + timedelta(days=3)
        order = LiveOrder(workspace_id=workspace.id, channel="pos", order_id="c02-o0", customer_key="c02",
                          member_id=members["c02"], ordered_at=bought, paid_amount=Decimal("999.90"))
        session.add(order)
        session.flush()
        points.earn_for_order(session, workspace, order, now=bought)
    return workspace, members


def _ledger(context: Context, workspace: Workspace, members: dict[str, str]) -> dict[str, Any]:
    """Every ledger row of the workspace, with member ids as customer keys and row ids as their rank within
    the member's rows (so two workspaces compare)."""
    customer_of = {member_id: customer for customer, member_id in members.items()}
    with context.store.read() as session:
        moves = session.scalars(select(PointsMovement).where(PointsMovement.workspace_id == workspace.id)
                                .order_by(PointsMovement.id)).all()
        lots = session.scalars(select(PointsLot).where(PointsLot.workspace_id == workspace.id)
                               .order_by(PointsLot.id)).all()
        allocations = session.execute(select(PointsAllocation.movement_id, PointsAllocation.lot_id,
                                             PointsAllocation.points).join(PointsLot, PointsLot.id == PointsAllocation.lot_id)
                                      .where(PointsLot.workspace_id == workspace.id)).all()
        earnings = session.scalars(select(EventEarning).where(EventEarning.workspace_id == workspace.id)).all()
        expired = session.scalars(select(LoyaltyEvent).where(LoyaltyEvent.workspace_id == workspace.id,
                                                              LoyaltyEvent.type == "points_expired")).all()
        balances = session.scalars(select(PointsAccount).where(PointsAccount.workspace_id == workspace.id)).all()
        for member_id in members.values():
            check_ledger(session, member_id)
        move_rank = {move.id: (customer_of[move.member_id], rank) for rank, move in enumerate(
            sorted(moves, key=lambda move: (customer_of[move.member_id], move.id)))}
        lot_rank = {lot.id: (customer_of[lot.member_id], rank) for rank, lot in enumerate(
            sorted(lots, key=lambda lot: (customer_of[lot.member_id], lot.id)))}

        def key(move: PointsMovement) -> str:
            kind, _, rest = move.idempotency_key.partition(":")
            if kind in ("release", "expire"):
                return f"{kind}:{lot_rank[int(rest)]}"
            if kind == "settle":
                return f"{kind}:{move_rank[int(rest)]}"
            return move.idempotency_key.replace(move.member_id, customer_of[move.member_id])

        return {
            "movements": sorted((move_rank[m.id], m.kind, m.points, m.available_delta, m.pending_delta, m.debt_delta,
                                 key(m), m.source_type,
                                 "" if m.source_type in ("lot", "movement") else m.source_id.replace(m.member_id, ""),
                                 m.reason, m.programme_version, move_rank.get(m.reverses_id or 0), m.outcome,
                                 m.occurred_at, m.created_at) for m in moves),
            "lots": sorted((lot_rank[lot.id], move_rank[lot.movement_id], lot.points, lot.remaining, lot.state,
                            lot.earned_at, lot.available_at, lot.expires_at) for lot in lots),
            "allocations": sorted((move_rank[m], lot_rank[lot], count) for m, lot, count in allocations),
            "earnings": sorted((customer_of[row.member_id], row.event_type,
                                row.event_key.replace(row.member_id, customer_of[row.member_id]), row.occurred_at,
                                row.local_day, row.points, row.streak,
                                move_rank[row.movement_id] if row.movement_id else None, row.created_at)
                               for row in earnings),
            "expired": sorted((customer_of[row.member_id], row.occurred_at, row.payload["points"],
                               lot_rank[row.payload["lot_id"]], row.payload["expires_at"]) for row in expired),
            "balances": sorted((customer_of[row.member_id], row.available, row.pending, row.debt, row.updated_at)
                               for row in balances),
        }


@pytest.mark.parametrize("seed", [2026])
def test_the_set_based_backfill_writes_the_ledger_of_the_member_by_member_one(
        context: Context, workspace: Workspace, seed: int) -> None:
    by_member, member_ids = _twin(context, "by-member")
    set_based, set_members = _twin(context, "set-based")
    _history(by_member.id, member_ids, seed).write(context.settings.lake_path, stem="by-member")
    _history(set_based.id, set_members, seed).write(context.settings.lake_path, stem="set-based")

    reference = backfill_points_per_member(context, by_member, now=NOW)
    summary = backfill_points(context, set_based, now=NOW)
    assert (summary.orders, summary.points_earned, summary.refunds, summary.points_reversed, summary.events,
            summary.points_for_events, summary.already_posted, summary.skipped_before_enrolment) == (
        reference.orders, reference.points_earned, reference.refunds, reference.points_reversed, reference.events,
        reference.points_for_events, reference.already_posted, reference.skipped_before_enrolment)
    assert summary.orders > 50 and summary.refunds > 5 and summary.events > 20 and summary.already_posted == 1
    first = _ledger(context, set_based, set_members)
    assert first == _ledger(context, by_member, member_ids)
    kinds = {row[1] for row in first["movements"]}
    assert {"earn", "release", "expire", "reverse", "settle"} <= kinds  # the history reaches every rule (a debt settled)
    assert any(row[6] > 0 and row[5] > 1 for row in first["earnings"])  # a streak bonus was paid

    # a rerun later posts nothing again, and catches both ledgers up alike
    again = backfill_points(context, set_based, now=LATER)
    reference_again = backfill_points_per_member(context, by_member, now=LATER)
    assert (again.orders, again.refunds, again.events, again.already_posted) == (
        reference_again.orders, reference_again.refunds, reference_again.events, reference_again.already_posted)
    assert again.orders == again.events == 0  # refunds dated after NOW are replayed now; nothing else
    assert again.already_posted >= summary.orders + summary.refunds + summary.events
    later = _ledger(context, set_based, set_members)
    assert later == _ledger(context, by_member, member_ids)
    assert len(later["expired"]) > len(first["expired"])
    with context.store.read() as session:
        ws = session.get(Workspace, set_based.id)
        assert ws is not None
        assert points.points_summary(session, ws, set_members["c03"], now=LATER).pending == 0
