"""Facts the live path looks up in the lake: orders that were imported in bulk, never posted live.

A refund may arrive over HTTP for an order that reached memberops only through a batch import (last
year's marketplace export, say). Such an order has no ``LiveOrder`` row to hold its refund cap; the live
path asks this module for it and adopts it (see :func:`memberops.ingest.live.ingest_refunds`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from memberops.lake.engine import Warehouse


@dataclass(frozen=True, slots=True)
class LakeOrder:
    """An order as the lake holds it, with the refunds the lake already has for it."""

    channel: str
    order_id: str
    customer_key: str
    store_id: str | None
    ordered_at: datetime
    status: str
    gross_amount: Decimal | None
    discount_amount: Decimal | None
    shipping_amount: Decimal | None
    paid_amount: Decimal
    currency: str
    coupon_codes: list[str]
    refund_ids: frozenset[str]
    refunded_amount: Decimal


LakeOrders = Callable[[str, Sequence[tuple[str, str]]], dict[tuple[str, str], LakeOrder]]
"""``find(workspace_id, [(channel, order_id), …])`` → the orders of those keys the lake holds."""


def lake_orders(connect: Callable[[], Warehouse]) -> LakeOrders:
    """A :data:`LakeOrders` lookup over the ``orders`` and ``refunds`` of the warehouse ``connect()`` gives
    (called only when a lookup is needed: most refunds are of orders posted live)."""

    def find(workspace_id: str, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], LakeOrder]:
        if not keys:
            return {}
        warehouse = connect()
        order_ids = sorted({order_id for _, order_id in keys})
        wanted = set(keys)
        orders = warehouse.table("orders")
        found = warehouse.to_pyarrow(
            orders.filter(orders.workspace_id == workspace_id, orders.order_id.isin(order_ids))
            .select("channel", "order_id", "customer_key", "store_id", "ordered_at", "status", "gross_amount",
                    "discount_amount", "shipping_amount", "paid_amount", "currency", "coupon_codes")
        ).to_pylist()
        found = [row for row in found if (row["channel"], row["order_id"]) in wanted]
        if not found:
            return {}
        refunds = warehouse.table("refunds")
        refunded: dict[tuple[str, str], dict[str, Decimal]] = {}
        for row in warehouse.to_pyarrow(
            refunds.filter(refunds.workspace_id == workspace_id,
                           refunds.order_id.isin(sorted({row["order_id"] for row in found})))
            .select("channel", "order_id", "refund_id", "amount")
        ).to_pylist():
            # A refund file may repeat a refund id; the lake counts each refund once.
            refunded.setdefault((row["channel"], row["order_id"]), {})[row["refund_id"]] = row["amount"]
        result: dict[tuple[str, str], LakeOrder] = {}
        for row in found:
            key = (row["channel"], row["order_id"])
            if key in result:  # the first copy wins; the lake keeps one per key
                continue
            by_refund = refunded.get(key, {})
            result[key] = LakeOrder(
                **{**row, "coupon_codes": list(row["coupon_codes"] or []), "status": row["status"] or "paid",
                   "currency": row["currency"] or "CNY"},
                refund_ids=frozenset(by_refund), refunded_amount=sum(by_refund.values(), Decimal("0")),
            )
        return result

    return find
