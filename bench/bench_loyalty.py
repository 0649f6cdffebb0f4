"""Loyalty benchmarks: earn and redeem transactions over HTTP against a real server, 32 concurrent clients.

- ``loyalty_postgresql``: half ``POST /api/v1/orders`` (an enrolled member's order, which earns points),
  half ``POST /api/v1/members/{id}/points/redeem`` (5 points, a fresh idempotency key each), on
  PostgreSQL (target in issue 6: at least 1,000 transactions/s, p99 under 50 ms).
- ``loyalty_sqlite``: the same on SQLite.

Ours is ``memberops serve --no-jobs --workers N`` over a fresh store with 1,000 members enrolled through
``POST /api/v1/members`` and one order each (so redemptions have points). The baseline is the same
transaction written the way a careful developer would by hand: a minimal FastAPI app under the same
uvicorn, on the same database, with raw SQL — for an earn, insert the order (``ON CONFLICT DO NOTHING``),
lock the member's balance row, insert a ledger row, update the balance; for a redemption, lock the balance
row, check it, insert a ledger row with its idempotency key, update the balance — one transaction each, no
lots, no programme rules, no authentication. The ratio is what memberops' ledger (lots, allocations,
catch-up, idempotency, outbox, API keys) costs over that. Both serve with N processes: one per core on
PostgreSQL (``BENCH_LOYALTY_WORKERS`` overrides), as one deploys there; one on SQLite, whose writes are
serialised (and whose group commit batches them inside one process).

The load generator is ``bench/loadgen.py``'s, shared with the HTTP ingestion benchmark (a separate
process, keep-alive sockets). PostgreSQL
comes from ``MEMBEROPS_BENCH_DATABASE_URL`` or ``MEMBEROPS_TEST_DATABASE_URL`` (a database is created and
dropped); without either, ``loyalty_postgresql`` fails with that reason. Run ``memberops bench
loyalty_sqlite loyalty_postgresql`` (``--quick`` for a smoke run) or ``python bench/bench_loyalty.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response

from memberops.benchmarks import Benchmark, load_bench_module

HERE = Path(__file__).resolve()
MEMBERS = 1_000
CONCURRENCY = int(os.environ.get("BENCH_LOYALTY_CONCURRENCY", "32"))
# Server processes on PostgreSQL, as one would deploy there: one per core (a process runs Python on one
# core). SQLite serves from one process (one writer at a time; its group commit is in-process).
POSTGRESQL_WORKERS = int(os.environ.get("BENCH_LOYALTY_WORKERS", str(os.cpu_count() or 1)))
TRANSACTIONS = {True: 600, False: 6_000}
RUN_TOKEN = "@@RUN@@"
STARTUP_SECONDS = 300.0  # processes importing everything at once on a loaded machine take minutes


loadgen = load_bench_module(HERE.with_name("loadgen.py"))  # the shared servers and load generator


# --- the stores ------------------------------------------------------------------------------------------


def _postgres_url() -> str:
    url = os.environ.get("MEMBEROPS_BENCH_DATABASE_URL") or os.environ.get("MEMBEROPS_TEST_DATABASE_URL", "")
    if not url:
        raise RuntimeError("set MEMBEROPS_BENCH_DATABASE_URL (or MEMBEROPS_TEST_DATABASE_URL) to a PostgreSQL server")
    return url


def _admin_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def _create_postgres_database() -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    url = _postgres_url()
    name = f"memberops_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(_admin_dsn(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(url: str) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    with psycopg.connect(_admin_dsn(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the rig ---------------------------------------------------------------------------------------------


class Rig:
    def __init__(self, root: Path, database_url: str, quick: bool) -> None:
        self.root, self.database_url, self.quick = root, database_url, quick
        self.processes: list[subprocess.Popen[bytes]] = []
        self.generator: Any = None
        self.ours_url = self.baseline_url = self.key = ""
        self.members: list[str] = []
        self.runs = 0
        self.figures: list[str] = []

    def load(self, url: str, requests: int, *, mode: str = "mix", concurrency: int = CONCURRENCY) -> dict[str, Any]:
        assert self.generator is not None
        self.runs += 1
        return self.generator.run({"url": url, "key": self.key, "mode": mode, "requests": requests,
                                   "concurrency": concurrency, "run": f"r{self.runs}", "members": self.members})


def _start(store: str, quick: bool) -> Rig:
    root = Path(tempfile.mkdtemp(prefix="memberops-bench-loyalty-"))
    database_url = _create_postgres_database() if store == "postgresql" else f"sqlite:///{root / 'data' / 'memberops.db'}"
    rig = Rig(root, database_url, quick)
    env = {**os.environ, "MEMBEROPS_DATA_DIR": str(root / "data"), "MEMBEROPS_SECRET_KEY": "bench-secret",
           "MEMBEROPS_DATABASE_URL": database_url}
    try:
        rig.key = loadgen.create_key(env, "loyalty", "ingest")
        ours_port, baseline_port = loadgen.free_port(), loadgen.free_port()
        quiet = subprocess.DEVNULL
        workers = str(POSTGRESQL_WORKERS if store == "postgresql" else 1)
        rig.figures.append(f"server processes (ours and baseline): {workers}")
        ours = loadgen.memberops("serve", "--no-jobs", "--port", str(ours_port), "--workers", workers, env=env,
                                 stdout=quiet, stderr=quiet)
        rig.processes.append(ours)
        rig.ours_url = f"http://127.0.0.1:{ours_port}"
        loadgen.wait_healthy(rig.ours_url, ours, timeout=STARTUP_SECONDS)
        rig.generator = loadgen.Generator(HERE, env)
        enrolled = rig.load(rig.ours_url, MEMBERS, mode="enrol", concurrency=4)
        rig.members = enrolled["member_ids"]
        baseline = subprocess.Popen([sys.executable, str(HERE), "serve-baseline", str(baseline_port), database_url,
                                     json.dumps(rig.members), workers], env=env, stdout=quiet, stderr=quiet)
        rig.processes.append(baseline)
        rig.baseline_url = f"http://127.0.0.1:{baseline_port}"
        loadgen.wait_healthy(rig.baseline_url, baseline, timeout=STARTUP_SECONDS)
        for url in (rig.ours_url, rig.baseline_url):  # one order each first, so every redemption can be paid
            rig.load(url, MEMBERS, mode="earn", concurrency=8)
    except Exception:
        _stop(rig)
        raise
    return rig


def _stop(rig: Rig) -> None:
    if rig.generator is not None:
        rig.generator.close()
    loadgen.stop(rig.processes)
    for line in rig.figures:
        print(f"  {line}")
    if rig.database_url.startswith("postgresql"):
        _drop_postgres_database(rig.database_url)
    shutil.rmtree(rig.root, ignore_errors=True)


# --- the baseline server (its own process) ---------------------------------------------------------------


def _serve_baseline(port: int, database_url: str, members: list[str], workers: int) -> None:
    """Earn and redeem by hand: raw SQL, the balance row locked, one transaction per request; its tables
    made here, then served by ``workers`` uvicorn processes (each building :func:`baseline_app`)."""
    import uvicorn
    from sqlalchemy import text

    from memberops.db.engine import create_store_engine

    engine = create_store_engine(database_url)
    is_sqlite = engine.dialect.name == "sqlite"
    identity = "INTEGER PRIMARY KEY AUTOINCREMENT" if is_sqlite else "BIGSERIAL PRIMARY KEY"
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE hand_balance (member_id VARCHAR(36) PRIMARY KEY, available INTEGER NOT NULL)"))
        conn.execute(text(f"CREATE TABLE hand_ledger (id {identity}, member_id VARCHAR(36) NOT NULL, "
                          "idempotency_key VARCHAR(200) NOT NULL UNIQUE, points INTEGER NOT NULL, kind VARCHAR(16) NOT NULL, "
                          "created_at TIMESTAMP NOT NULL)"))
        conn.execute(text("CREATE TABLE hand_order (channel VARCHAR(32) NOT NULL, order_id VARCHAR(128) NOT NULL, "
                          "member_id VARCHAR(36), paid_amount NUMERIC(18,2) NOT NULL, PRIMARY KEY (channel, order_id))"))
        conn.execute(text("CREATE TABLE hand_customer (customer_key VARCHAR(200) PRIMARY KEY, member_id VARCHAR(36) NOT NULL)"))
        conn.execute(text("INSERT INTO hand_balance VALUES (:m, 0)"), [{"m": m} for m in members])
        conn.execute(text("INSERT INTO hand_customer VALUES (:k, :m)"),
                     [{"k": f"c{i}", "m": m} for i, m in enumerate(members)])
    engine.dispose()
    os.environ["BENCH_BASELINE_DATABASE_URL"] = database_url
    uvicorn.run("bench_loyalty:baseline_app", app_dir=str(HERE.parent), factory=True, workers=workers,
                host="127.0.0.1", port=port, log_level="warning", timeout_worker_healthcheck=60)


def baseline_app() -> FastAPI:
    """The baseline's app over ``BENCH_BASELINE_DATABASE_URL`` (tables made by :func:`_serve_baseline`)."""
    import asyncio

    from sqlalchemy import text
    from starlette.concurrency import run_in_threadpool

    from memberops.db.engine import create_store_engine

    database_url = os.environ["BENCH_BASELINE_DATABASE_URL"]
    engine = create_store_engine(database_url, pool_size=20, max_overflow=10) if database_url.startswith("postgresql") \
        else create_store_engine(database_url)
    is_sqlite = engine.dialect.name == "sqlite"
    lock_suffix = "" if is_sqlite else " FOR UPDATE"
    insert_order = text("INSERT INTO hand_order VALUES (:channel, :order_id, :member_id, :paid) "
                        "ON CONFLICT (channel, order_id) DO NOTHING")
    lock = text(f"SELECT available FROM hand_balance WHERE member_id = :m{lock_suffix}")
    ledger = text("INSERT INTO hand_ledger (member_id, idempotency_key, points, kind, created_at) "
                  "VALUES (:m, :k, :p, :kind, CURRENT_TIMESTAMP)")
    move = text("UPDATE hand_balance SET available = available + :p WHERE member_id = :m")
    customer = text("SELECT member_id FROM hand_customer WHERE customer_key = :k")
    app = FastAPI()
    writer = asyncio.Semaphore(1 if is_sqlite else 8)

    def earn(body: dict[str, Any]) -> tuple[int, bytes]:
        with engine.begin() as conn:
            member_id = conn.execute(customer, {"k": body["customer_key"]}).scalar()
            inserted = conn.execute(insert_order, {"channel": body["channel"], "order_id": body["order_id"],
                                                   "member_id": member_id, "paid": body["paid_amount"]}).rowcount
            points = int(float(body["paid_amount"])) if inserted and member_id else 0
            if points:
                conn.execute(lock, {"m": member_id})
                conn.execute(ledger, {"m": member_id, "k": f"order:{body['channel']}:{body['order_id']}",
                                      "p": points, "kind": "earn"})
                conn.execute(move, {"m": member_id, "p": points})
        return 201, json.dumps({"status": "accepted", "points_earned": points}).encode()

    def redeem(member_id: str, body: dict[str, Any]) -> tuple[int, bytes]:
        with engine.begin() as conn:
            available = conn.execute(lock, {"m": member_id}).scalar()
            if available is None or available < body["points"]:
                return 409, b'{"code":"insufficient_points"}'
            conn.execute(ledger, {"m": member_id, "k": body["idempotency_key"], "p": -body["points"], "kind": "redeem"})
            conn.execute(move, {"m": member_id, "p": -body["points"]})
            return 200, json.dumps({"available": available - body["points"]}).encode()

    async def run(function: Any, *args: Any) -> Response:
        async with writer:
            status, content = function(*args) if is_sqlite else await run_in_threadpool(function, *args)
        return Response(content, status_code=status, media_type="application/json")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/orders")
    async def orders(request: Request) -> Response:
        return await run(earn, await request.json())

    @app.post("/api/v1/members/{member_id}/points/redeem")
    async def redeem_points(member_id: str, request: Request) -> Response:
        return await run(redeem, member_id, await request.json())

    return app


