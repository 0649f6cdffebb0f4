"""A workspace's facts tied to members through the identity map, as of a point in time (Ibis).

Facts keep their channel's customer key; ``identity_map`` (written by OneID) turns ``(channel,
customer_key)`` into a ``member_id``, so a merge of two people never rewrites a fact and every trait of a
merged member aggregates across its channels. Only facts at or before ``as_of`` are read, so the same
``as_of`` gives the same traits whenever it is computed. The importers keep facts unique by their natural
key, so nothing is de-duplicated here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import ibis
from ibis.expr.types import Table

from memberops.insight.config import InsightConfig
from memberops.lake.engine import Warehouse

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class MemberFacts:
    """The workspace's facts with a ``member_id`` each; ``day`` columns are UTC days since 1970-01-01."""

    as_of: datetime
    members: Table  # member_id: everyone the identity map knows, prospects included
    orders: Table  # one row per counted order
    items: Table  # one row per order line of a counted order
    events: Table  # member_id, type, occurred_at, day
    records: Table  # the newest version of each identity record, with its member_id

    @property
    def as_of_day(self) -> int:
        return epoch_day(self.as_of)


def epoch_day(moment: datetime) -> int:
    """The UTC day number of ``moment`` (days since 1970-01-01): integer day arithmetic on every engine."""
    return int(moment.astimezone(UTC).timestamp() // SECONDS_PER_DAY)


def _day(column: ibis.Value) -> ibis.Value:
    return (column.epoch_seconds().cast("int64") // SECONDS_PER_DAY).cast("int64")


def order_lines(warehouse: Warehouse, workspace_id: str, orders: Table) -> Table:
    """The lines of ``orders`` (the ``orders`` of :class:`MemberFacts`), each with its order's member and day.

    A caller that has materialised the orders passes them here, so the lines join a small keyed table
    instead of reading the orders, refunds and identity map once more.
    """
    lines = warehouse.table("order_items")
    lines = lines.filter(lines.workspace_id == workspace_id).select(
        "channel", "order_id", "sku", "category", "quantity", "amount")
    order_keys = orders.select("member_id", "channel", "order_id", "ordered_at", "day")
    return lines.join(order_keys, ["channel", "order_id"]).select(
        "member_id", "channel", "order_id", "ordered_at", "day", "sku", "category",
        quantity=lines.quantity.fill_null(0).cast("int64"), amount=lines.amount)


def member_facts(warehouse: Warehouse, workspace_id: str, as_of: datetime, config: InsightConfig) -> MemberFacts:
    """The facts of ``workspace_id`` up to ``as_of``, each tied to its member."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be time zone aware (UTC)")
    moment = ibis.literal(as_of.astimezone(UTC), type="timestamp('UTC')")
    identity_map = warehouse.table("identity_map")
    links = identity_map.filter(identity_map.workspace_id == workspace_id).select(
        "channel", "source_id", "member_id")
    members = links.select("member_id").distinct()

    orders = warehouse.table("orders")
    orders = orders.filter(orders.workspace_id == workspace_id, orders.ordered_at <= moment)
    if config.uncounted_statuses:
        orders = orders.filter(orders.status.isnull() | ~orders.status.isin(list(config.uncounted_statuses)))
    refunds = warehouse.table("refunds")
    refunds = refunds.filter(refunds.workspace_id == workspace_id, refunds.refunded_at <= moment)
    refunded = refunds.group_by(["channel", "order_id"]).aggregate(refunded=refunds.amount.sum())
    by_key = links.rename(customer_key="source_id")
    owned = orders.join(by_key, ["channel", "customer_key"])
    with_refunds = owned.join(refunded, ["channel", "order_id"], how="left")
    paid = with_refunds.paid_amount.fill_null(0)
    # a refund never takes more than the order's payment (a marketplace may refund shipping on top)
    refund = ibis.least(with_refunds.refunded.fill_null(0), paid)
    counted = with_refunds.select(
        "member_id", "channel", "order_id", "store_id", "ordered_at",
        day=_day(with_refunds.ordered_at),
        paid=paid.cast("decimal(18, 2)"),
        refunded=refund.cast("decimal(18, 2)"),
        net=(paid - refund).cast("decimal(18, 2)"),
        has_discount=(with_refunds.discount_amount.fill_null(0) > 0)
        | (with_refunds.coupon_codes.notnull() & (with_refunds.coupon_codes.length() > 0)),
        is_offline=with_refunds.channel.isin(list(config.offline_channels)),
    )

    items = order_lines(warehouse, workspace_id, counted)

    events = warehouse.table("events")
    events = events.filter(events.workspace_id == workspace_id, events.occurred_at <= moment,
                           events.customer_key.notnull())
    member_events = events.join(by_key, ["channel", "customer_key"]).select(
        "member_id", "type", "occurred_at", day=_day(events.occurred_at))

    records = warehouse.table("identity_records")
    records = records.filter(records.workspace_id == workspace_id)
    newest = records.mutate(_version=ibis.row_number().over(
        group_by=[records.channel, records.source_id],
        order_by=[records.ingested_at.desc(), records.batch_id.desc()])).filter(ibis._._version == 0).drop(
        "_version", "member_id")
    member_records = newest.join(links, ["channel", "source_id"]).select(
        "member_id", "channel", "source_id", "member_card_no", "referrer_code", "associate_id", "joined_at")
    return MemberFacts(as_of, members, counted, items, member_events, member_records)
