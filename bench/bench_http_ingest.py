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

The load generator is a separate process (threads, each with its own keep-alive HTTP/1.1 connection over
a plain socket and the requests prepared in advance) fed commands over a pipe; it reports throughput and latency percentiles, printed after each timed run. Run with
``memberops bench http_events_batch http_orders_single`` (``--quick`` for a smoke run) or
``python bench/bench_http_ingest.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response

from memberops.benchmarks import Benchmark

BATCH = 1_000
RUN_TOKEN = "@@RUN@@"
HERE = Path(__file__).resolve()


# --- servers ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _memberops(*args: str, env: dict[str, str], **kwargs: Any) -> Any:
    executable = Path(sys.executable).with_name("memberops")
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "memberops.cli"]
    return subprocess.Popen([*command, *args], env=env, **kwargs)


def _wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server at {url} exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server at {url} did not become healthy in {timeout:.0f}s")


class Rig:
    """The two servers, the load generator and the figures of every run.

    (A plain class: the harness loads bench files without registering them, which dataclasses need.)
    """

    def __init__(self, root: Path, ours_url: str, baseline_url: str, key: str, quick: bool,
                 processes: list[subprocess.Popen[bytes]]) -> None:
        self.root, self.ours_url, self.baseline_url, self.key, self.quick = root, ours_url, baseline_url, key, quick
        self.processes = processes
        self.generator: subprocess.Popen[str] | None = None
        self.runs = 0
        self.figures: dict[str, list[dict[str, Any]]] = {}

    def load(self, url: str, mode: str, requests: int, concurrency: int) -> dict[str, Any]:
        assert self.generator is not None and self.generator.stdin and self.generator.stdout
        self.runs += 1
        command = {"url": url, "key": self.key, "mode": mode, "requests": requests, "concurrency": concurrency,
                   "run": f"r{self.runs}"}
        self.generator.stdin.write(json.dumps(command) + "\n")
        self.generator.stdin.flush()
        answer = self.generator.stdout.readline()
        if not answer:
            raise RuntimeError("the load generator exited")
        result: dict[str, Any] = json.loads(answer)
        if "error" in result:
            raise RuntimeError(result["error"])
        return result


def _start(quick: bool) -> Rig:
    root = Path(tempfile.mkdtemp(prefix="memberops-bench-http-"))
    env = {**os.environ, "MEMBEROPS_DATA_DIR": str(root / "data"), "MEMBEROPS_SECRET_KEY": "bench-secret"}
    env.pop("MEMBEROPS_DATABASE_URL", None)  # SQLite in the data directory, as the target says
    created = _memberops("keys", "create", "--scope", "ingest", "--name", "bench", env=env,
                         stdout=subprocess.PIPE, text=True)
    output, _ = created.communicate(timeout=120)
    if created.returncode != 0:
        raise RuntimeError(f"memberops keys create failed: {output}")
    key = output.strip().splitlines()[-1].split()[-1]
    ours_port, baseline_port = _free_port(), _free_port()
    quiet = subprocess.DEVNULL  # the access log is written, and thrown away
    ours = _memberops("serve", "--no-jobs", "--port", str(ours_port), env=env, stdout=quiet, stderr=quiet)
    baseline = subprocess.Popen([sys.executable, str(HERE), "serve-baseline", str(baseline_port)], env=env,
                                stdout=quiet, stderr=quiet)
    rig = Rig(root, f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{baseline_port}", key, quick,
              [ours, baseline])
    try:
        _wait_healthy(rig.ours_url, ours)
        _wait_healthy(rig.baseline_url, baseline)
        rig.generator = subprocess.Popen([sys.executable, str(HERE), "load"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True, env=env)
        rig.load(rig.ours_url, "customers", 1_000, 2)  # the buyers the orders will name, so they resolve
    except Exception:
        _stop(rig)
        raise
    return rig


def _stop(rig: Rig) -> None:
    if rig.generator is not None:
        rig.generator.stdin.close()  # type: ignore[union-attr]
        rig.generator.wait(timeout=30)
    for process in rig.processes:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
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


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class _Connection:
    """A minimal HTTP/1.1 keep-alive client over a socket: a Python HTTP client library costs more CPU per
    request than the servers under test, and would measure itself."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host = f"{host}:{port}"
        self.socket = socket.create_connection((host, int(port)))
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.pending = b""

    def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        self.socket.sendall(head + body)
        while b"\r\n\r\n" not in self.pending:
            self.pending += self._receive()
        headers, _, rest = self.pending.partition(b"\r\n\r\n")
        length = 0
        for line in headers.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self._receive()
        self.pending = rest[length:]
        return int(headers[9:12]), rest[:length]

    def _receive(self) -> bytes:
        chunk = self.socket.recv(1 << 20)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self.socket.close()


def _head(path: str, host: str, key: str, length: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode()


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
    bodies = [body.replace(token, run) for body in template]
    connections = [_Connection(command["url"]) for _ in range(command["concurrency"])]
    requests = [_head(path, connections[0].host, command["key"], len(body)) + body for body in bodies]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    accepted = 0
    next_index = iter(range(len(requests)))
    lock = threading.Lock()

    def worker(connection: _Connection) -> None:
        nonlocal accepted
        opened = connection
        mine: list[float] = []
        seen: dict[int, int] = {}
        kept = 0
        while True:
            with lock:
                index = next(next_index, None)
            if index is None:
                break
            started = time.perf_counter()
            try:
                status, body = connection.request(requests[index], b"")
            except OSError:  # counted, and the connection replaced: a failed request must show in the figures
                status, body = 599, b""
                connection.close()
                connection = _Connection(command["url"])
            mine.append(time.perf_counter() - started)
            seen[status] = seen.get(status, 0) + 1
            kept += _accepted(status, body)
        if connection is not opened:
            connection.close()
        with lock:
            latencies.extend(mine)
            for status, count in seen.items():
                statuses[status] = statuses.get(status, 0) + count
            accepted += kept

    threads = [threading.Thread(target=worker, args=(c,)) for c in connections]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    for connection in connections:
        connection.close()
    latencies.sort()
    items = len(bodies) * (BATCH if command["mode"] == "events" else 500 if command["mode"] == "customers" else 1)
    return {"requests": len(bodies), "items": items, "seconds": seconds, "accepted": accepted,
            "statuses": {str(k): v for k, v in statuses.items()},
            "p50_ms": _percentile(latencies, 0.50) * 1000, "p99_ms": _percentile(latencies, 0.99) * 1000}


def _generator() -> None:
    templates: dict[tuple[str, int], tuple[str, list[bytes]]] = {}
    for line in sys.stdin:
        try:
            result = _run_load(json.loads(line), templates)
        except Exception as exc:  # noqa: BLE001 - reported to the benchmark process, which raises it
            result = {"error": repr(exc)}
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


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
        _generator()
    elif len(sys.argv) > 2 and sys.argv[1] == "serve-baseline":
        _serve_baseline(int(sys.argv[2]))
    else:
        from rich.console import Console

        from memberops.benchmarks import run_benchmarks

        run_benchmarks(HERE.parent, [b.name for b in BENCHMARKS], quick="--quick" in sys.argv, console=Console())
