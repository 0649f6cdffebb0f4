"""360° profile benchmark: a member's profile on the demo brand, on DuckDB.

- ``profile_demo``: the demo brand (``generate_brand``, 20,000 people; ``--quick``: 2,000) imported through
  the channel presets, resolved (OneID) and compacted (``memberops lake compact``), as ``memberops demo``
  leaves it. Ours: ``member_profile`` of 50 random members (seeded) on one warehouse, as the API serves
  them; it reads the member's lake rows through the key-sorted index of ``insight/fact_index.py``, which
  the first profile builds (its cost is in the first repeat's p95). Baseline: the same members' lake facts — orders (newest 1,000), their refunds, the newest events,
  the listed orders' lines and the identifier kinds — fetched by hand-written DuckDB SQL over the same
  compacted lake on one connection with the Parquet metadata cache on: the lake read at its cheapest,
  without the state store, traits or the golden record the profile also reads.

Both sides print p50 and p95 of one profile's latency (goal: p50 < 300 ms on the demo brand). The harness
compares the total time of the 50 profiles.
"""

from __future__ import annotations

import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb

from memberops.benchmarks import Benchmark

PROFILES = 50


def _setup(quick: bool) -> dict[str, Any]:
    from sqlalchemy import select

    from memberops.accounts import service as accounts
    from memberops.audit.service import Actor
    from memberops.config import Settings
    from memberops.db import migrate
    from memberops.demo.clock import REFERENCE_END
    from memberops.demo.generate import generate_brand
    from memberops.demo.load import import_brand
    from memberops.identity.models import IdentityLink, Member
    from memberops.identity.resolve import resolve_identities
    from memberops.lake.compact import compact_lake
    from memberops.runtime import Context

    root = Path(tempfile.mkdtemp(prefix="memberops-bench-profile-"))
    generate_brand(root / "brand", members=2_000 if quick else 20_000, seed=7, end=REFERENCE_END)  # the same brand on any day
    settings = Settings(data_dir=root / "data", secret_key="bench-secret-key")
    context = Context.from_settings(settings)
    migrate.upgrade(context.store)
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session, name="Bench brand")
    import_brand(context, workspace, root / "brand")
    resolve_identities(context, workspace, actor=Actor.system())
    compact_lake(context.store, settings.lake_path)
    with context.store.read() as session:
        members = sorted(session.scalars(select(Member.id).where(Member.workspace_id == workspace.id)).all())
        picked = random.Random(5).sample(members, min(PROFILES, len(members)))
        keys = {m: sorted({(link.channel, link.source_id) for link in session.scalars(
            select(IdentityLink).where(IdentityLink.member_id == m))}) for m in picked}
    return {"root": root, "context": context, "workspace": workspace.id, "members": picked, "keys": keys,
            "lake": settings.lake_path}


def _report(side: str, latencies: list[float]) -> None:
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(f"  {side}: p50 {statistics.median(ordered) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms "
          f"over {len(ordered)} profiles")


def _ours(data: dict[str, Any]) -> int:
    from memberops.insight.profile import member_profile

    context = data["context"]
    warehouse = context.warehouse()
    latencies, orders = [], 0
    for member_id in data["members"]:
        started = time.perf_counter()
        with context.store.read() as session:
            profile = member_profile(session, warehouse, data["workspace"], member_id)
        latencies.append(time.perf_counter() - started)
        orders += len(profile.recent_orders)
    _report("ours", latencies)
    return orders


def _in_list(keys: list[tuple[str, str]]) -> str:
    return ", ".join(f"('{c}', '{k}')" for c, k in keys)


def _baseline(data: dict[str, Any]) -> int:
    lake = data["lake"]
    con = duckdb.connect()
    con.execute("SET parquet_metadata_cache = true")

    def scan(table: str) -> str:
        return f"read_parquet('{lake}/{table}/day=*/*.parquet', hive_partitioning = true)"

    workspace = data["workspace"]
    latencies, orders = [], 0
    for member_id in data["members"]:
        keys = data["keys"][member_id]
        started = time.perf_counter()
        if keys:
            wanted = _in_list(keys)
            con.execute(f"""SELECT channel, bool_or(phone IS NOT NULL), bool_or(email IS NOT NULL)
                FROM {scan('identity_records')} WHERE workspace_id = '{workspace}'
                AND (channel, source_id) IN ({wanted}) GROUP BY channel""").fetch_arrow_table()
            order_rows = con.execute(f"""SELECT channel, order_id, ordered_at, status, paid_amount, currency, store_id
                FROM {scan('orders')} WHERE workspace_id = '{workspace}' AND (channel, customer_key) IN ({wanted})
                ORDER BY ordered_at DESC, channel, order_id LIMIT 1000""").fetch_arrow_table()
            order_keys = list(zip(order_rows["channel"].to_pylist(), order_rows["order_id"].to_pylist(), strict=True))
            if order_keys:
                listed = _in_list(order_keys)
                con.execute(f"""SELECT channel, refund_id, order_id, refunded_at, amount FROM {scan('refunds')}
                    WHERE workspace_id = '{workspace}' AND (channel, order_id) IN ({listed})
                    ORDER BY refunded_at DESC LIMIT 200""").fetch_arrow_table()
                recent = _in_list(order_keys[:20])
                con.execute(f"""SELECT channel, order_id, line_no, sku, category, quantity, amount
                    FROM {scan('order_items')} WHERE workspace_id = '{workspace}'
                    AND (channel, order_id) IN ({recent}) ORDER BY channel, order_id, line_no""").fetch_arrow_table()
            con.execute(f"""SELECT channel, event_id, type, occurred_at, properties FROM {scan('events')}
                WHERE workspace_id = '{workspace}' AND (channel, customer_key) IN ({wanted})
                ORDER BY occurred_at DESC LIMIT 40""").fetch_arrow_table()
            orders += min(len(order_keys), 20)
        latencies.append(time.perf_counter() - started)
    con.close()
    _report("duckdb SQL", latencies)
    return orders


def _teardown(data: dict[str, Any]) -> None:
    data["context"].close()
    shutil.rmtree(data["root"], ignore_errors=True)


BENCHMARKS = [
    Benchmark(
        name="profile_demo", description=f"{PROFILES} member profiles on the compacted demo brand (20k people)",
        baseline_name="hand-written DuckDB SQL, same facts", setup=_setup, ours=_ours, baseline=_baseline,
        repeats=3, unit_of_work=f"{PROFILES} profiles", teardown=_teardown,
    ),
]
