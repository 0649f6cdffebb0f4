"""Connected components over the identifier graph, in the warehouse engine (Ibis: DuckDB or PySpark).

Records and identifier values form a bipartite graph: a record links to each identifier it carries.
Two records are the same person when a path of shared identifiers joins them (transitively). Labels
are propagated as minima — each identifier takes the smallest label of its records, each record the
smallest label of its identifiers — with a pointer-jumping step that lets labels travel along long
chains in few rounds; each round is materialised so the next one starts from a table, not a plan.
"""

from __future__ import annotations

import ibis
from ibis.expr.types import Table

from memberops.lake.engine import Warehouse

MAX_ROUNDS = 64


class DidNotConverge(RuntimeError):
    pass


def connected_components(warehouse: Warehouse, links: Table, *, max_rounds: int = MAX_ROUNDS) -> Table:
    """``links`` has columns ``node`` (int64 record id) and ``key`` (an identifier, any type).

    Returns ``(node, component)`` for every node of ``links``: ``component`` is the smallest node id of
    its connected component, so the result does not depend on the order rows arrive in.

    Examples:
        >>> links = ibis.memtable({"node": [1, 2, 2, 3], "key": ["a", "a", "b", "c"]})  # doctest: +SKIP
        >>> warehouse.to_pyarrow(connected_components(warehouse, links))  # doctest: +SKIP
        node: [1, 2, 3], component: [1, 1, 3]
    """
    distinct = links.select(node=links.node.cast("int64"), key=links.key).distinct()
    # integer keys: every round joins on them, and integers join faster than text
    links = warehouse.materialise(distinct.select(
        "node", key=ibis.dense_rank().over(order_by=distinct.key).cast("int64")))
    labels = warehouse.materialise(links.select("node").distinct().mutate(label=ibis._.node))
    total = int(warehouse.execute(labels.label.sum()) or 0)
    for _ in range(max_rounds):
        key_label = links.join(labels, "node").group_by("key").aggregate(label=ibis._.label.min())
        via_keys = links.join(key_label, "key").group_by("node").aggregate(label=ibis._.label.min())
        # pointer jumping: a node adopts the label of its label, halving chain lengths each round
        jumped = via_keys.join(via_keys.select(label=via_keys.node, hop=via_keys.label), "label", how="left")
        step = jumped.select("node", label=ibis.least(jumped.label, jumped.hop.fill_null(jumped.label)))
        joined = labels.join(step, "node", how="left")
        labels = warehouse.materialise(joined.select(
            node=labels.node, label=ibis.least(labels.label, joined.label_right.fill_null(labels.label)),
        ))
        # labels only ever decrease, so an unchanged sum means nothing changed
        new_total = int(warehouse.execute(labels.label.sum()) or 0)
        if new_total == total:
            return labels.select("node", component=labels.label)
        total = new_total
    raise DidNotConverge(f"labels still changing after {max_rounds} rounds")
