"""Deterministic stitching and its guard rails, on every engine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import ibis
import pyarrow as pa

from memberops.identity.stitch import (
    StitchRules,
    flagged_identifiers,
    identifier_links,
    latest_records,
    stitch,
)
from memberops.lake.engine import Warehouse
from memberops.lake.registry import table_spec
from memberops.lake.writer import append


def _records(rows: list[dict[str, object]]) -> ibis.Table:
    columns = ("node", "phone", "email", "wechat_unionid", "member_card_no")
    return ibis.memtable(pa.table({
        c: pa.array([r.get(c) for r in rows], pa.int64() if c == "node" else pa.string()) for c in columns
    }))


def _groups(warehouse: Warehouse, rows: list[dict[str, object]], rules: StitchRules | None = None,
            pins: Sequence[tuple[int, int]] = (), excluded: tuple[int, ...] = ()) -> list[set[int]]:
    rules = rules or StitchRules()
    records = _records(rows)
    links = identifier_links(records, rules)
    flagged = flagged_identifiers(links, rules)
    links = links.anti_join(flagged, ["type", "value"])
    pin_table = None
    if pins:
        pin_table = ibis.memtable(pa.table({"pin_id": pa.array(range(len(pins)), pa.int64()),
                                             "node_a": pa.array([a for a, _ in pins], pa.int64()),
                                             "node_b": pa.array([b for _, b in pins], pa.int64())}))
    result = warehouse.to_pyarrow(stitch(warehouse, records, links, rules, pins=pin_table, excluded_nodes=excluded))
    groups: dict[int, set[int]] = {}
    for row in result.to_pylist():
        groups.setdefault(row["component"], set()).add(row["node"])
    return sorted(groups.values(), key=min)


class TestStitch:
    def test_shared_identifiers_join_transitively(self, warehouse: Warehouse) -> None:
        rows = [{"node": 1, "phone": "+8613800138001"}, {"node": 2, "phone": "+8613800138001", "email": "a@x.com"},
                {"node": 3, "email": "a@x.com"}, {"node": 4, "email": "b@x.com"}]
        assert _groups(warehouse, rows) == [{1, 2, 3}, {4}]

    def test_blocked_values_never_link(self, warehouse: Warehouse) -> None:
        rows = [{"node": 1, "phone": "13800000000"}, {"node": 2, "phone": "13800000000"},
                {"node": 3, "email": "TEST@test.com"}, {"node": 4, "email": "test@test.com"}]
        assert _groups(warehouse, rows) == [{1}, {2}, {3}, {4}]

    def test_an_identifier_on_too_many_records_is_flagged_not_used(self, warehouse: Warehouse) -> None:
        store_phone = "+862162881230"
        rows = [{"node": n, "phone": store_phone} for n in range(1, 10)] + [{"node": 10, "phone": "+8613900139000"}]
        assert _groups(warehouse, rows) == [{n} for n in range(1, 11)]

    def test_one_unionid_per_person_stops_a_bad_phone_merge(self, warehouse: Warehouse) -> None:
        # two people with their own unionids share a phone (a household): they must stay two people
        rows = [{"node": 1, "wechat_unionid": "u1", "phone": "+8613800138001"},
                {"node": 2, "wechat_unionid": "u2", "phone": "+8613800138001"},
                {"node": 3, "wechat_unionid": "u1", "email": "c@x.com"}]
        assert _groups(warehouse, rows) == [{1, 3}, {2}]

    def test_pins_keep_records_apart_and_splits_stand_alone(self, warehouse: Warehouse) -> None:
        rows = [{"node": 1, "phone": "+8613800138001"}, {"node": 2, "phone": "+8613800138001"},
                {"node": 3, "email": "d@x.com"}, {"node": 4, "email": "d@x.com"}]
        assert _groups(warehouse, rows, pins=[(1, 2)], excluded=(4,)) == [{1}, {2}, {3}, {4}]


def _write_records(warehouse: Warehouse, name: str, rows: list[dict[str, object]]) -> None:
    spec = table_spec("identity_records")
    columns = {f.name: pa.array([r.get(f.name) for r in rows], f.type) for f in spec.schema}
    append(warehouse.lake, spec, pa.table(columns, schema=spec.schema), name)
    warehouse.refresh("identity_records")


def _record(source_id: str, batch: str, at: datetime, phone: str, workspace: str = "w1") -> dict[str, object]:
    return {"workspace_id": workspace, "batch_id": batch, "ingested_at": at, "channel": "crm",
            "source_id": source_id, "phone": phone, "email": f"{source_id}@x.com"}


class TestLatestRecords:
    def test_one_node_per_record(self, warehouse: Warehouse) -> None:
        at = datetime(2026, 1, 1, tzinfo=UTC)
        _write_records(warehouse, "b1", [_record("r1", "b1", at, "+8613800138001"),
                                         _record("r2", "b1", at, "+8613800138002"),
                                         _record("r3", "b1", at, "+8613800138003", workspace="w2")])
        rows = warehouse.to_pyarrow(latest_records(warehouse, "w1", columns=["phone"])).to_pylist()
        assert sorted(r["source_id"] for r in rows) == ["r1", "r2"]
        assert sorted(r["node"] for r in rows) == [0, 1]
        assert "email" not in rows[0]  # only the columns asked for are copied

    def test_the_newest_version_wins(self, warehouse: Warehouse) -> None:
        day1, day2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
        _write_records(warehouse, "b1", [_record("r1", "b1", day1, "+8613800138001"),
                                         _record("r2", "b1", day1, "+8613800138002")])
        # r1 changed its phone the next day; r2 was re-sent in two batches at the same moment
        _write_records(warehouse, "b2", [_record("r1", "b2", day2, "+8613900139001"),
                                         _record("r2", "b2", day1, "+8613900139002")])
        rows = warehouse.to_pyarrow(latest_records(warehouse, "w1")).to_pylist()
        assert {r["source_id"]: r["phone"] for r in rows} == {"r1": "+8613900139001", "r2": "+8613900139002"}
        assert len({r["node"] for r in rows}) == 2
        assert {"email", "batch_id", "ingested_at"} <= set(rows[0])  # every column by default
