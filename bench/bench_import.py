"""Bulk import benchmark: an orders CSV into the lake.

- ``import_orders``: ``memberops import orders`` (validation, quarantine, dedupe by natural key against
  the lake, day-partitioned atomic write) of 10M rows vs DuckDB's own
  ``COPY (SELECT … FROM read_csv(…)) TO '….parquet'`` with the same typing (timestamps parsed, amounts as
  decimals) — DuckDB at its best, without any of the checks. Goal (issue 3): at least half its speed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import duckdb

from memberops.benchmarks import Benchmark
from memberops.config import Settings
from memberops.db import migrate
from memberops.runtime import Context


def _setup(quick: bool) -> dict[str, Any]:
    rows = 1_000_000 if quick else 10_000_000
    root = Path(tempfile.mkdtemp(prefix="memberops-bench-import-"))
    csv = root / "orders.csv"
    duckdb.execute(f"""
        COPY (
            SELECT 'o' || i AS order_id, 'c' || (i % {max(rows // 8, 1)}) AS customer_key,
                   's' || (i % 200) AS store_id,
                   strftime(TIMESTAMP '2025-01-01' + to_seconds(i % 31536000), '%Y-%m-%d %H:%M:%S') AS ordered_at,
                   CASE i % 5 WHEN 0 THEN 'completed' ELSE 'paid' END AS status,
                   printf('%.2f', (i % 50000) / 100.0 + 20) AS gross_amount,
                   printf('%.2f', (i % 700) / 100.0) AS discount_amount, '0.00' AS shipping_amount,
                   printf('%.2f', (i % 50000) / 100.0 + 20 - (i % 700) / 100.0) AS paid_amount, 'CNY' AS currency
            FROM range({rows}) t(i)
        ) TO '{csv}' (HEADER)
    """)
    return {"root": root, "csv": csv, "rows": rows, "runs": 0}


def _ours(data: dict[str, Any]) -> int:
    data["runs"] += 1
    context = Context.from_settings(Settings(data_dir=data["root"] / f"ours-{data['runs']}", secret_key="bench"))
    migrate.upgrade(context.store)
    from memberops.accounts import service as accounts
    from memberops.ingest.batch import import_file

    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session)
    summary = import_file(context, workspace, kind_name="orders", path=data["csv"], channel="pos")
    context.close()
    return summary.accepted


def _baseline(data: dict[str, Any]) -> int:
    data["runs"] += 1
    out = data["root"] / f"duckdb-{data['runs']}.parquet"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""
        COPY (
            SELECT order_id, customer_key, store_id,
                   timezone('Asia/Shanghai', strptime(ordered_at, '%Y-%m-%d %H:%M:%S')) AS ordered_at, status,
                   CAST(gross_amount AS DECIMAL(18,2)) AS gross_amount,
                   CAST(discount_amount AS DECIMAL(18,2)) AS discount_amount,
                   CAST(shipping_amount AS DECIMAL(18,2)) AS shipping_amount,
                   CAST(paid_amount AS DECIMAL(18,2)) AS paid_amount, currency
            FROM read_csv('{data["csv"]}', header = true, all_varchar = true)
        ) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
    """)
    counted = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()
    con.close()
    assert counted is not None
    return int(counted[0])


def _same(ours: int, baseline: int) -> None:
    assert ours == baseline, (ours, baseline)


BENCHMARKS = [
    Benchmark(
        name="import_orders", description="import an orders CSV into the lake (10M rows; --quick: 1M)",
        baseline_name="duckdb COPY read_csv→parquet", setup=_setup, ours=_ours, baseline=_baseline, check=_same,
        repeats=1, unit_of_work="10M orders", teardown=lambda data: shutil.rmtree(data["root"], ignore_errors=True),
    ),
]
