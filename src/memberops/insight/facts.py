"""A workspace's facts tied to members through the identity map, as of a point in time (Ibis).

Facts keep their channel's customer key; ``identity_map`` (written by OneID) turns ``(channel,
customer_key)`` into a member, so a merge of two people never rewrites a fact and every trait of a
merged member aggregates across its channels. Only facts at or before ``as_of`` are read, so the same
``as_of`` gives the same traits whenever it is computed. The importers keep facts unique by their natural
key, so nothing is de-duplicated here.

Members are keyed by a dense integer inside the computation: :func:`member_facts` numbers the identity
map's string member ids once (in their sort order) and every later join and aggregation groups by that
number, not by a 26-character string; ``members`` turns the number back into the stable id at the end.
Each fact table is read from the lake once and kept narrow (:meth:`Warehouse.materialise`), because
several traits read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import ibis
from ibis.expr.types import Table

from memberops.insight.config import InsightConfig
from memberops.lake.engine import Warehouse

SECONDS_PER_DAY = 86_400
MEMBER = "member_id"
STABLE_ID = "stable_id"


@dataclass(frozen=True)
class MemberFacts:
    """The workspace's facts with a member each; ``day`` columns are UTC days since 1970-01-01.

    ``member_id`` in every table is the member's key: in :func:`member_facts` a dense ``int64`` number,
    which ``members`` maps to the identity map's stable string id (``stable_id``); a caller that builds
    facts itself may key them by the string id directly (the traits do not depend on the key's type).
    """

    as_of: datetime
    members: Table  # member_id (key), stable_id: everyone the identity map knows, prospects included
    # one row per counted order, with ``day_number`` (0 on the member's first purchase day, 1 on the next …)
    # and ``gap`` (days since the member's previous purchase day: null on the first day, 0 for a second
    # order on the same day)
    orders: Table
    items: Table  # one row per order line of a counted order (``order_key`` when orders are numbered)
    events: Table  # member_id, type, day
    records: Table  # the newest version of each identity record, with its member_id

    @property
    def as_of_day(self) -> int:
        return epoch_day(self.as_of)


def epoch_day(moment: datetime) -> int:
    """The UTC day number of ``moment`` (days since 1970-01-01): integer day arithmetic on every engine."""
    return int(moment.astimezone(UTC).timestamp() // SECONDS_PER_DAY)


def order_lines(warehouse: Warehouse, workspace_id: str, orders: Table) -> Table:
    """The lines of ``orders`` (the ``orders`` of :class:`MemberFacts`), each with its order's member, day
    and ``order_key`` (a number unique across channels, for counting distinct orders cheaply).

    A caller that has materialised the orders passes them here, so the lines join a small keyed table
    instead of reading the orders, refunds and identity map once more.
    """
    lines = warehouse.table("order_items")
    lines = lines.filter(lines.workspace_id == workspace_id).select(
        "channel", "order_id", "sku", "category", "quantity")
    order_keys = orders.select(MEMBER, "channel", "order_id", "order_key", "day")
    return lines.join(order_keys, ["channel", "order_id"]).select(
        MEMBER, "channel", "order_id", "order_key", "day", "sku", "category",
        quantity=lines.quantity.fill_null(0).cast("int64"))


def member_facts(warehouse: Warehouse, workspace_id: str, as_of: datetime, config: InsightConfig) -> MemberFacts:
    """The facts of ``workspace_id`` up to ``as_of``, each tied to its member's key, read once and kept."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be time zone aware (UTC)")
    moment = ibis.literal(as_of.astimezone(UTC), type="timestamp('UTC')")
    identity_map = warehouse.table("identity_map")
    identity_map = identity_map.filter(identity_map.workspace_id == workspace_id).select(
        "channel", "source_id", stable_id=identity_map.member_id)
    stable_ids = identity_map.select(STABLE_ID).distinct()
    # numbered in the stable ids' order, so ordering by the key orders by the id
    members = warehouse.materialise(stable_ids.select(
        member_id=ibis.row_number().over(order_by=stable_ids.stable_id).cast("int64"), stable_id=stable_ids.stable_id))
    links = warehouse.materialise(identity_map.join(members, STABLE_ID).select("channel", "source_id", MEMBER))

    orders = warehouse.table("orders")
    orders = orders.filter(orders.workspace_id == workspace_id, orders.ordered_at <= moment)
    if config.uncounted_statuses:
        orders = orders.filter(orders.status.isnull() | ~orders.status.isin(list(config.uncounted_statuses)))
    refunds = warehouse.table("refunds")
    refunds = refunds.filter(refunds.workspace_id == workspace_id, refunds.refunded_at <= moment)
    # a sum of one order's refunds fits the lake's decimal(18, 2): the order lines below then compute in 64 bits
    refunded = refunds.group_by(["channel", "order_id"]).aggregate(refunded=refunds.amount.sum().cast("decimal(18, 2)"))
    by_key = links.rename(customer_key="source_id")
    owned = orders.join(by_key, ["channel", "customer_key"])
    with_refunds = owned.join(refunded, ["channel", "order_id"], how="left")
    paid = with_refunds.paid_amount.fill_null(0)
    # a refund never takes more than the order's payment (a marketplace may refund shipping on top)
    refund = ibis.least(with_refunds.refunded.fill_null(0), paid)
    selected = with_refunds.select(
        MEMBER, "channel", "order_id", "store_id", "ordered_at",
        day=warehouse.epoch_day(with_refunds.ordered_at),
        paid=paid.cast("decimal(18, 2)"),
        refunded=refund.cast("decimal(18, 2)"),
        net=(paid - refund).cast("decimal(18, 2)"),
        has_discount=(with_refunds.discount_amount.fill_null(0) > 0)
        | (with_refunds.coupon_codes.notnull() & (with_refunds.coupon_codes.length() > 0)),
        is_offline=with_refunds.channel.isin(list(config.offline_channels)),
    )
    # each member's purchase days in order, numbered in the same pass: every statistic over days and gaps
    # then aggregates these rows, and their member order makes the per-member aggregations local
    sequence = ibis.window(group_by=selected[MEMBER], order_by=selected.day)
    counted = warehouse.numbered(selected.mutate(
        day_number=ibis.dense_rank().over(sequence).cast("int64"),
        gap=(selected.day - selected.day.lag().over(sequence)).cast("int64"),
    ), "order_key")

    items = warehouse.materialise(order_lines(warehouse, workspace_id, counted))

    events = warehouse.table("events")
    events = events.filter(events.workspace_id == workspace_id, events.occurred_at <= moment,
                           events.customer_key.notnull())
    member_events = warehouse.materialise(events.join(by_key, ["channel", "customer_key"]).select(
        MEMBER, "type", day=warehouse.epoch_day(events.occurred_at)))

    records = warehouse.table("identity_records")
    records = records.filter(records.workspace_id == workspace_id)
    newest = records.mutate(_version=ibis.row_number().over(
        group_by=[records.channel, records.source_id],
        order_by=[records.ingested_at.desc(), records.batch_id.desc()])).filter(ibis._._version == 0).drop(
        "_version", "member_id")
    member_records = warehouse.materialise(newest.join(links, ["channel", "source_id"]).select(
        MEMBER, "channel", "source_id", "member_card_no", "referrer_code", "associate_id", "joined_at"))
    return MemberFacts(as_of, members, counted, items, member_events, member_records)
