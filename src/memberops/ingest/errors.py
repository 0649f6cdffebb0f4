"""Why a live fact is refused, with the facts of the case; ``api/errors.py`` maps them to statuses.

In a batch, each is reported as the item's rejection reason (its ``code``); for a single item it is the
answer itself.
"""

from __future__ import annotations

from decimal import Decimal

from memberops.errors import Conflict, Invalid, NotFound


class OrderNotFound(NotFound):
    """A refund names an order that was never posted live on that channel."""

    code = "order_not_found"
    field = "order_id"

    def __init__(self, channel: str, order_id: str) -> None:
        super().__init__(
            f"no order {order_id!r} was posted on channel {channel!r}; post the order before its refunds",
            channel=channel, order_id=order_id,
        )


class RefundExceedsOrder(Conflict):
    """The refund would take the order's refunds past what was paid for it."""

    code = "refund_exceeds_order"
    field = "amount"

    def __init__(self, order_id: str, requested: Decimal, refundable: Decimal) -> None:
        super().__init__(
            f"refund of {requested} exceeds what is left to refund on order {order_id!r} ({refundable})",
            order_id=order_id, requested=str(requested), refundable=str(refundable),
        )


class BatchTooLarge(Invalid):
    code = "batch_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a batch holds at most {limit:,} items; this one has {size:,}: split it",
                         size=size, limit=limit)


class ConcurrentIngest(Conflict):
    """Another request wrote the same natural key at the same moment (PostgreSQL only: SQLite serialises
    writers). The whole request is rolled back; sent again, it finds the other's rows and reports them as
    duplicates."""

    code = "concurrent_ingest"

    def __init__(self, kind: str) -> None:
        super().__init__(f"another request was writing the same {kind} at the same time; send it again",
                         kind=kind)
