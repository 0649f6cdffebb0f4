"""The profile's key-sorted lake index (``insight/fact_index.py``): a lookup finds a member's rows whether
they are in the index or in files written since, rebuilds when many files are new, and follows a replaced
derived snapshot. Pure lake files, no store."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from memberops.insight import fact_index
from memberops.lake import writer
from memberops.lake.registry import records_to_arrow, table_spec

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
WS = "ws1"


def _orders(lake: Path, stem: str, rows: list[tuple[str, str, int]]) -> None:
    """Orders ``(order_id, customer_key, day)`` appended under the file name ``stem``."""
    spec = table_spec("orders")
    records = [{"workspace_id": WS, "batch_id": stem, "ingested_at": T0, "channel": "pos", "order_id": order_id,
                "customer_key": customer, "ordered_at": T0 + timedelta(days=day), "status": "paid",
                "paid_amount": Decimal("10.00"), "currency": "CNY"} for order_id, customer, day in rows]
    writer.append(lake, spec, records_to_arrow(spec, records), stem)


def _found(lake: Path, customer: str, channel: str = "pos") -> list[str]:
    rows = fact_index.lookup(lake, "orders", WS, {(channel, customer)})
    return sorted(set(rows["order_id"].to_pylist()))


class TestLookup:
    def test_rows_of_the_key_only_from_the_index_and_from_newer_files(self, tmp_path: Path) -> None:
        _orders(tmp_path, "b1", [(f"o{i}", f"c{i % 50}", i % 30) for i in range(2_000)])
        assert _found(tmp_path, "c7") == sorted(f"o{i}" for i in range(2_000) if i % 50 == 7)
        assert (tmp_path / fact_index.INDEX_DIR / "orders" / fact_index.MANIFEST).exists()
        assert _found(tmp_path, "c7", channel="tmall") == [] and _found(tmp_path, "nobody") == []

        _orders(tmp_path, "b2", [("late-1", "c7", 3), ("late-2", "c8", 40)])  # after the index was built

        assert "late-1" in _found(tmp_path, "c7") and "late-2" not in _found(tmp_path, "c7")
        assert "late-2" in _found(tmp_path, "c8")

    def test_many_new_files_rebuild_the_index(self, tmp_path: Path) -> None:
        _orders(tmp_path, "b0", [("o0", "c1", 0)])
        assert _found(tmp_path, "c1") == ["o0"]
        manifest = tmp_path / fact_index.INDEX_DIR / "orders" / fact_index.MANIFEST
        first = manifest.read_text()
        for batch in range(fact_index.REBUILD_AFTER + 1):
            _orders(tmp_path, f"n{batch}", [(f"n{batch}", "c1", 100 + batch)])

        assert len(_found(tmp_path, "c1")) == fact_index.REBUILD_AFTER + 2
        assert manifest.read_text() != first  # rebuilt: the new files are in the index now

    def test_a_replaced_snapshot_answers_its_new_rows(self, tmp_path: Path) -> None:
        spec = table_spec("golden_records")

        def golden(name: str) -> None:
            row: dict[str, Any] = {"workspace_id": WS, "batch_id": name, "ingested_at": T0, "member_id": "m1",
                                   "full_name": name}
            writer.replace_snapshot(tmp_path, spec, WS, records_to_arrow(spec, [row]))

        golden("First Name")
        assert fact_index.lookup(tmp_path, "golden_records", WS, ["m1"])["full_name"].to_pylist() == ["First Name"]
        golden("Second Name")
        assert fact_index.lookup(tmp_path, "golden_records", WS, ["m1"])["full_name"].to_pylist() == ["Second Name"]
        assert fact_index.lookup(tmp_path, "golden_records", "other", ["m1"]).num_rows == 0


class TestRefresh:
    def test_rebuilds_the_indexes_missing_files_and_only_those(self, tmp_path: Path) -> None:
        assert fact_index.refresh(tmp_path) == []  # an empty lake has nothing to index
        _orders(tmp_path, "b1", [(f"o{i}", f"c{i % 5}", i % 3) for i in range(30)])
        _settle(tmp_path)

        assert fact_index.refresh(tmp_path) == ["orders"]
        assert fact_index.refresh(tmp_path) == []  # nothing written since

        _orders(tmp_path, "b2", [("late", "c1", 1)])
        assert fact_index.refresh(tmp_path) == ["orders"]
        index = fact_index._load(tmp_path, fact_index.INDEXED["orders"])
        _settle(tmp_path)
        assert fact_index._uncovered(tmp_path, index, "orders") == []  # the lookup reads no file but the index
        assert "late" in _found(tmp_path, "c1")


def _settle(lake: Path) -> None:
    """Date every partition folder a minute back, as if written well before the next index build."""
    past = (datetime.now(UTC) - timedelta(minutes=1)).timestamp()
    for folder in (lake / "orders").glob("*=*"):
        os.utime(folder, (past, past))
