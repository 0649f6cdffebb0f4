"""Lake benchmarks: appending facts and scanning them through the warehouse.

- ``lake_append``: our atomic, day-partitioned append of 1M orders vs pyarrow's own partitioned writer
  (``pyarrow.dataset.write_dataset`` with Hive partitioning, zstd — as its documentation writes a
  partitioned dataset). Ours also fsyncs and renames every file.
- ``lake_scan``: an aggregate over the orders table through our DuckDB warehouse (views over the lake)
  vs DuckDB queried directly with ``read_parquet`` over the same files — the cost of our layer.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from memberops.benchmarks import Benchmark
from memberops.lake import writer
from memberops.lake.engine import DuckDBWarehouse
from memberops.lake.registry import MONEY, table_spec

ORDERS = table_spec("orders")


def _orders(rows: int, days: int = 30) -> pa.Table:
    rng = np.random.default_rng(7)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    offsets = rng.integers(0, days * 86_400, rows)
    ordered_at = pa.array([start + timedelta(seconds=int(s)) for s in offsets], pa.timestamp("us", tz="UTC"))
    cents = rng.integers(1_000, 100_000, rows)
    paid = pa.array([Decimal(int(c)) / 100 for c in cents], MONEY)
    columns: dict[str, Any] = {
        "workspace_id": pa.array(["ws"] * rows), "batch_id": pa.array(["bench"] * rows),
        "ingested_at": pa.array([start] * rows, pa.timestamp("us", tz="UTC")),
        "channel": pa.array(rng.choice(["tmall", "jd", "pos", "wechat"], rows)),
        "order_id": pa.array([f"o{i}" for i in range(rows)]),
        "customer_key": pa.array([f"c{i}" for i in rng.integers(0, rows // 10 + 1, rows)]),
        "store_id": pa.nulls(rows, pa.string()), "ordered_at": ordered_at, "status": pa.array(["paid"] * rows),
        "gross_amount": paid, "discount_amount": pa.array([Decimal(0)] * rows, MONEY),
        "shipping_amount": pa.array([Decimal(0)] * rows, MONEY), "paid_amount": paid,
        "currency": pa.array(["CNY"] * rows), "coupon_codes": pa.nulls(rows, pa.list_(pa.string())),
    }
    return pa.table(columns, schema=ORDERS.schema)


class _Dirs:
    def __init__(self, table: pa.Table) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="memberops-bench-"))
        self.table = table
        self.runs = 0

    def fresh(self, side: str) -> Path:
        self.runs += 1
        path = self.root / f"{side}-{self.runs}"
        path.mkdir()
        return path


def _append_setup(quick: bool) -> _Dirs:
    return _Dirs(_orders(100_000 if quick else 1_000_000))


def _append_ours(dirs: _Dirs) -> int:
    lake = dirs.fresh("ours")
    return sum(w.rows for w in writer.append(lake, ORDERS, dirs.table, "bench"))


def _append_baseline(dirs: _Dirs) -> int:
    lake = dirs.fresh("pyarrow")
    table = dirs.table.append_column("day", pc.cast(dirs.table["ordered_at"], pa.date32()))
    ds.write_dataset(
        table, lake / "orders", format="parquet", partitioning=["day"], partitioning_flavor="hive",
        file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
        existing_data_behavior="overwrite_or_ignore",
    )
    return int(ds.dataset(lake / "orders", format="parquet").count_rows())


def _same_rows(ours: int, baseline: int) -> None:
    assert ours == baseline, (ours, baseline)


def _scan_setup(quick: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="memberops-bench-"))
    writer.append(root, ORDERS, _orders(200_000 if quick else 2_000_000), "bench")
    warehouse = DuckDBWarehouse(root)
    warehouse.refresh()
    raw = duckdb.connect()
    return {"root": root, "warehouse": warehouse, "raw": raw, "glob": writer.table_glob(root, ORDERS)}


def _scan_ours(data: dict[str, Any]) -> list[tuple[str, int, Decimal]]:
    warehouse: DuckDBWarehouse = data["warehouse"]
    orders = warehouse.table("orders")
    expr = (orders.group_by("channel").aggregate(orders=orders.count(), paid=orders.paid_amount.sum())
            .order_by("channel"))
    frame = warehouse.to_pyarrow(expr)
    return [(r["channel"], r["orders"], r["paid"]) for r in frame.to_pylist()]


def _scan_baseline(data: dict[str, Any]) -> list[tuple[str, int, Decimal]]:
    return data["raw"].execute(
        "SELECT channel, count(*), sum(paid_amount) FROM read_parquet(?, hive_partitioning = true) "
        "GROUP BY channel ORDER BY channel", [data["glob"]]
    ).fetchall()


def _same_result(ours: Any, baseline: Any) -> None:
    assert [tuple(r) for r in ours] == [tuple(r) for r in baseline], (ours, baseline)


def _scan_teardown(data: dict[str, Any]) -> None:
    data["warehouse"].close()
    data["raw"].close()
    shutil.rmtree(data["root"], ignore_errors=True)


BENCHMARKS = [
    Benchmark(
        name="lake_append", description="append 1M orders over 30 day partitions, atomically",
        baseline_name="pyarrow write_dataset", setup=_append_setup, ours=_append_ours,
        baseline=_append_baseline, check=_same_rows, repeats=3, unit_of_work="1M orders",
        teardown=lambda dirs: shutil.rmtree(dirs.root, ignore_errors=True),
    ),
    Benchmark(
        name="lake_scan", description="orders and paid amount per channel over 2M orders",
        baseline_name="duckdb read_parquet", setup=_scan_setup, ours=_scan_ours, baseline=_scan_baseline,
        check=_same_result, repeats=7, unit_of_work="2M orders", teardown=_scan_teardown,
    ),
]
