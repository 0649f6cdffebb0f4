"""Connected components on every engine, checked against a union-find reference."""

from __future__ import annotations

import ibis
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from memberops.identity.graph import connected_components
from memberops.lake.engine import Warehouse


def _components(warehouse: Warehouse, nodes: list[int], keys: list[str]) -> dict[int, int]:
    links = ibis.memtable(pa.table({"node": pa.array(nodes, pa.int64()), "key": pa.array(keys)}))
    result = warehouse.to_pyarrow(connected_components(warehouse, links)).to_pylist()
    return {r["node"]: r["component"] for r in result}


def _union_find(nodes: list[int], keys: list[str]) -> dict[int, int]:
    parent = {n: n for n in nodes}

    def find(n: int) -> int:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    first_by_key: dict[str, int] = {}
    for node, key in zip(nodes, keys, strict=True):
        if key in first_by_key:
            a, b = find(node), find(first_by_key[key])
            parent[max(a, b)] = min(a, b)
        else:
            first_by_key[key] = node
    groups: dict[int, list[int]] = {}
    for node in parent:
        groups.setdefault(find(node), []).append(node)
    return {n: min(members) for members in groups.values() for n in members}


class TestConnectedComponents:
    def test_transitive_chain(self, warehouse: Warehouse) -> None:
        # 1-a-2-b-3-c-4 is one person through a chain; 5 stands alone; 6 and 7 share d
        nodes = [1, 2, 2, 3, 3, 4, 5, 6, 7]
        keys = ["a", "a", "b", "b", "c", "c", "e", "d", "d"]
        assert _components(warehouse, nodes, keys) == {1: 1, 2: 1, 3: 1, 4: 1, 5: 5, 6: 6, 7: 6}

    def test_long_chain_converges(self, warehouse: Warehouse) -> None:
        n = 200
        nodes = [i for i in range(n) for _ in (0, 1)]
        keys = [f"k{i + j}" for i in range(n) for j in (0, 1)]
        assert set(_components(warehouse, nodes, keys).values()) == {0}


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 25)), min_size=1, max_size=120))
def test_matches_union_find(edges: list[tuple[int, int]]) -> None:
    from memberops.lake.engine import DuckDBWarehouse

    nodes = [n for n, _ in edges]
    keys = [f"k{k}" for _, k in edges]
    import tempfile
    from pathlib import Path

    warehouse = DuckDBWarehouse(Path(tempfile.mkdtemp()))
    try:
        assert _components(warehouse, nodes, keys) == _union_find(nodes, keys)
    finally:
        warehouse.close()
