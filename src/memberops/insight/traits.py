"""Purchase statistics per member, as one Ibis expression over :class:`~memberops.insight.facts.MemberFacts`.

Definitions (every member of the identity map gets a row; a member who never bought has ``orders = 0``
and nulls where a value needs a purchase):

- ``orders``: counted orders (not ``created``/``cancelled``); ``units``: their items' quantities;
- ``gross_spend``: what was paid; ``refunded``: refunds (each capped at its order's payment);
  ``net_spend = gross_spend − refunded``; ``aov`` (order value) = ``net_spend ÷ orders``, to the cent;
- ``items_per_order = units ÷ orders``;
- ``first_purchase_at`` / ``last_purchase_at``; ``days_since_last_purchase`` (UTC days to ``as_of``);
- inter-purchase interval: days between consecutive *purchase days* (several orders on one day are one
  purchase); ``mean_interpurchase_days`` and ``median_interpurchase_days`` (mean of the two middle
  intervals when their number is even) — null below two purchase days;
- ``discount_share``: share of orders with a discount or a coupon (price sensitivity);
- ``refund_rate``: share of orders with a refund;
- ``online_share``: share of orders in online channels (not in ``offline_channels``);
- ``preferred_channel`` / ``preferred_store``: the channel / store with most orders; ``preferred_category``:
  the category with most units; ``associate_id``: the associate on most of the member's identity records
  (ties: the alphabetically first, so results never depend on the engine);
- the BG/NBD summary: ``frequency`` (repeat purchase days), ``recency`` (first to last purchase day) and
  ``tenure_days`` (first purchase day to ``as_of``, "T"), ``repeat_value`` (mean net spend of the repeat
  purchase days: Gamma–Gamma's monetary value).
"""

from __future__ import annotations

import ibis
from ibis.expr.types import Table

from memberops.insight.facts import MemberFacts

MEMBER = "member_id"


def attach(base: Table, part: Table) -> Table:
    """``base`` with ``part``'s columns, left-joined on ``member_id``."""
    joined = base.join(part, MEMBER, how="left")
    return joined.drop(f"{MEMBER}_right") if f"{MEMBER}_right" in joined.columns else joined


# a weight is far below 2^32 (orders or units of one member), a workspace has far fewer than 2^31 values
_RANKS = 2**31


def most_frequent(table: Table, value: str, weight: str | None = None, *, name: str) -> Table:
    """``member_id, <name>``: each member's ``value`` with the highest total ``weight`` (default: rows);
    among values of equal weight, the alphabetically first."""
    present = table.filter(table[value].notnull())
    grouped = present.group_by([MEMBER, value]).aggregate(
        _weight=(present[weight].sum() if weight is not None else present.count()).cast("int64"))
    # one integer key orders (weight, then the value's alphabetical rank backwards): a plain max per member
    # finds the heaviest value and, among equals, the first; the few distinct values are ranked once
    distinct = grouped.select(value).distinct()
    ranks = distinct.select(value, _rank=ibis.row_number().over(order_by=distinct[value]).cast("int64"))
    keyed = grouped.join(ranks, value)
    best = keyed.group_by(MEMBER).aggregate(_key=(keyed._weight * _RANKS + (_RANKS - 1 - keyed._rank)).max())
    best = best.select(MEMBER, _rank=_RANKS - 1 - best._key % _RANKS)
    return best.join(ranks, "_rank").select(MEMBER, **{name: ranks[value]})


def purchase_gaps(facts: MemberFacts) -> Table:
    """``member_id, gap, gap_number``: the gaps between a member's purchase days (gap 1 = first → second),
    from the orders' day sequence (:class:`~memberops.insight.facts.MemberFacts`): each day's first order
    after the member's first day carries its gap."""
    orders = facts.orders
    gaps = orders.filter(orders.gap > 0)
    return gaps.select(MEMBER, "gap", gap_number=gaps.day_number)


