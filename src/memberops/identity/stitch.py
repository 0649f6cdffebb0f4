"""Deterministic stitching: records sharing a strong identifier are one person — with guard rails.

All of it runs in the warehouse engine as Ibis expressions (DuckDB or PySpark). The guard rails exist
because over-merging is the failure CDP users complain about most:

- **blocked values** (``13800000000``, ``test@test.com``, ``null`` …) never link anything;
- an identifier carried by implausibly many records (a store's landline, a shared test e-mail) is
  **flagged** and not used;
- **per-type limits** (one ``wechat_unionid`` per person): identifier types are added in priority order,
  and a stage's merges are kept only for components that still respect every limit and every
  operator **pin** (two records pinned apart never end up together) — otherwise the component keeps
  the previous stage's split. Under-merging is recoverable by review; over-merging is not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import ibis
import pyarrow as pa
from ibis.expr.types import Table

from memberops.identity.graph import key_stars, star_components
from memberops.lake.engine import Warehouse

STRONG_TYPES = ("wechat_unionid", "member_card_no", "phone", "email")
BLOCKED_VALUES = (
    "null", "none", "n/a", "na", "-", "-1", "0", "unknown", "test", "13800000000", "13888888888", "+8613800000000",
    "+8613888888888", "+8600000000000", "00000000000", "11111111111", "12345678901", "test@test.com",
    "test@example.com", "noreply@example.com", "a@a.com", "xxx@xxx.com",
)


@dataclass(frozen=True)
class StitchRules:
    """How deterministic stitching decides; defaults suit a consumer brand."""

    strong_types: tuple[str, ...] = STRONG_TYPES  # in priority order: the most trusted first
    max_records_per_identifier: int = 8
    max_per_person: dict[str, int] = field(default_factory=lambda: {"wechat_unionid": 1})
    blocked_values: tuple[str, ...] = BLOCKED_VALUES


def latest_records(warehouse: Warehouse, workspace_id: str, columns: Sequence[str] | None = None) -> Table:
    """The newest version of each ``(channel, source_id)`` in the lake, numbered ``node`` (int64), materialised.

    ``columns``: the record columns to keep besides ``channel`` and ``source_id`` (default: all), so a
    step that needs a few columns copies only those. Most records have one version: only records with
    several are ranked (a window is a sort; counting versions is a hash aggregate), and when no record
    has several the records are taken as they are.
    """
    records = warehouse.table("identity_records").filter(ibis._.workspace_id == workspace_id)
    kept = list(dict.fromkeys(["channel", "source_id", *(columns if columns is not None else records.columns)]))
    key = ["channel", "source_id"]
    counts = records.group_by(key).aggregate(versions=ibis._.count())
    repeated = warehouse.materialise(counts.filter(counts.versions > 1).select(*key))
    if int(warehouse.execute(repeated.count())) == 0:
        return warehouse.numbered(records.select(*kept), "node")
    several = records.semi_join(repeated, key)
    newest = several.mutate(
        _version=ibis.row_number().over(
            group_by=[several.channel, several.source_id], order_by=[several.ingested_at.desc(), several.batch_id.desc()]
        )
    ).filter(ibis._._version == 0)
    return warehouse.numbered(ibis.union(records.anti_join(repeated, key).select(*kept), newest.select(*kept)), "node")


def identifier_links(records: Table, rules: StitchRules) -> Table:
    """``(node, type, value)`` for every strong identifier of every record, blocked values left out.

    ``records`` has one row per ``node``, so each row here is unique: no de-duplication needed.
    """
    parts = [
        records.filter(records[type_].notnull()).select(node=records.node, type=ibis.literal(type_), value=records[type_])
        for type_ in rules.strong_types
    ]
    links = ibis.union(*parts) if len(parts) > 1 else parts[0]
    # an anti-join probes one hash table; ``isin`` would compare every value with every blocked one
    blocked = ibis.memtable(pa.table({"blocked": pa.array(sorted({v.lower() for v in rules.blocked_values}), pa.string())}))
    return links.anti_join(blocked, links.value.lower() == blocked.blocked)


def shared_identifier_counts(links: Table) -> Table:
    """How many records carry each identifier value (a link is one record's identifier: rows are unique)."""
    return links.group_by(["type", "value"]).aggregate(records=ibis._.count())


def flagged_identifiers(links: Table, rules: StitchRules) -> Table:
    """Identifier values carried by implausibly many records: reported, and never used to merge."""
    counts = shared_identifier_counts(links)
    return counts.filter(counts.records > rules.max_records_per_identifier)


def shared_identifiers(links: Table, rules: StitchRules) -> Table:
    """``(type, value, records, star)`` for the values on more than one record (and any flagged): ``star`` is
    the smallest record carrying the value. A value on one record only links nothing and is left out.

    :func:`stitch` materialises it; materialising the same expression first (to report the flagged
    values) lets both share one aggregate.
    """
    counts = links.group_by(["type", "value"]).aggregate(records=ibis._.count(), star=links.node.min())
    return counts.filter(counts.records > min(1, rules.max_records_per_identifier))


def flagged_of(shared: Table, rules: StitchRules) -> Table:
    """The flagged values (``type, value, records``) of a materialised :func:`shared_identifiers` table."""
    return shared.filter(shared.records > rules.max_records_per_identifier).select("type", "value", "records")


def _violating_components(labels: Table, links: Table, rules: StitchRules, pins: Table | None) -> Table:
    """Components (``label``) breaking a per-type limit or holding both ends of a pin."""
    bad: list[Table] = []
    for type_, limit in rules.max_per_person.items():
        typed = links.filter(links.type == type_).join(labels, "node")
        over = typed.group_by("label").aggregate(n=typed.value.nunique())
        bad.append(over.filter(over.n > limit).select("label"))
    if pins is not None:
        left = pins.join(labels, pins.node_a == labels.node).select(pins.pin_id, label_a=labels.label)
        right = pins.join(labels, pins.node_b == labels.node).select(pins.pin_id, label_b=labels.label)
        both = left.join(right, "pin_id").filter(lambda t: t.label_a == t.label_b)
        bad.append(both.select(label=both.label_a))
    if not bad:
        return labels.select("label").filter(ibis.literal(False))
    return ibis.union(*bad, distinct=True)


def stitch(
    warehouse: Warehouse, nodes: Table, links: Table, rules: StitchRules, *,
    forced: Table | None = None, pins: Table | None = None, excluded_nodes: Sequence[int] = (),
    probable: Table | None = None,
) -> Table:
    """``(node, component)`` for every node: deterministic identity resolution.

    ``links`` are ``(node, type, value)``, one row per record and identifier; values on more records than
    ``rules.max_records_per_identifier`` (flagged) never merge, whether or not they were removed already.
    ``forced`` are extra ``(node, key)`` edges an operator asked for, ``pins`` ``(pin_id, node_a, node_b)``
    pairs that must stay apart, ``excluded_nodes`` records an operator split off (they link to nothing),
    ``probable`` ``(node, key)`` edges from probabilistic matching, trusted least (the last stage).

    Fast path: one connected-components pass over every identifier at once. Only the components that
    break a limit or a pin are redone stage by stage (the most trusted identifier type first), which
    keeps the common case a single pass.
    """
    # one aggregate over the identifiers flags the over-shared values and names every shared one by its
    # smallest record; flagged values are out of everything below
    shared = warehouse.materialise(shared_identifiers(links, rules))
    flagged = flagged_of(shared, rules).select("type", "value")
    usable = shared.filter(shared.records <= rules.max_records_per_identifier)
    if excluded_nodes:
        excluded = list(excluded_nodes)
        links = links.anti_join(flagged, ["type", "value"]).filter(~ibis._.node.isin(excluded))
        stars = [key_stars(links, ["type", "value"])]
    else:
        joined = links.join(usable, ["type", "value"])
        stars = [joined.select(node=joined.node.cast("int64"), star=joined.star.cast("int64"))]
        links = links.anti_join(flagged, ["type", "value"])
    if forced is not None:
        stars.append(key_stars(forced.select(forced.node, key=forced.key.cast("string")), "key"))
    if probable is not None:
        kept = probable.filter(~probable.node.isin(list(excluded_nodes))) if excluded_nodes else probable
        stars.append(key_stars(kept.select(kept.node, key=kept.key.cast("string")), "key"))
    # only records sharing something are in ``linked``; every other record is a person of its own
    linked = star_components(warehouse, ibis.union(*stars) if len(stars) > 1 else stars[0])
    all_nodes = nodes.select("node")
    joined_nodes = all_nodes.join(linked, "node", how="left")
    labels = warehouse.materialise(joined_nodes.select(
        node=all_nodes.node, label=linked.component.fill_null(all_nodes.node)))
    violating = warehouse.materialise(_violating_components(labels, links, rules, pins))
    if int(warehouse.execute(violating.count())) == 0:
        return labels.select("node", component=labels.label)
    # redo the components that break a rule, stage by stage
    bad = labels.join(violating, "label").select("node")
    bad_labels = warehouse.materialise(bad.mutate(label=bad.node))
    # a redone record's identifiers are all the stages and their checks read: a small table
    bad_links = warehouse.materialise(links.semi_join(bad, "node"))
    stages: list[Table] = [forced.semi_join(bad, "node")] if forced is not None else []
    stages += [bad_links.filter(bad_links.type == t).select("node", key=bad_links.value) for t in rules.strong_types]
    if probable is not None:
        stages.append(probable.semi_join(bad, "node"))
    for stage_links in stages:
        bad_labels = _merge_stage(warehouse, bad_labels, stage_links, bad_links, rules, pins)
    fixed = labels.join(bad_labels, "node", how="left")
    return warehouse.materialise(fixed.select(
        node=labels.node, component=bad_labels.label.fill_null(labels.label)))


def merges_by_rule(links: Table, components: Table, rules: StitchRules) -> Table:
    """``(type, records)``: how many records each identifier type ties to another record of their member."""
    per = links.join(components, "node")
    shared = per.group_by(["type", "value", "component"]).aggregate(records=per.node.nunique())
    joined = per.join(shared.filter(shared.records > 1), ["type", "value", "component"])
    return joined.group_by(joined.type).aggregate(records=joined.node.nunique())


def _merge_stage(
    warehouse: Warehouse, labels: Table, stage_links: Table, links: Table, rules: StitchRules, pins: Table | None,
) -> Table:
    """Merge the current components along ``stage_links``; undo the merge where it breaks a rule."""
    component_links = stage_links.join(labels, "node").select(node=labels.label, key=stage_links.key)
    # the records being redone are few: plain rounds, and no table for the proposal, cost fewer queries
    merged_components = star_components(warehouse, key_stars(component_links, "key"), settle_first=False)
    proposed = labels.join(merged_components, labels.label == merged_components.node, how="left")
    proposal = proposed.select(
        node=labels.node, label=merged_components.component.fill_null(labels.label), previous=labels.label,
    )
    violating = _violating_components(proposal.select("node", "label"), links, rules, pins)
    return warehouse.materialise(proposal.select(
        "node", label=ibis.cases((proposal.label.isin(violating.label), proposal.previous), else_=proposal.label),
    ))
