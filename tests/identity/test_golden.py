"""Survivorship on every engine."""

from __future__ import annotations

from datetime import UTC, date, datetime

import ibis
import pyarrow as pa

from memberops.identity.golden import GOLDEN_ATTRIBUTES, golden_records
from memberops.lake.engine import Warehouse


def _records() -> tuple[ibis.Table, ibis.Table]:
    t = [datetime(2026, 1, d, tzinfo=UTC) for d in (1, 2, 3, 4)]
    rows: list[dict[str, object]] = [  # member m1 on four channels; m2 has nothing but an id
        {"channel": "tmall", "source_id": "a", "full_name": "小芽妈妈", "phone": "+8613800138001",
         "email": "new@x.com", "birthday": date(1990, 1, 2), "city": "上海市", "ingested_at": t[3]},
        {"channel": "pos", "source_id": "b", "full_name": "李娜", "phone": "+8613800138001", "email": None,
         "birthday": date(1990, 1, 2), "city": "杭州市", "ingested_at": t[0]},
        {"channel": "wechat", "source_id": "c", "full_name": "李 娜", "phone": "+8613900139000",
         "email": "old@x.com", "birthday": date(1991, 1, 2), "city": None, "ingested_at": t[1]},
        {"channel": "app", "source_id": "d", "full_name": None, "phone": None, "email": None, "birthday": None,
         "city": None, "ingested_at": t[2]},
    ]
    columns = {a: pa.array([r.get(a) for r in rows], pa.date32() if a == "birthday" else pa.string())
               for a in GOLDEN_ATTRIBUTES}
    columns.update({"channel": pa.array([r["channel"] for r in rows]), "source_id": pa.array([r["source_id"] for r in rows]),
                    "ingested_at": pa.array([r["ingested_at"] for r in rows], pa.timestamp("us", tz="UTC"))})
    columns["member_id"] = pa.nulls(len(rows), pa.string())  # as in the lake: the map decides, not this
    records = ibis.memtable(pa.table(columns))
    identity_map = ibis.memtable(pa.table({"channel": ["tmall", "pos", "wechat", "app", "jd"],
                                           "source_id": ["a", "b", "c", "d", "e"],
                                           "member_id": ["m1", "m1", "m1", "m1", "m2"]}))
    return records, identity_map


def test_survivorship_rules(warehouse: Warehouse) -> None:
    records, identity_map = _records()
    rows = {r["member_id"]: r for r in warehouse.to_pyarrow(golden_records(records, identity_map)).to_pylist()}
    m1 = rows["m1"]
    assert m1["full_name"] == "李娜"  # most trusted channel: the store
    assert m1["phone"] == "+8613800138001"  # most frequent
    assert m1["birthday"] == date(1990, 1, 2)  # most frequent
    assert m1["email"] == "new@x.com"  # most recent non-empty
    assert m1["city"] == "上海市"  # most recent non-empty
    assert rows["m2"]["full_name"] is None  # a member with no attributes still has a (blank) golden record
