"""Serving traits benchmark: the last step of ``insight compute``, the profile's traits written to the state store.

- ``serving_traits_sqlite`` / ``serving_traits_postgresql``: ``save_serving_traits`` replacing a workspace's
  1M ``member_trait`` rows (``--quick``: 100k) by a new computation's — a trait table with the lake's schema,
  drawn at random with the demo brand's shape (four in ten members never bought: their purchase traits are
  null). Ours: the JSON documents built by Arrow a column at a time, ``COPY … FROM STDIN`` on PostgreSQL, one
  ``executemany`` on SQLite, after a ``DELETE`` of the workspace's rows, in one transaction. Baseline: the
  ORM's own bulk upsert as SQLAlchemy documents it — ``INSERT … ON CONFLICT DO UPDATE`` through
  ``session.execute(statement, rows)`` with one dictionary per member (JSON dumped by the column type), then
  a ``DELETE`` of the rows the computation did not write — which is how memberops wrote them before.
  Both sides must leave the same traits for a sample of members.

PostgreSQL comes from ``MEMBEROPS_BENCH_DATABASE_URL`` or ``MEMBEROPS_TEST_DATABASE_URL`` (a database is
created and dropped).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Table, delete

from memberops.benchmarks import Benchmark
from memberops.db.dialect import upsert
from memberops.insight.documents import json_value
from memberops.insight.models import MemberTrait
from memberops.insight.service import SERVING_TRAITS, get_traits, save_serving_traits
from memberops.lake.registry import table_spec

AS_OF = datetime(2026, 7, 1, tzinfo=UTC)
SEGMENTS: list[str | None] = ["Champions", "Loyal", "Potential Loyalist", "At Risk", "Hibernating", "Can't Lose Them", None]
STAGES: list[str | None] = ["prospect", "new", "active", "loyal", "at_risk", "churned"]
TAGS = [[], ["price_sensitive"], ["high_value"], ["high_value", "new_mom"]]


def trait_table(members: int, seed: int = 5) -> pa.Table:
    """A trait table with the lake's schema: random traits of ``members`` members, 40% of them never bought."""
    rng = np.random.default_rng(seed)
    bought = rng.random(members) < 0.6
    fields = {f.name: f.type for f in table_spec("member_traits").fields}

    def column(name: str) -> pa.Array:
        kind = fields[name]
        always = name in ("as_of", "lifecycle_stage", "aipl_stage", "koc_score", "referrals", "shares")
        mask = None if always else ~bought
        if name == "as_of":
            return pa.array([AS_OF] * members, kind)
        if pa.types.is_timestamp(kind):
            ago = rng.integers(0, 730 * 86_400, members).astype("timedelta64[s]")
            return pa.array(np.datetime64("2026-07-01T00:00:00") - ago, pa.timestamp("s"), mask=mask).cast(kind)
        if pa.types.is_date(kind):
            return pa.array(np.datetime64("2026-07-01") + rng.integers(0, 200, members), kind, mask=mask)
        if pa.types.is_decimal(kind):
            cents = rng.gamma(2.0, 30_000, members).round() / 100
            return pa.array(cents, pa.float64(), mask=mask).cast(kind, safe=False)
        if pa.types.is_floating(kind):
            return pa.array(rng.gamma(1.5, 20.0, members), kind, mask=mask)
        if pa.types.is_integer(kind):
            return pa.array(rng.integers(0 if always else 1, 6, members), kind, mask=mask)
        by_name: dict[str, list[str | None]] = {
            "rfm_segment": SEGMENTS, "lifecycle_stage": STAGES, "aipl_stage": ["aware", "purchased", "loyal"],
            "preferred_channel": ["tmall", "jd", "pos", "wechat"], "rfm_score": ["555", "345", "121"],
            "preferred_category": ["formula", "diapers", "wipes", "toys"]}
        choices = by_name.get(name, ["HZ01", "SH02", "BJ03"])
        picked = pa.array(choices, pa.string()).take(pa.array(rng.integers(0, len(choices), members)))
        return picked if mask is None else pc.if_else(pa.array(mask), pa.scalar(None, pa.string()), picked)

    names = ["member_id", *SERVING_TRAITS, "tags"]
    data: dict[str, pa.Array] = {"member_id": pa.array([f"m{i:08d}" for i in range(members)], pa.string()),
                                 "tags": pa.array([TAGS[i] for i in rng.integers(0, len(TAGS), members)],
                                                  fields["tags"])}
    data |= {name: column(name) for name in SERVING_TRAITS}
    return pa.table({name: data[name] for name in names})


