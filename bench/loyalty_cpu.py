"""CPU per earn/redeem transaction in-process: the loyalty benchmark's mix through the ASGI app, one request
at a time, timed with the process's CPU clock (less noisy than the HTTP benchmark on a shared machine).

Not a benchmark module (its name does not start with ``bench_``). Run from a checkout::

    PYTHONPATH=$PWD/src python bench/loyalty_cpu.py sqlite|postgresql [TRANSACTIONS] [PROFILE_OUT]

PostgreSQL uses ``MEMBEROPS_BENCH_DATABASE_URL``'s server (a database is created and dropped). With
``PROFILE_OUT`` the timed part runs under cProfile, with the writes run inline instead of in the threadpool
(cProfile sees one thread only), and the statistics are written there.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

MEMBERS = 1_000


def _store_url(kind: str, root: str) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite:///{root}/data/memberops.db", None
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(os.environ["MEMBEROPS_BENCH_DATABASE_URL"])
    name = f"memberops_cpu_{uuid.uuid4().hex[:10]}"
    admin = url.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False), admin


def _order(index: int, run: str) -> tuple[str, dict[str, Any]]:
    return "/api/v1/orders", {
        "channel": "pos", "order_id": f"{run}-{index}", "customer_key": f"c{index % MEMBERS}",
        "ordered_at": "2026-03-01T10:15:00+08:00", "paid_amount": "119.00",
        "items": [{"line_no": 1, "sku": f"SKU-{index % 300}", "quantity": 1, "amount": "119.00"}],
    }


def main(kind: str, count: int, profile_out: str | None) -> None:
    root = tempfile.mkdtemp(prefix="memberops-cpu-")
    url, admin = _store_url(kind, root)
    os.environ.update(MEMBEROPS_DATA_DIR=f"{root}/data", MEMBEROPS_SECRET_KEY="bench", MEMBEROPS_DATABASE_URL=url)
    from memberops.accounts import service as accounts
    from memberops.api import deps
    from memberops.api.app import create_app
    from memberops.audit.service import Actor
    from memberops.config import Settings
    from memberops.db import migrate
    from memberops.runtime import Context

    context = Context.from_settings(Settings())
    migrate.upgrade(context.store)
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session)
        key = accounts.create_api_key(session, workspace, name="cpu", scopes=["loyalty", "ingest"],
                                      actor=Actor("cli", "bench")).key
    app = create_app(context, run_jobs=False)
    if profile_out:
        async def inline(function: Any, *args: Any, **kwargs: Any) -> Any:
            return function(*args, **kwargs)

        deps.run_in_threadpool = inline  # type: ignore[assignment]
    headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {key}".encode()),
               (b"content-type", b"application/json")]

    async def call(path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        raw = json.dumps(body).encode()
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [*headers, (b"content-length", str(len(raw)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {}}
        messages = [{"type": "http.request", "body": raw, "more_body": False}]
        answer: dict[str, Any] = {"body": b""}

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")

        await app(scope, receive, send)
        return answer["status"], answer["body"]

    def mixed(size: int, run: str, members: list[str]) -> list[tuple[str, dict[str, Any]]]:
        return [_order(i, run) if i % 2 == 0 else
                (f"/api/v1/members/{members[(i // 2) % MEMBERS]}/points/redeem",
                 {"points": 5, "reason": "bench", "idempotency_key": f"{run}-{i}"}) for i in range(size)]

    async def run() -> None:
        members = []
        for i in range(MEMBERS):
            _, answer = await call("/api/v1/members", {"channel": "pos", "source_id": f"c{i}",
                                                       "phone": f"+86139{i:08d}"})
            members.append(json.loads(answer)["member_id"])
        for i in range(MEMBERS):
            await call(*_order(i, "first"))
        for path, body in mixed(200, "warm", members):
            await call(path, body)
        requests = mixed(count, "timed", members)
        profile = cProfile.Profile() if profile_out else None
        statuses: dict[int, int] = {}
        cpu, wall = time.process_time(), time.perf_counter()
        if profile:
            profile.enable()
        for path, body in requests:
            status, _ = await call(path, body)
            statuses[status] = statuses.get(status, 0) + 1
        if profile is not None and profile_out:
            profile.disable()
            profile.dump_stats(profile_out)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        print(f"{kind}: {count} transactions, CPU {1000 * cpu / count:.3f} ms each, wall {1000 * wall / count:.3f} ms "
              f"each, statuses {statuses}, load {os.getloadavg()[0]:.2f}")

    try:
        asyncio.run(run())
    finally:
        context.close()
        if admin is not None:
            import psycopg
            from sqlalchemy.engine import make_url

            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4_000, sys.argv[3] if len(sys.argv) > 3 else None)
