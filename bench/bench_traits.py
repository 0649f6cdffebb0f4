"""Member traits benchmark (issue 5: all traits for 1M members / 10M orders in under 30 s on DuckDB).

- ``insight_traits``: ``compute_traits`` — purchase statistics, inter-purchase intervals (mean and
  median), preferred channel / category / store / associate, RFM, lifecycle and AIPL, the next-purchase
  window, BG/NBD + Gamma–Gamma fitted on the buyers' summary, KOC and the demo brand's six tags — for
  1M members (1.2M channel records through the identity map), 10M orders, ~13M order lines, 300k
  refunds and 3M events in the lake, compacted as the product's own maintenance (``lake compact``,
  lake/compact.py) leaves a deployed lake: one file per day partition.
  Baseline: what a careful analyst writes directly in DuckDB SQL over the same Parquet files — one query
  for the purchase statistics and NTILE RFM scores (orders through the identity map, refunds netted,
  units) — and nothing else. Both sides must agree on buyers, orders and net spend.
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

from memberops.benchmarks import Benchmark
from memberops.demo.setup import DEMO_TAGS
from memberops.insight.compute import compute_traits
from memberops.insight.tags import TagDefinition
from memberops.lake.compact import compact
from memberops.lake.engine import DuckDBWarehouse
from memberops.lake.registry import table_spec
from memberops.lake.writer import table_dir

WORKSPACE = "bench"
AS_OF = datetime(2026, 7, 1, tzinfo=UTC)
CATEGORIES = "['formula', 'diapers', 'wipes', 'feeding', 'baby_care', 'newborn_gift', 'toys']"


def _nulls(name: str, *present: str) -> str:
    types = {"string": "VARCHAR", "int32": "INTEGER", "date32[day]": "DATE", "list<item: string>": "VARCHAR[]",
             "timestamp[us, tz=UTC]": "TIMESTAMPTZ", "decimal128(18, 2)": "DECIMAL(18, 2)"}
    return ", ".join(f"NULL::{types[str(f.type)]} AS {f.name}" for f in table_spec(name).fields if f.name not in present)


def _setup(quick: bool) -> dict[str, Any]:
    return make_lake(100_000 if quick else 1_000_000)


def make_lake(members: int, root: Path | None = None) -> dict[str, Any]:
    """The benchmark's lake for ``members`` members (10 orders each) in ``root`` (default: a new temp folder)."""
    records = members * 6 // 5
    orders = members * 10
    root = root or Path(tempfile.mkdtemp(prefix="memberops-bench-traits-"))
    lake = root / "lake"
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    common = f"'{WORKSPACE}' AS workspace_id, 'b' AS batch_id, TIMESTAMPTZ '2026-06-30 00:00:00+00' AS ingested_at"
    as_of = "TIMESTAMPTZ '2026-07-01 00:00:00+00'"

    def copy(table: str, select: str, partitioned: bool = True) -> None:
        folder = lake / table
        folder.mkdir(parents=True, exist_ok=True)
        if partitioned:
            con.execute(f"COPY ({select}) TO '{folder}' (FORMAT parquet, PARTITION_BY (day), OVERWRITE_OR_IGNORE)")
        else:
            con.execute(f"COPY ({select}) TO '{folder / 'part.parquet'}' (FORMAT parquet)")

    channel = "['tmall', 'jd', 'pos', 'wechat'][1 + (r % 4)]"
    # a record r belongs to member r % members: the first 200k members have two channel records
    copy("identity_records", f"""
        SELECT {common}, {channel} AS channel, 'r' || r AS source_id,
               CASE WHEN r % 4 = 3 THEN 'card' || (r % {members}) END AS member_card_no,
               CASE WHEN hash(r, 9) % 20 = 0 THEN 'card' || (hash(r, 10) % {members}) END AS referrer_code,
               CASE WHEN r % 4 = 2 THEN 'a' || (hash(r, 11) % 500) END AS associate_id,
               {_nulls("identity_records", "channel", "source_id", "member_card_no", "referrer_code", "associate_id")},
               DATE '2026-06-30' AS day
        FROM range({records}) t(r)""")
    identity_map = table_dir(lake, table_spec("identity_map"))
    identity_map.mkdir(parents=True)
    con.execute(f"""COPY (SELECT {common}, {channel} AS channel, 'r' || r AS source_id, 'm' || (r % {members}) AS member_id
                    FROM range({records}) t(r)) TO '{identity_map / (WORKSPACE + '.parquet')}' (FORMAT parquet)""")
    # 70 % of records buy; order o belongs to record hash(o) % (0.7 · records). Each buyer is active for a
    # year that ended up to two years before as_of (some have lapsed, as BG/NBD expects)
    buyers = records * 7 // 10
    con.execute(f"""CREATE TEMP TABLE o AS
        SELECT o, CAST(hash(o) % {buyers} AS BIGINT) AS r,
               {as_of} - to_seconds(CAST((hash(hash(o) % {buyers}, 20) % 365) * 2 * 86400
                                         + hash(o, 1) % (365 * 86400) AS BIGINT)) AS ordered_at,
               CAST((1000 + hash(o, 2) % 50000) / 100 AS DECIMAL(18, 2)) AS paid,
               CASE WHEN hash(o, 3) % 4 = 0 THEN CAST(5 AS DECIMAL(18, 2)) ELSE 0 END AS discount
        FROM range({orders}) t(o)""")
    copy("orders", f"""
        SELECT {common}, {channel} AS channel, 'o' || o AS order_id, 'r' || r AS customer_key,
               CASE WHEN r % 4 = 2 THEN 's' || (hash(r, 4) % 300) END AS store_id, ordered_at,
               CASE WHEN hash(o, 5) % 50 = 0 THEN 'cancelled' ELSE 'paid' END AS status,
               paid + discount AS gross_amount, discount AS discount_amount, CAST(0 AS DECIMAL(18, 2)) AS shipping_amount,
               paid AS paid_amount, 'CNY' AS currency, NULL::VARCHAR[] AS coupon_codes,
               CAST(ordered_at AS DATE) AS day
        FROM o""")
    copy("order_items", f"""
        SELECT {common}, {channel} AS channel, 'o' || o AS order_id, line AS line_no,
               'sku' || (hash(o, line) % 2000) AS sku, {CATEGORIES}[1 + CAST(hash(o, line, 6) % 7 AS BIGINT)] AS category,
               'b' AS brand, CAST(1 + hash(o, line, 7) % 3 AS INTEGER) AS quantity,
               CAST(paid / 2 AS DECIMAL(18, 2)) AS unit_price, CAST(paid AS DECIMAL(18, 2)) AS amount,
               DATE '2026-06-30' AS day
        FROM o, range(1, 3) l(line) WHERE line = 1 OR hash(o, 8) % 10 < 3""", partitioned=False)
    copy("refunds", f"""
        SELECT {common}, {channel} AS channel, 'f' || o AS refund_id, 'o' || o AS order_id,
               ordered_at + INTERVAL 5 DAY AS refunded_at,
               CASE WHEN o % 2 = 0 THEN paid ELSE CAST(paid / 3 AS DECIMAL(18, 2)) END AS amount,
               NULL::VARCHAR AS sku, NULL::INTEGER AS quantity, CAST(ordered_at + INTERVAL 5 DAY AS DATE) AS day
        FROM o WHERE hash(o, 12) % 100 < 3""")
    copy("events", f"""
        SELECT {common}, {channel.replace('r %', 'e %')} AS channel, 'e' || e AS event_id,
               ['product_view', 'add_to_cart', 'share', 'coupon_claim'][1 + CAST(hash(e, 1) % 4 AS BIGINT)] AS type,
               'r' || (e % {records}) AS customer_key, NULL::VARCHAR AS anonymous_id,
               {as_of} - to_seconds(CAST(hash(e, 2) % (120 * 86400) AS BIGINT)) AS occurred_at, NULL::VARCHAR AS properties,
               DATE '2026-06-30' AS day
        FROM range({orders * 3 // 10}) t(e) WHERE e % 4 = (e % {records}) % 4""", partitioned=False)
    con.close()
    for table in ("order_items", "events"):  # one file: move it under a partition folder like the others
        folder = lake / table / "day=2026-06-30"
        folder.mkdir()
        (lake / table / "part.parquet").rename(folder / "part.parquet")
    # the lake as a deployment keeps it: the product's own compaction merges each partition's files (a
    # partitioned COPY leaves tens of small files per day, as a day of imports and outbox batches would)
    compact(lake, lambda _batches: set())
    return {"root": root, "lake": lake, "members": members}