def median_gaps(gaps: Table) -> Table:
    """``member_id, median_interpurchase_days``: the exact median of each member's gaps (the mean of the two
    middle ones when their number is even), the same on every engine.

    One window sorts each member's gaps and counts them; the middle rows are then averaged. A holistic
    ``median()`` aggregate keeps every group's values apart and is several times slower on DuckDB.
    """
    by_value = ibis.window(group_by=gaps[MEMBER], order_by=gaps.gap)
    whole = ibis.window(group_by=gaps[MEMBER], order_by=gaps.gap, rows=(None, None))
    ranked = gaps.select(MEMBER, "gap", _position=ibis.row_number().over(by_value), _n=gaps.gap.count().over(whole))
    middle = ranked.filter((ranked._position == (ranked._n - 1) // 2) | (ranked._position == ranked._n // 2))
    return middle.group_by(MEMBER).aggregate(median_interpurchase_days=middle.gap.cast("float64").mean())


def order_mix(facts: MemberFacts) -> Table:
    """``member_id, channel, store_id, orders``: each member's orders per channel and store."""
    orders = facts.orders
    return orders.group_by([MEMBER, "channel", "store_id"]).aggregate(orders=orders.count().cast("int64"))


def category_units(facts: MemberFacts) -> Table:
    """``member_id, category, units``: each member's units per category (a null category included)."""
    items = facts.items
    return items.group_by([MEMBER, "category"]).aggregate(units=items.quantity.sum().cast("int64"))


def purchase_statistics(facts: MemberFacts, *, gaps: Table | None = None, mix: Table | None = None,
                        categories: Table | None = None, **measures: ibis.Value) -> Table:
    """One row per member with the purchase statistics of the module docstring.

    ``gaps`` (:func:`purchase_gaps`), ``mix`` (:func:`order_mix`) and ``categories`` (:func:`category_units`)
    are computed here unless the caller has them materialised; ``measures`` are more aggregates over the
    member's orders (RFM, window counts) computed in the same pass and kept as columns.

    Every per-member sum is taken over the orders directly; only what depends on purchase *days* reads the
    orders' day sequence: the number of days, and the repeat days' spend (all but the first day's).
    """
    orders = facts.orders
    gaps = gaps if gaps is not None else purchase_gaps(facts)
    mix = mix if mix is not None else order_mix(facts)
    categories = categories if categories is not None else category_units(facts)
    per_member = orders.group_by(MEMBER).aggregate(
        orders=orders.count().cast("int64"),
        gross_spend=orders.paid.sum().cast("decimal(18, 2)"),
        refunded=orders.refunded.sum().cast("decimal(18, 2)"),
        net_spend=orders.net.sum().cast("decimal(18, 2)"),
        first_purchase_at=orders.ordered_at.min(),
        last_purchase_at=orders.ordered_at.max(),
        _discounted=orders.has_discount.cast("int64").sum(),
        _refund_orders=(orders.refunded > 0).cast("int64").sum(),
        _online=(~orders.is_offline).cast("int64").sum(),
        _days=(orders.day_number.max() + 1).cast("int64"),
        _first_day=orders.day.min(),
        _last_day=orders.day.max(),
        _repeat_spend=orders.net.sum(where=orders.day_number > 0),
        **measures,
    )
    units = categories.group_by(MEMBER).aggregate(units=categories.units.sum().cast("int64"))

    table = facts.members.select(MEMBER)
    for part in (per_member, median_gaps(gaps), units,
                 most_frequent(mix, "channel", "orders", name="preferred_channel"),
                 most_frequent(mix, "store_id", "orders", name="preferred_store"),
                 most_frequent(categories, "category", "units", name="preferred_category"),
                 most_frequent(facts.records, "associate_id", name="associate_id")):
        table = attach(table, part)

    n = table.orders.fill_null(0)
    bought = n > 0
    cents = (table.net_spend.fill_null(0) * 100).cast("int64")
    # order value to the cent, half up: (2·cents + n) // (2·n) for non-negative cents
    aov_cents = ibis.ifelse(cents >= 0, (2 * cents + n) // (2 * n), -((-2 * cents + n) // (2 * n)))
    frequency = table._days - 1
    return table.select(
        MEMBER,
        orders=n,
        units=table.units.fill_null(0),
        gross_spend=table.gross_spend.fill_null(0).cast("decimal(18, 2)"),
        refunded=table.refunded.fill_null(0).cast("decimal(18, 2)"),
        net_spend=table.net_spend.fill_null(0).cast("decimal(18, 2)"),
        aov=ibis.ifelse(bought, (aov_cents.cast("decimal(18, 0)") / 100).cast("decimal(18, 2)"), ibis.null()),
        items_per_order=ibis.ifelse(bought, table.units.fill_null(0).cast("float64") / n, ibis.null()),
        first_purchase_at=table.first_purchase_at,
        last_purchase_at=table.last_purchase_at,
        days_since_last_purchase=facts.as_of_day - table._last_day,
        # the gaps add up to the first → last day span: their mean is the span over their number
        mean_interpurchase_days=ibis.ifelse(frequency > 0, (table._last_day - table._first_day).cast("float64")
                                            / frequency.cast("float64"), ibis.null()),
        median_interpurchase_days=table.median_interpurchase_days,
        discount_share=ibis.ifelse(bought, table._discounted.cast("float64") / n, ibis.null()),
        refund_rate=ibis.ifelse(bought, table._refund_orders.cast("float64") / n, ibis.null()),
        online_share=ibis.ifelse(bought, table._online.cast("float64") / n, ibis.null()),
        preferred_channel=table.preferred_channel,
        preferred_category=table.preferred_category,
        preferred_store=table.preferred_store,
        associate_id=table.associate_id,
        purchase_days=table._days.fill_null(0),
        first_purchase_day=table._first_day,
        last_purchase_day=table._last_day,
        frequency=frequency.fill_null(0),
        recency=(table._last_day - table._first_day),
        tenure_days=facts.as_of_day - table._first_day,
        repeat_value=ibis.ifelse(frequency > 0,
                                 table._repeat_spend.cast("float64") / frequency, ibis.null()),
        **{name: table[name] for name in measures},
    )
