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
from ibis.expr.types import Table

from memberops.identity.graph import connected_components
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


def latest_records(warehouse: Warehouse, workspace_id: str) -> Table:
    """The newest version of each ``(channel, source_id)`` in the lake, numbered ``node`` (int64), materialised."""
    records = warehouse.table("identity_records").filter(ibis._.workspace_id == workspace_id)
    newest = records.mutate(
        _version=ibis.row_number().over(
            group_by=[records.channel, records.source_id], order_by=[records.ingested_at.desc(), records.batch_id.desc()]
        )
    ).filter(ibis._._version == 0).drop("_version")
    return warehouse.numbered(newest, "node")


def identifier_links(records: Table, rules: StitchRules) -> Table:
    """``(node, type, value)`` for every strong identifier of every record, blocked values left out."""
    parts = [
        records.filter(records[type_].notnull()).select(node=records.node, type=ibis.literal(type_), value=records[type_])
        for type_ in rules.strong_types
    ]
    links = ibis.union(*parts, distinct=True) if len(parts) > 1 else parts[0]
    blocked = [v.lower() for v in rules.blocked_values]
    return links.filter(~links.value.lower().isin(blocked))


def shared_identifier_counts(links: Table) -> Table:
    """How many records carry each identifier value."""
    return links.group_by(["type", "value"]).aggregate(records=links.node.nunique())


def flagged_identifiers(links: Table, rules: StitchRules) -> Table:
    """Identifier values carried by implausibly many records: reported, and never used to merge."""
    counts = shared_identifier_counts(links)
    return counts.filter(counts.records > rules.max_records_per_identifier)


def _violating_components(labels: Table, links: Table, rules: StitchRules, pins: Table | None) -> Table:
    """Components (``label``) breaking a per-type limit or holding both ends of a pin."""
    per_node = links.join(labels, "node")
    bad: list[Table] = []
    for type_, limit in rules.max_per_person.items():
        typed = per_node.filter(per_node.type == type_)
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

    ``links`` are ``(node, type, value)`` (flagged values already removed), ``forced`` extra
    ``(node, key)`` edges an operator asked for, ``pins`` ``(pin_id, node_a, node_b)`` pairs that must stay
    apart, ``excluded_nodes`` records an operator split off (they link to nothing), ``probable``
    ``(node, key)`` edges from probabilistic matching, trusted least (the last stage).

    Fast path: one connected-components pass over every identifier at once. Only the components that
    break a limit or a pin are redone stage by stage (the most trusted identifier type first), which
    keeps the common case a single pass.
    """
    if excluded_nodes:
        links = links.filter(~links.node.isin(list(excluded_nodes)))
    edges = links.select("node", key=links.type.concat(":", links.value))
    if forced is not None:
        edges = edges.union(forced.select("node", key=ibis.literal("operator:").concat(forced.key.cast("string"))))
    if probable is not None:
        kept = probable.filter(~probable.node.isin(list(excluded_nodes))) if excluded_nodes else probable
        edges = edges.union(kept.select("node", key=ibis.literal("probable:").concat(kept.key.cast("string"))))
    all_nodes = nodes.select("node").distinct()
    linked = connected_components(warehouse, edges)
    joined = all_nodes.join(linked, "node", how="left")
    labels = warehouse.materialise(joined.select(node=all_nodes.node, label=linked.component.fill_null(all_nodes.node)))
    violating = warehouse.materialise(_violating_components(labels, links, rules, pins))
    if int(warehouse.execute(violating.count())) == 0:
        return labels.select("node", component=labels.label)
    # redo the components that break a rule, stage by stage
    bad = labels.join(violating, "label").select("node")
    bad_labels = warehouse.materialise(bad.mutate(label=bad.node))
    bad_links = links.semi_join(bad, "node")
    stages: list[Table] = [forced.semi_join(bad, "node")] if forced is not None else []
    stages += [bad_links.filter(bad_links.type == t).select("node", key=bad_links.value) for t in rules.strong_types]
    if probable is not None:
        stages.append(probable.semi_join(bad, "node"))
    for stage_links in stages:
        bad_labels = _merge_stage(warehouse, bad_labels, stage_links, links, rules, pins)
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
    merged_components = connected_components(warehouse, component_links)
    proposed = labels.join(merged_components, labels.label == merged_components.node, how="left")
    proposal = warehouse.materialise(proposed.select(
        node=labels.node, label=merged_components.component.fill_null(labels.label), previous=labels.label,
    ))
    violating = _violating_components(proposal.select("node", "label"), links, rules, pins)
    kept = proposal.join(violating.mutate(bad=True), "label", how="left")
    return warehouse.materialise(kept.select(
        node=proposal.node, label=ibis.cases((kept.bad.notnull(), proposal.previous), else_=proposal.label),
    ))