def _ours(data: dict[str, Any]) -> tuple[int, int, Decimal]:
    warehouse = DuckDBWarehouse(data["lake"])
    try:
        warehouse.refresh()
        tags = [TagDefinition.model_validate(tag) for tag in DEMO_TAGS]
        table = compute_traits(warehouse, WORKSPACE, as_of=AS_OF, tags=tags).table
        assert table.num_rows == data["members"]
        buyers = table.filter(table["orders"].to_numpy() > 0)
        return buyers.num_rows, int(buyers["orders"].to_numpy().sum()), sum(buyers["net_spend"].to_pylist(), Decimal(0))
    finally:
        warehouse.close()


def _baseline(data: dict[str, Any]) -> tuple[int, int, Decimal]:
    lake = data["lake"]
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        rows = con.execute(f"""
            WITH links AS (SELECT channel, source_id, member_id
                           FROM read_parquet('{lake}/derived/identity_map/*.parquet') WHERE workspace_id = $ws),
            refunds AS (SELECT channel, order_id, sum(amount) AS refunded
                        FROM read_parquet('{lake}/refunds/*/*.parquet', hive_partitioning = true)
                        WHERE workspace_id = $ws AND refunded_at <= $as_of GROUP BY ALL),
            units AS (SELECT channel, order_id, sum(quantity) AS units
                      FROM read_parquet('{lake}/order_items/*/*.parquet', hive_partitioning = true)
                      WHERE workspace_id = $ws GROUP BY ALL),
            orders AS (SELECT l.member_id, o.ordered_at, o.paid_amount AS paid,
                              least(coalesce(r.refunded, 0), o.paid_amount) AS refunded, u.units,
                              o.discount_amount > 0 AS discounted
                       FROM read_parquet('{lake}/orders/*/*.parquet', hive_partitioning = true) o
                       JOIN links l ON o.channel = l.channel AND o.customer_key = l.source_id
                       LEFT JOIN refunds r ON r.channel = o.channel AND r.order_id = o.order_id
                       LEFT JOIN units u ON u.channel = o.channel AND u.order_id = o.order_id
                       WHERE o.workspace_id = $ws AND o.ordered_at <= $as_of
                         AND (o.status IS NULL OR o.status NOT IN ('created', 'cancelled'))),
            per_member AS (SELECT member_id, count(*) AS orders, sum(units) AS units, sum(paid) AS gross,
                                  sum(paid - refunded) AS net, min(ordered_at) AS first_at, max(ordered_at) AS last_at,
                                  avg(discounted::INT) AS discount_share,
                                  count(*) FILTER (WHERE ordered_at > $as_of - INTERVAL 365 DAY) AS f365,
                                  sum(paid - refunded) FILTER (WHERE ordered_at > $as_of - INTERVAL 365 DAY) AS m365
                           FROM orders GROUP BY member_id),
            rfm AS (SELECT *, ntile(5) OVER (ORDER BY last_at) AS r, ntile(5) OVER (ORDER BY f365) AS f,
                           ntile(5) OVER (ORDER BY m365) AS m
                    FROM per_member WHERE f365 > 0)
            SELECT p.*, rfm.r, rfm.f, rfm.m FROM per_member p LEFT JOIN rfm USING (member_id)
        """, {"ws": WORKSPACE, "as_of": AS_OF}).fetch_arrow_table()
        return rows.num_rows, int(rows["orders"].to_numpy().sum()), sum(rows["net"].to_pylist(), Decimal(0))
    finally:
        con.close()


def _same_totals(ours: Any, baseline: Any) -> None:
    assert tuple(ours) == tuple(baseline), (ours, baseline)


BENCHMARKS = [
    Benchmark(
        name="insight_traits", description="all traits and tags for 1M members / 10M orders (--quick: 100k / 1M)",
        baseline_name="analyst's DuckDB SQL (statistics + RFM)", setup=_setup, ours=_ours, baseline=_baseline,
        check=_same_totals, repeats=2, unit_of_work="1M members",
        teardown=lambda data: shutil.rmtree(data["root"], ignore_errors=True),
    ),
]
