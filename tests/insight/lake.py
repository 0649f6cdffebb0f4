"""A small hand-built lake for insight tests: people, their channel records, orders, items, refunds, events.

``Brand`` collects rows with readable defaults and writes them (and the identity map) to a lake folder;
the expected traits in the tests are computed by hand from what each test adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from memberops.lake import writer
from memberops.lake.registry import records_to_arrow, table_spec

WS = "ws1"
AS_OF = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
T0 = datetime(2025, 1, 1, 10, 0, tzinfo=UTC)


def at(days_before: float) -> datetime:
    """``days_before`` days before :data:`AS_OF`."""
    return AS_OF - timedelta(days=days_before)


@dataclass
class Brand:
    workspace_id: str = WS
    links: list[tuple[str, str, str]] = field(default_factory=list)  # channel, source_id, member_id
    records: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def _common(self) -> dict[str, Any]:
        return {"workspace_id": self.workspace_id, "batch_id": "b1", "ingested_at": T0}

    def person(self, member_id: str, channel: str = "tmall", source_id: str | None = None, **record: Any) -> str:
        """A channel record of ``member_id``; returns its source id (the facts' customer key)."""
        source_id = source_id or f"{channel}-{member_id}"
        self.links.append((channel, source_id, member_id))
        self.records.append({**self._common(), "channel": channel, "source_id": source_id, **record})
        return source_id

    def order(self, customer: str, order_id: str, days_before: float, paid: str, *, channel: str = "tmall",
              discount: str = "0", status: str | None = "paid", store_id: str | None = None,
              coupon_codes: list[str] | None = None,
              lines: tuple[tuple[str, str, int, str], ...] = ()) -> None:
        """An order by ``customer`` (a source id) with ``lines`` of ``(sku, category, quantity, amount)``."""
        self.orders.append({
            **self._common(), "channel": channel, "order_id": order_id, "customer_key": customer,
            "store_id": store_id, "ordered_at": at(days_before), "status": status,
            "gross_amount": Decimal(paid) + Decimal(discount), "discount_amount": Decimal(discount),
            "shipping_amount": Decimal("0"), "paid_amount": Decimal(paid), "currency": "CNY",
            "coupon_codes": coupon_codes,
        })
        for line_no, (sku, category, quantity, amount) in enumerate(lines, start=1):
            self.items.append({**self._common(), "channel": channel, "order_id": order_id, "line_no": line_no,
                               "sku": sku, "category": category, "brand": "b", "quantity": quantity,
                               "unit_price": Decimal(amount) / quantity, "amount": Decimal(amount)})

    def refund(self, order_id: str, days_before: float, amount: str, channel: str = "tmall") -> None:
        self.refunds.append({**self._common(), "channel": channel, "refund_id": f"r-{order_id}-{len(self.refunds)}",
                             "order_id": order_id, "refunded_at": at(days_before), "amount": Decimal(amount)})

    def event(self, customer: str, type_: str, days_before: float, channel: str = "tmall") -> None:
        self.events.append({**self._common(), "channel": channel, "event_id": f"e{len(self.events)}", "type": type_,
                            "customer_key": customer, "occurred_at": at(days_before)})

    def write(self, lake: Path, stem: str = "b1") -> None:
        for name, rows in (("identity_records", self.records), ("orders", self.orders),
                           ("order_items", self.items), ("refunds", self.refunds), ("events", self.events)):
            if rows:
                writer.append(lake, table_spec(name), records_to_arrow(table_spec(name), rows), stem)
        self.write_identity_map(lake)

    def write_identity_map(self, lake: Path) -> None:
        n = len(self.links)
        writer.replace_snapshot(lake, table_spec("identity_map"), self.workspace_id, pa.table({
            "workspace_id": [self.workspace_id] * n, "batch_id": ["run"] * n, "ingested_at": pa.array([T0] * n, pa.timestamp("us", tz="UTC")),
            "channel": [c for c, _, _ in self.links], "source_id": [s for _, s, _ in self.links],
            "member_id": [m for _, _, m in self.links],
        }))
