"""Lake rows with readable defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow as pa

from memberops.lake.registry import records_to_arrow, table_spec

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def order(n: int, *, day_offset: int = 0, channel: str = "tmall", paid: str = "100.00", **extra: Any) -> dict[str, Any]:
    return {
        "workspace_id": "ws1", "batch_id": "b1", "ingested_at": T0, "channel": channel, "order_id": f"o{n}",
        "customer_key": f"c{n % 7}", "ordered_at": T0 + timedelta(days=day_offset, minutes=n),
        "status": "paid", "gross_amount": Decimal(paid), "discount_amount": Decimal("0"),
        "shipping_amount": Decimal("0"), "paid_amount": Decimal(paid), "currency": "CNY",
        "coupon_codes": ["C1"] if n % 2 else None, **extra,
    }


def orders_table(records: list[dict[str, Any]]) -> pa.Table:
    return records_to_arrow(table_spec("orders"), records)
