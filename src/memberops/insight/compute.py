"""Every trait of every member of a workspace, as of a time: the warehouse part of ``insight compute``.

:func:`compute_traits` reads only the lake (facts through the identity map) and returns one Arrow row
per member in the column order of the lake's ``member_traits`` table. The steps: purchase statistics
(``traits``), CLV (``lifetime_value``, fitted on the buyers' summary), RFM (``rfm``), lifecycle and AIPL
(``lifecycle``), the next-purchase window (``next_purchase``), influence (``koc``) and tags (``tags``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from memberops.insight.config import InsightConfig
from memberops.insight.facts import STABLE_ID, member_facts
from memberops.insight.koc import influence, koc_score
from memberops.insight.lifecycle import aipl_stage, lifecycle_stage
from memberops.insight.lifetime_value import ValueFit, member_value
from memberops.insight.next_purchase import brand_rhythm, next_purchase_days
from memberops.insight.rfm import rfm_measures, rfm_scores
from memberops.insight.tags import TagDefinition, compile_tags
from memberops.insight.traits import (
    attach,
    category_units,
    order_mix,
    purchase_gaps,
    purchase_statistics,
)
from memberops.lake.engine import Warehouse
from memberops.lake.registry import MEMBER_TRAIT_FIELDS

Progress = Callable[[str, float], None]
MEMBER = "member_id"
TRAIT_SCHEMA = pa.schema(MEMBER_TRAIT_FIELDS)


@dataclass
class ComputedTraits:
    table: pa.Table  # of TRAIT_SCHEMA
    value_fit: ValueFit
    timings: dict[str, float] = field(default_factory=dict)


def _value_table(warehouse: Warehouse, stats: Any, config: InsightConfig) -> tuple[Any, ValueFit]:
    buyers = stats.filter(stats.orders > 0).select(MEMBER, "frequency", "recency", "tenure_days", "repeat_value")
    values, fit = member_value(warehouse.to_pyarrow(buyers), config.value)
    return warehouse.upload(values), fit


def _tags_column(flags: pa.Table, tags: list[TagDefinition]) -> pa.Array:
    """A list column of tag names from one boolean column per tag (vectorised: no loop over members)."""
    n = flags.num_rows
    rows: list[np.ndarray] = []
    names: list[np.ndarray] = []
    for position, tag in enumerate(tags):
        hit = np.flatnonzero(flags[f"tag_{tag.name}"].to_numpy(zero_copy_only=False).astype(bool))
        rows.append(hit)
        names.append(np.full(len(hit), position))
    if not tags:
        return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, dtype=np.int32)), pa.array([], pa.string()))
    row = np.concatenate(rows)
    name = np.concatenate(names)
    order = np.lexsort((name, row))  # by member, then by tag order
    offsets = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=n))]).astype(np.int32)
    values = pa.array([tag.name for tag in tags], pa.string()).take(pa.array(name[order]))
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def compute_traits(warehouse: Warehouse, workspace_id: str, *, as_of: datetime | None = None,
                   config: InsightConfig | None = None, tags: list[TagDefinition] | None = None,
                   computed_at: datetime | None = None, progress: Progress | None = None) -> ComputedTraits:
    """All traits and tags of every member of ``workspace_id`` as of ``as_of`` (default: now)."""
    import time

    config = config or InsightConfig()
    as_of = (as_of or datetime.now(UTC)).astimezone(UTC)
    computed_at = computed_at or datetime.now(UTC)
    tags = tags or []
    report = progress or (lambda _phase, _fraction: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def step(name: str, fraction: float) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now
        report(name, fraction)

    # every fact is read from the lake once, keyed by a member number (see facts.py)
    facts = member_facts(warehouse, workspace_id, as_of, config)
    step("reading facts", 0.2)
    orders = facts.orders
    loyal = orders.day > facts.as_of_day - config.lifecycle.loyal_window_days
    # one pass over the orders: statistics, the RFM measures and the loyal window's orders
    gaps = purchase_gaps(facts)
    stats = warehouse.materialise(purchase_statistics(
        facts, gaps=gaps, mix=warehouse.materialise(order_mix(facts)),
        categories=warehouse.materialise(category_units(facts)),
        **rfm_measures(orders, facts.as_of_day, config.rfm),
        loyal_window_orders=orders.count(where=loyal).cast("int64")))
    step("purchase statistics", 0.35)

    values, value_fit = _value_table(warehouse, stats, config)
    step("customer lifetime value", 0.5)

    events = facts.events
    interest = events.filter(events.type.isin(list(config.lifecycle.interest_events))
                             & (events.day > facts.as_of_day - config.lifecycle.interest_days))
    interested = interest.group_by(MEMBER).aggregate(interest_events=interest.count().cast("int64"))
    totals = warehouse.to_pyarrow(stats.aggregate(net=stats.net_spend.sum(), n=stats.orders.sum())).to_pylist()[0]
    brand_order_value = float(totals["net"] or 0) / totals["n"] if totals["n"] else 0.0
    rhythm = brand_rhythm(warehouse, gaps)

    table = stats
    for part in (values, rfm_scores(stats, config.rfm), interested, influence(facts, stats, config.koc)):
        table = attach(table, part)
    table = table.mutate(loyal_window_orders=table.loyal_window_orders.fill_null(0),
                         interest_events=table.interest_events.fill_null(0))
    stage = lifecycle_stage(table, config.lifecycle, facts.as_of_day)
    table = table.mutate(
        lifecycle_stage=stage, aipl_stage=aipl_stage(table, stage), koc_score=koc_score(table, config.koc, brand_order_value),
        expected_spend=table.expected_spend.round(2).cast("decimal(18, 2)"), clv=table.clv.round(2).cast("decimal(18, 2)"),
        referrals=table.referrals.fill_null(0), referrals_converted=table.referrals_converted.fill_null(0),
        referred_value=table.referred_value.fill_null(0).cast("decimal(18, 2)"), shares=table.shares.fill_null(0),
        **next_purchase_days(table, rhythm),
    )
    table = warehouse.materialise(table)
    step("RFM, lifecycle, next purchase, influence", 0.75)

    if tags:
        table = table.join(compile_tags(tags, table, facts), MEMBER)
    # the member number back to its stable id; numbered in the ids' order, so this orders by member_id
    named = table.join(facts.members, MEMBER)
    result = warehouse.to_pyarrow(named.mutate(_key=named[MEMBER], member_id=named[STABLE_ID]).drop(STABLE_ID))
    # ordered here, by the key alone: the engine's ORDER BY would carry every trait column through its sort
    result = result.take(pc.sort_indices(result["_key"]))
    step("tags", 0.95)
    return ComputedTraits(_assemble(result, tags, as_of, computed_at), value_fit, timings)


def _assemble(result: pa.Table, tags: list[TagDefinition], as_of: datetime, computed_at: datetime) -> pa.Table:
    n = result.num_rows
    columns: dict[str, pa.Array] = {}
    for day_column, name in (("next_purchase_from_day", "next_purchase_from"),
                             ("next_purchase_day", "next_purchase_expected"),
                             ("next_purchase_to_day", "next_purchase_to")):
        columns[name] = pc.cast(pc.cast(result[day_column], pa.int32()), pa.date32())
    columns["computed_at"] = pa.array([computed_at] * n, pa.timestamp("us", tz="UTC"))
    columns["as_of"] = pa.array([as_of] * n, pa.timestamp("us", tz="UTC"))
    columns["tags"] = _tags_column(result, tags)
    arrays = [columns[f.name] if f.name in columns else result[f.name] for f in MEMBER_TRAIT_FIELDS]
    return pa.table(arrays, names=[f.name for f in MEMBER_TRAIT_FIELDS]).cast(TRAIT_SCHEMA)
