"""What imported history counts toward tiers: the points backfill's orders as tier-qualifying facts, and
their growth value.

Spend and order-count tiers count orders; the live path has them in ``live_order``, but orders imported
in bulk are only in the lake. :func:`record_tier_history` writes each enrolled member's imported orders
(before enrolment too, as the live table holds every known buyer's orders) to
:class:`~memberops.loyalty.tier_models.QualifyingOrder`, one row per order with what its refunds in the lake
add up to (up to ``now``), set anew on every run: a rerun counts each order and refund once, and
:func:`memberops.loyalty.tiers.qualifying_orders` takes an order both posted live and imported once.

When the programme's tiers run on growth value, each imported order a member placed from enrolment on
earns the growth the live path would give it (``growth_per_unit`` per unit paid, floored), and each of its
refunds takes back its share (cumulative, as :func:`memberops.loyalty.tiers.reverse_growth_for_refund`
does), keyed as the live path keys them (``growth:order:{channel}:{order_id}``,
``growth:refund:{channel}:{refund_id}``), so a rerun or a live post of the same order adds nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any, cast

import pyarrow as pa
from sqlalchemy import Table

from memberops.accounts.models import Workspace
from memberops.db.base import utcnow
from memberops.db.dialect import insert_ignoring_conflicts, insert_many, upsert
from memberops.loyalty import ledger
from memberops.loyalty.programme import Programme
from memberops.loyalty.tier_models import GrowthMovement, QualifyingOrder
from memberops.runtime import Context

ROWS_PER_TRANSACTION = 20_000

_ORDERS = cast(Table, QualifyingOrder.__table__)
_GROWTH = cast(Table, GrowthMovement.__table__)


@dataclass(frozen=True)
class TierHistory:
    orders: int  # imported orders recorded for tiers (new or refreshed)
    growth_movements: int  # growth movements of the orders and refunds (those recorded before left as they were)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _refunds_by_order(refunds: pa.Table, now: datetime) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Each order's refunds up to ``now``, in time order."""
    by_order: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in refunds.to_pylist():
        if row["amount"] is None or row["refunded_at"] is None or _utc(row["refunded_at"]) > now:
            continue
        by_order[(row["channel"], row["order_id"])].append(row)
    for found in by_order.values():
        found.sort(key=lambda row: (_utc(row["refunded_at"]), row["refund_id"]))
    return by_order


def record_tier_history(context: Context, workspace: Workspace, programme: Programme, orders: pa.Table,
                        refunds: pa.Table, enrolled: dict[str, datetime], *, now: datetime,
                        rows_per_transaction: int = ROWS_PER_TRANSACTION) -> TierHistory:
    """Record the enrolled members' imported ``orders`` (as :func:`memberops.loyalty.backfill.read_history`
    reads them, with their ``refunds``) for spend and order-count tiers, and their growth value when the
    programme's tiers count growth (see the module). Nothing when the programme has no tiers.
    ``rows_per_transaction`` bounds each write transaction (small on SQLite, whose one write lock the
    point of sale waits for)."""
    if not programme.tiers:
        return TierHistory(0, 0)
    refunded = _refunds_by_order(refunds, now)
    rows = [row for row in orders.to_pylist() if row["member_id"] in enrolled and row["paid_amount"] is not None
            and _utc(row["ordered_at"]) <= now]
    for start in range(0, len(rows), rows_per_transaction):
        part = rows[start:start + rows_per_transaction]
        paid = [Decimal(row["paid_amount"]) for row in part]
        with context.store.transaction() as session:
            insert_many(session, upsert(session, _ORDERS, ["workspace_id", "channel", "order_id"],
                                        ["member_id", "ordered_at", "paid_amount", "refunded_amount", "updated_at"]), {
                "member_id": [row["member_id"] for row in part],
                "channel": [row["channel"] for row in part],
                "order_id": [row["order_id"] for row in part],
                "ordered_at": [_utc(row["ordered_at"]) for row in part],
                "paid_amount": paid,
                "refunded_amount": [min(amount, sum((Decimal(r["amount"]) for r in refunded.get(
                    (row["channel"], row["order_id"]), ())), Decimal(0))) for row, amount in zip(part, paid, strict=True)],
            }, {"workspace_id": workspace.id, "updated_at": now})
    growth = 0
    if programme.tier_rules.metric == "growth":
        earning = [row for row in rows if _utc(row["ordered_at"]) >= enrolled[row["member_id"]]]
        growth = _record_growth(context, workspace, programme, earning, refunded, rows_per_transaction)
    return TierHistory(len(rows), growth)


def _record_growth(context: Context, workspace: Workspace, programme: Programme, orders: Sequence[dict[str, Any]],
                   refunded: dict[tuple[str, str], list[dict[str, Any]]], rows_per_transaction: int) -> int:
    """Growth for ``orders`` and back for their refunds, keyed as the live path keys them (insert once)."""
    movements: dict[str, list[Any]] = defaultdict(list)

    def add(member_id: str, value: int, source_type: str, source_id: str, key: str, at: datetime) -> None:
        for name, item in (("member_id", member_id), ("value", value), ("source_type", source_type),
                           ("source_id", source_id[:200]), ("idempotency_key", key[:200]), ("occurred_at", at)):
            movements[name].append(item)

    for row in orders:
        paid = Decimal(row["paid_amount"])
        earned = int((paid * programme.tier_rules.growth_per_unit).to_integral_value(rounding=ROUND_FLOOR))
        if earned <= 0:
            continue
        ref, at = f"{row['channel']}:{row['order_id']}", _utc(row["ordered_at"])
        add(row["member_id"], earned, "order", ref, f"growth:order:{ref}", at)
        taken, total = 0, Decimal(0)
        for refund in refunded.get((row["channel"], row["order_id"]), ()):
            total += Decimal(refund["amount"])
            value = ledger.reversal_target(earned, paid, total) - taken
            if value > 0:
                add(row["member_id"], -value, "refund", ref, f"growth:refund:{refund['channel']}:{refund['refund_id']}",
                    at)
                taken += value
    size = len(movements["member_id"])
    for start in range(0, size, rows_per_transaction):
        with context.store.transaction() as session:
            insert_many(session, insert_ignoring_conflicts(session, _GROWTH, ["workspace_id", "idempotency_key"]),
                        {name: values[start:start + rows_per_transaction] for name, values in movements.items()},
                        {"workspace_id": workspace.id, "created_at": utcnow()})
    return size
