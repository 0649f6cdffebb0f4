"""HTTP ingestion benchmarks: a real server, loaded from another process over loopback.

- ``http_events_batch``: batches of 1,000 events posted to ``POST /api/v1/events`` (target in issue 3:
  at least 20,000 events/s on a 2-core machine).
- ``http_orders_single``: single orders, each with two lines, posted to ``POST /api/v1/orders`` (target:
  at least 500 orders/s with a p99 under 100 ms on SQLite).

Ours is ``memberops serve --no-jobs`` on a fresh SQLite data directory, authenticated with a key from
``memberops keys create --scope ingest``; every run sends new natural keys, so everything is accepted and
written (state, received keys, outbox). The issue names no peer for HTTP, so the baseline is the ceiling
of the framework on this machine: the same requests, over the same kind of connections, to a minimal
FastAPI app under the same uvicorn that only parses the JSON body and answers 200.

The load generator is ``bench/loadgen.py``'s (shared with the loyalty benchmark): a separate process
(threads, each with its own keep-alive HTTP/1.1 connection over a plain socket and the requests prepared
in advance) fed commands over a pipe; it reports throughput and latency percentiles, printed after each
timed run. Run with
``memberops bench http_events_batch http_orders_single`` (``--quick`` for a smoke run) or
``python bench/bench_http_ingest.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response

from memberops.benchmarks import Benchmark, load_bench_module

BATCH = 1_000
RUN_TOKEN = "@@RUN@@"
HERE = Path(__file__).resolve()




loadgen = load_bench_module(HERE.with_name("loadgen.py"))  # the shared servers and load generator


# --- servers ---------------------------------------------------------------------------------------------


class Rig:
    """The two servers, the load generator and the figures of every run.

    (A plain class: the harness loads bench files without registering them, which dataclasses need.)
    """

    def __init__(self, root: Path, ours_url: str, baseline_url: str, key: str, quick: bool,
                 processes: list[subprocess.Popen[bytes]]) -> None:
        self.root, self.ours_url, self.baseline_url, self.key, self.quick = root, ours_url, baseline_url, key, quick
        self.processes = processes
        self.generator: Any = None
        self.runs = 0
        self.figures: dict[str, list[dict[str, Any]]] = {}

    def load(self, url: str, mode: str, requests: int, concurrency: int) -> dict[str, Any]:
        assert self.generator is not None
        self.runs += 1
        return self.generator.run({"url": url, "key": self.key, "mode": mode, "requests": requests,
                                   "concurrency": concurrency, "run": f"r{self.runs}"})


def _start(quick: bool) -> Rig:
    root = Path(tempfile.mkdtemp(prefix="memberops-bench-http-"))
    env = {**os.environ, "MEMBEROPS_DATA_DIR": str(root / "data"), "MEMBEROPS_SECRET_KEY": "bench-secret"}
    env.pop("MEMBEROPS_DATABASE_URL", None)  # SQLite in the data directory, as the target says
    key = loadgen.create_key(env, "ingest")
    ours_port, baseline_port = loadgen.free_port(), loadgen.free_port()
    quiet = subprocess.DEVNULL  # the access log is written, and thrown away
    ours = loadgen.memberops("serve", "--no-jobs", "--port", str(ours_port), env=env, stdout=quiet, stderr=quiet)
    baseline = subprocess.Popen([sys.executable, str(HERE), "serve-baseline", str(baseline_port)], env=env,
                                stdout=quiet, stderr=quiet)
    rig = Rig(root, f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{baseline_port}", key, quick,
              [ours, baseline])
    try:
        loadgen.wait_healthy(rig.ours_url, ours)
        loadgen.wait_healthy(rig.baseline_url, baseline)
        rig.generator = loadgen.Generator(HERE, env)
        rig.load(rig.ours_url, "customers", 1_000, 2)  # the buyers the orders will name, so they resolve
    except Exception:
        _stop(rig)
        raise
    return rig


def _stop(rig: Rig) -> None:
    if rig.generator is not None:
        rig.generator.close()
    loadgen.stop(rig.processes)
    for name, runs in rig.figures.items():
        for run in runs:
            print(f"  {name}: {run['label']}")
    shutil.rmtree(rig.root, ignore_errors=True)


def _serve_baseline(port: int) -> None:
    """The framework's ceiling: FastAPI under uvicorn, parsing the JSON body and answering 200."""
    import uvicorn

    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/v1/{kind}")
    async def ingest(kind: str, request: Request) -> Response:
        await request.json()
        return Response(b'{"status":"ok"}', media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# --- the load generator (its own process) ----------------------------------------------------------------


def _event(batch: int, index: int) -> dict[str, Any]:
    member = (batch * BATCH + index) % 5_000
    return {
        "channel": "app", "event_id": f"{RUN_TOKEN}-{batch}-{index}",
        "type": ("page_view", "product_view", "add_to_cart", "coupon_claim")[index % 4],
        **({"customer_key": f"c{member}"} if index % 3 else {"anonymous_id": f"anon-{member}"}),
        "occurred_at": f"2026-03-{1 + index % 28:02d}T{index % 24:02d}:15:00+08:00",
        "properties": {"sku": f"SKU-{index % 300}", "page": f"/p/{index % 300}", "source": "bench"},
    }


def _order(index: int) -> dict[str, Any]:
    return {
        "channel": "pos", "order_id": f"{RUN_TOKEN}-{index}", "customer_key": f"c{index % 1_000}",
        "store_id": f"S{index % 20}", "ordered_at": "2026-03-01T10:15:00+08:00", "status": "paid",
        "gross_amount": "129.00", "discount_amount": "10.00", "shipping_amount": "0.00", "paid_amount": "119.00",
        "currency": "CNY", "coupon_codes": ["SPRING10"],
        "items": [
            {"line_no": 1, "sku": f"SKU-{index % 300}", "category": "skincare", "brand": "Acme", "quantity": 1,
             "unit_price": "99.00", "amount": "99.00"},
            {"line_no": 2, "sku": "SKU-GIFT", "category": "gift", "brand": "Acme", "quantity": 1,
             "unit_price": "30.00", "amount": "20.00"},
        ],
    }


def _customer(index: int) -> dict[str, Any]:
    return {"channel": "pos", "source_id": f"c{index}", "phone": f"+86138{index:08d}", "first_name": "Bench"}


def _bodies(mode: str, requests: int) -> tuple[str, list[bytes]]:
    """(path, bodies) for ``requests`` requests of ``mode``, natural keys holding :data:`RUN_TOKEN`."""
    if mode == "events":
        return "/api/v1/events", [json.dumps({"items": [_event(b, i) for i in range(BATCH)]}).encode()
                                  for b in range(requests)]
    if mode == "orders":
        return "/api/v1/orders", [json.dumps(_order(i)).encode() for i in range(requests)]
    if mode == "customers":
        return "/api/v1/customers", [json.dumps({"items": [_customer(b * 500 + i) for i in range(500)]}).encode()
                                     for b in range(requests // 500)]
    raise ValueError(mode)


def _accepted(status: int, body: bytes) -> int:
    if status == 201:
        return 1
    if status == 200 and b'"totals":' in body:
        totals: dict[str, int] = json.loads(body[body.rindex(b'"totals":') + 9:-1])
        return totals["accepted"]
    return 0


def _run_load(command: dict[str, Any], templates: dict[tuple[str, int], tuple[str, list[bytes]]]) -> dict[str, Any]:
    shape = (command["mode"], command["requests"])
    if shape not in templates:
        templates[shape] = _bodies(*shape)
    path, template = templates[shape]
    token, run = RUN_TOKEN.encode(), command["run"].encode()
    requests = loadgen.prepare(command["url"], command["key"], [(path, body.replace(token, run)) for body in template])
    accepted = [0] * len(requests)

    def inspect(index: int, status: int, body: bytes) -> None:
        accepted[index] = _accepted(status, body)

    result: dict[str, Any] = loadgen.run(command["url"], requests, command["concurrency"], inspect)
    per_request = BATCH if command["mode"] == "events" else 500 if command["mode"] == "customers" else 1
    result.update(items=len(requests) * per_request, accepted=sum(accepted))
    return result


# --- the benchmarks --------------------------------------------------------------------------------------


def _side(rig: Rig, name: str, side: str, mode: str, requests: int, concurrency: int) -> dict[str, Any]:
    url = rig.ours_url if side == "ours" else rig.baseline_url
    result = rig.load(url, mode, requests, concurrency)
    unit = "events" if mode == "events" else "orders"
    rate = result["items"] / result["seconds"]
    result["label"] = (f"{side:8s} {rate:>9,.0f} {unit}/s  {result['requests'] / result['seconds']:>7,.0f} req/s  "
                       f"p50 {result['p50_ms']:6.1f} ms  p99 {result['p99_ms']:6.1f} ms  statuses {result['statuses']}")
    rig.figures.setdefault(name, []).append(result)
    return result


def _all_accepted(ours: dict[str, Any], baseline: dict[str, Any]) -> None:
    assert ours["accepted"] == ours["items"], ours
    assert baseline["statuses"] == {"200": baseline["requests"]}, baseline


EVENT_BATCHES = {True: 20, False: 200}
ORDER_POSTS = {True: 500, False: 5_000}
EVENT_CONCURRENCY = int(os.environ.get("BENCH_EVENT_CONCURRENCY", "4"))
ORDER_CONCURRENCY = int(os.environ.get("BENCH_ORDER_CONCURRENCY", "8"))


def _http_benchmark(name: str, description: str, kind: str, counts: dict[bool, int], concurrency: int,
                    unit_of_work: str) -> Benchmark:
    """The same load against our server and the parse-only baseline, from the generator process."""
    return Benchmark(
        name=name, description=description, baseline_name="FastAPI parse-only", setup=_start,
        ours=lambda rig: _side(rig, name, "ours", kind, counts[rig.quick], concurrency),
        baseline=lambda rig: _side(rig, name, "baseline", kind, counts[rig.quick], concurrency),
        check=_all_accepted, repeats=3, teardown=_stop, unit_of_work=unit_of_work,
    )


BENCHMARKS = [
    _http_benchmark("http_events_batch",
                    "POST /api/v1/events, batches of 1,000, 4 connections, load from another process",
                    "events", EVENT_BATCHES, EVENT_CONCURRENCY, "200k events"),
    _http_benchmark("http_orders_single",
                    "POST /api/v1/orders, one order (2 lines) per request, 8 connections, SQLite",
                    "orders", ORDER_POSTS, ORDER_CONCURRENCY, "5k orders"),
]


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        shapes: dict[tuple[str, int], tuple[str, list[bytes]]] = {}
        loadgen.serve_commands(lambda command: _run_load(command, shapes))
    elif len(sys.argv) > 2 and sys.argv[1] == "serve-baseline":
        _serve_baseline(int(sys.argv[2]))
    else:
        from rich.console import Console

        from memberops.benchmarks import run_benchmarks

        run_benchmarks(HERE.parent, [b.name for b in BENCHMARKS], quick="--quick" in sys.argv, console=Console())