# --- the load generator (its own process) ----------------------------------------------------------------


def _order(index: int) -> tuple[str, dict[str, Any]]:
    return "/api/v1/orders", {
        "channel": "pos", "order_id": f"{RUN_TOKEN}-{index}", "customer_key": f"c{index % MEMBERS}",
        "ordered_at": "2026-03-01T10:15:00+08:00", "paid_amount": "119.00",
        "items": [{"line_no": 1, "sku": f"SKU-{index % 300}", "quantity": 1, "amount": "119.00"}],
    }


def _requests(mode: str, count: int, members: list[str]) -> list[tuple[str, dict[str, Any]]]:
    if mode == "enrol":
        return [("/api/v1/members", {"channel": "pos", "source_id": f"c{i}", "phone": f"+86139{i:08d}"})
                for i in range(count)]
    if mode == "earn":
        return [_order(i) for i in range(count)]
    mixed: list[tuple[str, dict[str, Any]]] = []
    for i in range(count):
        member = (i // 2) % MEMBERS
        if i % 2 == 0:
            mixed.append(_order(i))
        else:
            mixed.append((f"/api/v1/members/{members[member]}/points/redeem",
                          {"points": 5, "reason": "bench", "idempotency_key": f"{RUN_TOKEN}-{i}"}))
    return mixed


def _run_load(command: dict[str, Any]) -> dict[str, Any]:
    token, run = RUN_TOKEN, command["run"]
    prepared = [(path, json.dumps(body).replace(token, run).encode())
                for path, body in _requests(command["mode"], command["requests"], command["members"])]
    member_ids: dict[int, str] = {}

    def inspect(index: int, status: int, body: bytes) -> None:
        if command["mode"] == "enrol" and status in (200, 201):
            member_ids[index] = json.loads(body)["member_id"]

    result: dict[str, Any] = loadgen.run(command["url"], loadgen.prepare(command["url"], command["key"], prepared),
                                         command["concurrency"], inspect)
    result["member_ids"] = [member_ids[i] for i in sorted(member_ids)]
    return result


# --- the benchmarks --------------------------------------------------------------------------------------


def _side(rig: Rig, name: str, side: str) -> dict[str, Any]:
    result = rig.load(rig.ours_url if side == "ours" else rig.baseline_url, TRANSACTIONS[rig.quick])
    rate = result["requests"] / result["seconds"]
    rig.figures.append(f"{name}: {side:8s} {rate:>7,.0f} tx/s  p50 {result['p50_ms']:6.1f} ms  "
                       f"p99 {result['p99_ms']:6.1f} ms  statuses {result['statuses']}")
    return result


def _all_succeeded(ours: dict[str, Any], baseline: dict[str, Any]) -> None:
    for result in (ours, baseline):
        assert set(result["statuses"]) <= {"200", "201"}, result["statuses"]


def _benchmark(store: str) -> Benchmark:
    name = f"loyalty_{store}"
    return Benchmark(
        name=name, description=f"earn (POST /orders) and redeem (POST …/points/redeem) half and half, "
                               f"{CONCURRENCY} connections, {store}",
        baseline_name="FastAPI + raw SQL by hand", setup=lambda quick: _start(store, quick),
        ours=lambda rig: _side(rig, name, "ours"), baseline=lambda rig: _side(rig, name, "baseline"),
        check=_all_succeeded, repeats=3, teardown=_stop, unit_of_work=f"{TRANSACTIONS[False]:,} transactions",
    )


BENCHMARKS = [_benchmark("postgresql"), _benchmark("sqlite")]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        loadgen.serve_commands(_run_load)
    elif len(sys.argv) > 5 and sys.argv[1] == "serve-baseline":
        _serve_baseline(int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), int(sys.argv[5]))
    else:
        from rich.console import Console

        from memberops.benchmarks import run_benchmarks

        run_benchmarks(HERE.parent, [b.name for b in BENCHMARKS], quick="--quick" in sys.argv, console=Console())
