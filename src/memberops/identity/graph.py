"""Connected components over the identifier graph, in the warehouse engine (Ibis: DuckDB or PySpark).

Records and identifier values form a bipartite graph: a record links to each identifier it carries.
Two records are the same person when a path of shared identifiers joins them (transitively).

1. **Identifiers become stars of records.** Each identifier is named by the smallest record carrying
   it (its *star*, found by a hash aggregate — no sort of the identifier text), and an identifier on
   one record only is dropped: it joins nothing. Identifiers naming the same star fold together, so
   what is left is a set of integer ``(node, star)`` rows, usually a fraction of the links.
2. **Labels start one hop in**: each record takes the smallest star it belongs to.
3. **Settled components leave**: a component whose every star already agrees on one label is done
   (stars share records, so agreement spreads across the component). That is most of them; only the
   components holding a star whose records disagree go on to the rounds.
4. **Rounds** propagate minima through the stars — each star takes the smallest label of its records,
   each record the smallest label of its stars — with a pointer-jumping step that lets labels travel
   along long chains in few rounds. Each round is materialised, so the next starts from a table, not
   a plan, and the rounds stop when no label changed.
"""

from __future__ import annotations

import ibis
from ibis.expr.types import Table

from memberops.lake.engine import Warehouse

MAX_ROUNDS = 64


class DidNotConverge(RuntimeError):
    pass


def key_stars(links: Table, keys: str | list[str]) -> Table:
    """``(node, star)`` for every link of a key carried by several nodes; ``star`` is the key's smallest node.

    ``links`` has an int64 ``node`` and the key columns ``keys``.
    """
    by = [keys] if isinstance(keys, str) else keys
    roots = links.group_by(by).aggregate(star=links.node.min(), top=links.node.max())
    shared = roots.filter(roots.star != roots.top)
    joined = links.join(shared, by)
    return joined.select(node=joined.node.cast("int64"), star=joined.star.cast("int64"))


def star_components(warehouse: Warehouse, stars: Table, *, settle_first: bool = True,
                    max_rounds: int = MAX_ROUNDS) -> Table:
    """``(node, component)`` for every node of the ``(node, star)`` rows (a star is one of its own nodes).

    ``component`` is the smallest node of the component. The result is an expression over materialised
    tables: cheap to read once, worth materialising if read several times. ``settle_first`` sets the
    settled components aside before the rounds: worth its extra queries on a large graph, not on a few
    hundred rows.
    """
    members = warehouse.materialise(stars.select("node", key=stars.star).distinct())
    labels = warehouse.materialise(members.group_by("node").aggregate(label=members.key.min()))
    if not settle_first:
        labels = _propagate(warehouse, members, labels, max_rounds)
        return labels.select("node", component=labels.label)
    # a component is settled when each of its stars agrees on one label; the labels seen in a star
    # that disagrees are the components still open
    labelled = warehouse.materialise(members.join(labels, "node"))
    spread = labelled.group_by("key").aggregate(low=labelled.label.min(), high=labelled.label.max())
    disagreeing = spread.filter(spread.low != spread.high).select("key")
    open_labels = warehouse.materialise(labelled.semi_join(disagreeing, "key").select("label").distinct())
    if int(warehouse.execute(open_labels.count())) == 0:
        return labels.select("node", component=labels.label)
    active = warehouse.materialise(labels.semi_join(open_labels, "label"))
    settled = labels.anti_join(open_labels, "label")
    active = _propagate(warehouse, warehouse.materialise(members.semi_join(active, "node")), active, max_rounds)
    return ibis.union(settled.select("node", component=settled.label), active.select("node", component=active.label))


def _propagate(warehouse: Warehouse, members: Table, labels: Table, max_rounds: int) -> Table:
    """Rounds of minimum-label propagation with pointer jumping until no label changes."""
    total = int(warehouse.execute(labels.label.sum()) or 0)
    for _ in range(max_rounds):
        star_label = members.join(labels, "node").group_by("key").aggregate(label=ibis._.label.min())
        via_stars = members.join(star_label, "key").group_by("node").aggregate(label=ibis._.label.min())
        # pointer jumping: a node adopts the label of its label, halving chain lengths each round
        hops = via_stars.select(label=via_stars.node, hop=via_stars.label)
        jumped = via_stars.join(hops, "label", how="left")
        labels = warehouse.materialise(jumped.select(
            "node", label=ibis.least(jumped.label, jumped.hop.fill_null(jumped.label))))
        # labels only ever decrease, so an unchanged sum means nothing changed
        new_total = int(warehouse.execute(labels.label.sum()) or 0)
        if new_total == total:
            return labels
        total = new_total
    raise DidNotConverge(f"labels still changing after {max_rounds} rounds")


def connected_components(warehouse: Warehouse, links: Table, *, max_rounds: int = MAX_ROUNDS) -> Table:
    """``links`` has columns ``node`` (int64 record id) and ``key`` (an identifier, any type).

    Returns ``(node, component)`` for every node of ``links``: ``component`` is the smallest node id of
    its connected component, so the result does not depend on the order rows arrive in.

    Examples:
        >>> links = ibis.memtable({"node": [1, 2, 2, 3], "key": ["a", "a", "b", "c"]})  # doctest: +SKIP
        >>> warehouse.to_pyarrow(connected_components(warehouse, links))  # doctest: +SKIP
        node: [1, 2, 3], component: [1, 1, 3]
    """
    links = warehouse.materialise(links.select(node=links.node.cast("int64"), key=links.key))
    linked = star_components(warehouse, key_stars(links, "key"), max_rounds=max_rounds)
    nodes = links.select("node").distinct()
    joined = nodes.join(linked, "node", how="left")
    return joined.select(node=nodes.node, component=linked.component.fill_null(nodes.node))