def _orm_upsert(session: Any, workspace_id: str, traits: pa.Table, computed_at: datetime) -> int:
    """The baseline: one parameter dictionary per member through the ORM's executemany upsert."""
    statement = upsert(session, cast(Table, MemberTrait.__table__), ["workspace_id", "member_id"],
                       ["computed_at", "traits", "tags"])
    written = 0
    for batch in traits.to_batches(5_000):
        values = [[json_value(v) for v in batch.column(name).to_pylist()] for name in SERVING_TRAITS]
        rows = [{"workspace_id": workspace_id, "member_id": member_id, "computed_at": computed_at,
                 "traits": dict(zip(SERVING_TRAITS, row, strict=True)), "tags": tags or []}
                for member_id, tags, *row in zip(batch.column("member_id").to_pylist(),
                                                 batch.column("tags").to_pylist(), *values, strict=True)]
        session.execute(statement, rows)
        written += len(rows)
    session.execute(delete(MemberTrait).where(MemberTrait.workspace_id == workspace_id,
                                              MemberTrait.computed_at < computed_at))
    return written


def _setup(kind: str, quick: bool) -> dict[str, Any]:
    from memberops.accounts import service as accounts
    from memberops.db import migrate
    from memberops.db.engine import Store

    root = Path(tempfile.mkdtemp(prefix="memberops-bench-serving-"))
    url, admin = f"sqlite:///{root / 'memberops.db'}", ""
    if kind == "postgresql":
        import psycopg
        from sqlalchemy.engine import make_url

        base = os.environ.get("MEMBEROPS_BENCH_DATABASE_URL") or os.environ.get("MEMBEROPS_TEST_DATABASE_URL", "")
        if not base:
            raise RuntimeError("set MEMBEROPS_BENCH_DATABASE_URL (or MEMBEROPS_TEST_DATABASE_URL) to a PostgreSQL server")
        admin = make_url(base).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
        name = f"memberops_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
    store = Store(url)
    migrate.upgrade(store)
    with store.transaction() as session:
        workspace_id = accounts.ensure_workspace(session, name="bench").id
    traits = trait_table(100_000 if quick else 1_000_000)
    data = {"root": root, "store": store, "url": url, "admin": admin, "workspace_id": workspace_id,
            "traits": traits, "runs": 0}
    _write(data, save_serving_traits)  # the workspace holds a set: each run replaces it, as a nightly run does
    return data


def _write(data: dict[str, Any], write: Any) -> dict[str, Any]:
    data["runs"] += 1
    computed_at = AS_OF + timedelta(minutes=data["runs"])
    with data["store"].transaction() as session:
        write(session, data["workspace_id"], data["traits"], computed_at)
    with data["store"].read() as session:
        sample = [f"m{i:08d}" for i in range(0, data["traits"].num_rows, 9_973)]
        return {m: {k: v for k, v in (get_traits(session, data["workspace_id"], m) or {}).items() if k != "computed_at"}
                for m in sample}


def _same_traits(ours: Any, baseline: Any) -> None:
    assert ours == baseline


def _teardown(data: dict[str, Any]) -> None:
    data["store"].dispose()
    if data["admin"]:
        import psycopg
        from sqlalchemy.engine import make_url

        with psycopg.connect(data["admin"], autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{make_url(data["url"]).database}" WITH (FORCE)')
    shutil.rmtree(data["root"], ignore_errors=True)


def _benchmark(kind: str) -> Benchmark:
    return Benchmark(
        name=f"serving_traits_{kind}", description=f"replace 1M members' serving traits on {kind} (--quick: 100k)",
        baseline_name="SQLAlchemy ORM bulk upsert (ON CONFLICT DO UPDATE, executemany of dicts)",
        setup=lambda quick: _setup(kind, quick), ours=lambda data: _write(data, save_serving_traits),
        baseline=lambda data: _write(data, _orm_upsert), check=_same_traits, repeats=2, unit_of_work="1M members",
        teardown=_teardown,
    )


BENCHMARKS = [_benchmark("sqlite"), _benchmark("postgresql")]
