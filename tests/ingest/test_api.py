"""``POST /api/v1/customers|orders|refunds|events``: single items and batches, idempotency, problems,
and crash safety over HTTP — on every state store."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.db.outbox import OutboxRow
from memberops.ingest.api import get_live_hooks
from memberops.ingest.batch import import_file
from memberops.ingest.live import LiveHooks
from memberops.ingest.models import LiveOrder, LiveRefund, ReceivedKey
from memberops.ingest.schemas import MAX_BATCH
from memberops.runtime import Context
from tests.factories import make_key

WHEN = "2026-03-01T10:15:00+08:00"


def _app(context: Context) -> FastAPI:
    return create_app(context)


@pytest.fixture
def app(context: Context) -> FastAPI:
    return _app(context)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def auth(context: Context, workspace: Workspace) -> dict[str, str]:
    with context.store.transaction() as session:
        return {"Authorization": f"Bearer {make_key(session, workspace, 'ingest')}"}


def event(event_id: str = "e1", **fields: Any) -> dict[str, Any]:
    return {"channel": "app", "event_id": event_id, "type": "page_view", "customer_key": "c1", "occurred_at": WHEN,
            "properties": {"page": "/home"}, **fields}


def order(order_id: str = "o1", **fields: Any) -> dict[str, Any]:
    return {"channel": "pos", "order_id": order_id, "customer_key": "c1", "ordered_at": WHEN, "paid_amount": "100.00",
            "items": [{"line_no": 1, "sku": "SKU-1", "quantity": 1, "unit_price": "100.00", "amount": "100.00"}],
            **fields}


def refund(refund_id: str = "r1", **fields: Any) -> dict[str, Any]:
    return {"channel": "pos", "refund_id": refund_id, "order_id": "o1", "refunded_at": WHEN, "amount": "30.00",
            **fields}


def customer(source_id: str | None = "c1", **fields: Any) -> dict[str, Any]:
    return {"channel": "pos", "source_id": source_id, "phone": "+86 138 0013 8000", "first_name": "Li", **fields}


def counts(context: Context) -> dict[str, int]:
    with context.store.read() as session:
        return {model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
                for model in (LiveOrder, LiveRefund, ReceivedKey, OutboxRow)}


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["detail"]
    return body


class TestSingleItems:
    @pytest.mark.parametrize(("path", "item", "key"), [
        ("/api/v1/events", event(), "e1"), ("/api/v1/orders", order(), "o1"), ("/api/v1/customers", customer(), "c1"),
    ])
    def test_accepted_then_duplicate(self, client: TestClient, auth: dict[str, str], path: str,
                                     item: dict[str, Any], key: str) -> None:
        first = client.post(path, json=item, headers=auth)
        assert first.status_code == 201, first.text
        assert first.json()["status"] == "accepted" and first.json()["key"] == key
        again = client.post(path, json=item, headers=auth)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"

    def test_refund_accepted_then_duplicate(self, client: TestClient, auth: dict[str, str]) -> None:
        client.post("/api/v1/orders", json=order(), headers=auth)
        assert client.post("/api/v1/refunds", json=refund(), headers=auth).status_code == 201
        again = client.post("/api/v1/refunds", json=refund(), headers=auth)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"

    @pytest.mark.parametrize(("path", "item", "fields"), [
        ("/api/v1/events", event(occurred_at="2026-03-01T10:15:00", type="", colour="red"),
         {"occurred_at", "type", "colour"}),
        ("/api/v1/orders", order(paid_amount=19.999, ordered_at="yesterday", status="lost"),
         {"paid_amount", "ordered_at", "status"}),
        ("/api/v1/orders", order(paid_amount="-1", items=[{"line_no": 1, "sku": "s", "quantity": 1, "amount": "x"}]),
         {"paid_amount", "items.0.amount"}),
        ("/api/v1/refunds", refund(amount=None, order_id=""), {"amount", "order_id"}),
        ("/api/v1/customers", customer(source_id=None, email="not-an-email"), {"source_id", "email"}),
    ])
    def test_a_bad_item_is_422_naming_each_field(self, client: TestClient, auth: dict[str, str], context: Context,
                                                 path: str, item: dict[str, Any], fields: set[str]) -> None:
        body = problem(client.post(path, json=item, headers=auth), 422, "validation_error")
        assert {e["field"] for e in body["errors"]} == fields
        assert all(e["message"] for e in body["errors"])
        assert counts(context)["outbox"] == 0

    def test_a_time_without_zone_says_so(self, client: TestClient, auth: dict[str, str]) -> None:
        body = problem(client.post("/api/v1/events", json=event(occurred_at="2026-03-01 10:15"), headers=auth), 422,
                       "validation_error")
        assert "time zone is required" in body["errors"][0]["message"]

    def test_a_customer_with_a_bad_optional_field_is_kept_with_a_warning(
        self, client: TestClient, auth: dict[str, str]
    ) -> None:
        response = client.post("/api/v1/customers", json=customer(email="li@", birthday="1990-13-01"), headers=auth)
        assert response.status_code == 201, response.text
        assert sorted(w["field"] for w in response.json()["warnings"]) == ["birthday", "email"]
        assert response.json()["member_id"]

    def test_not_json(self, client: TestClient, auth: dict[str, str]) -> None:
        problem(client.post("/api/v1/events", content=b"{nope", headers=auth), 422, "validation_error")
        problem(client.post("/api/v1/events", json=[1, 2], headers=auth), 422, "validation_error")


class TestAccess:
    def test_no_key(self, client: TestClient, workspace: Workspace) -> None:
        problem(client.post("/api/v1/events", json=event()), 401, "authentication_failed")

    def test_a_bad_body_without_a_key_is_still_401(self, client: TestClient, workspace: Workspace) -> None:
        problem(client.post("/api/v1/events", content=b"{nope"), 401, "authentication_failed")

    def test_wrong_scope(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            key = make_key(session, workspace, "read")
        problem(client.post("/api/v1/orders", json=order(), headers={"Authorization": f"Bearer {key}"}), 403,
                "missing_scope")


class TestBatches:
    def test_good_items_are_kept_and_bad_ones_reported_in_order(
        self, client: TestClient, auth: dict[str, str], context: Context
    ) -> None:
        items = [event("e1"), event("e2", occurred_at="2026-03-01T10:15:00"), event("e3"), "nonsense", event("e1")]
        response = client.post("/api/v1/events", json={"items": items}, headers=auth)
        assert response.status_code == 200, response.text
        body = response.json()
        assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "accepted", "rejected", "duplicate"]
        assert [r["index"] for r in body["results"]] == [0, 1, 2, 3, 4]
        assert body["results"][1]["errors"][0]["field"] == "occurred_at"
        assert body["results"][1]["key"] == "e2"
        assert body["totals"] == {"accepted": 2, "duplicate": 1, "rejected": 2}
        assert counts(context)["received_key"] == 2 and counts(context)["outbox"] == 2

    def test_replay_of_a_whole_batch_changes_nothing(
        self, client: TestClient, auth: dict[str, str], context: Context
    ) -> None:
        batches = {
            "/api/v1/customers": [customer(f"c{i}") for i in range(3)],
            "/api/v1/orders": [order(f"o{i}") for i in range(3)],
            "/api/v1/refunds": [refund(f"r{i}", order_id=f"o{i}") for i in range(3)],
            "/api/v1/events": [event(f"e{i}") for i in range(3)],
        }
        for path, items in batches.items():
            assert client.post(path, json={"items": items}, headers=auth).json()["totals"]["accepted"] == 3
        before = counts(context)
        for path, items in batches.items():
            body = client.post(path, json={"items": items}, headers=auth).json()
            assert body["totals"] == {"accepted": 0, "duplicate": 3, "rejected": 0}, path
        assert counts(context) == before
        assert before == {"live_order": 3, "live_refund": 3, "received_key": 3, "outbox": 3 + 6 + 3 + 3}

    def test_a_batch_of_the_limit_is_fine_and_one_more_is_refused(
        self, client: TestClient, auth: dict[str, str], context: Context
    ) -> None:
        items = [event(f"e{i}") for i in range(MAX_BATCH)]
        assert client.post("/api/v1/events", json={"items": items}, headers=auth).json()["totals"]["accepted"] == MAX_BATCH
        body = problem(client.post("/api/v1/events", json={"items": [*items, event("x")]}, headers=auth), 422,
                       "batch_too_large")
        assert body["facts"] == {"size": MAX_BATCH + 1, "limit": MAX_BATCH}
        assert counts(context)["received_key"] == MAX_BATCH

    def test_orders_resolve_their_buyer(self, client: TestClient, auth: dict[str, str], context: Context) -> None:
        member_id = client.post("/api/v1/customers", json=customer("c1"), headers=auth).json()["member_id"]
        body = client.post("/api/v1/orders", json={"items": [order("o1"), order("o2", customer_key="c2")]},
                           headers=auth).json()
        assert [r["member_id"] for r in body["results"]] == [member_id, None]
        with context.store.read() as session:
            assert dict(session.execute(select(LiveOrder.order_id, LiveOrder.member_id)).all()) == {
                "o1": member_id, "o2": None}


class TestRefunds:
    def test_a_refund_exceeding_the_order_is_409(self, client: TestClient, auth: dict[str, str]) -> None:
        client.post("/api/v1/orders", json=order(paid_amount="50.00"), headers=auth)
        client.post("/api/v1/refunds", json=refund("r1", amount="30.00"), headers=auth)
        body = problem(client.post("/api/v1/refunds", json=refund("r2", amount="30.00"), headers=auth), 409,
                       "refund_exceeds_order")
        assert body["facts"] == {"order_id": "o1", "requested": "30.00", "refundable": "20.00"}

    def test_a_refund_of_an_unknown_order_is_404(self, client: TestClient, auth: dict[str, str]) -> None:
        problem(client.post("/api/v1/refunds", json=refund(order_id="nope"), headers=auth), 404, "order_not_found")

    def test_a_refund_of_an_order_imported_in_bulk_is_accepted(
        self, client: TestClient, auth: dict[str, str], context: Context, workspace: Workspace, tmp_path: Any
    ) -> None:
        path = tmp_path / "orders.csv"
        path.write_text("order_id,customer_key,ordered_at,paid_amount\nold-1,c1,2025-11-11 20:00:00,80.00\n")
        import_file(context, workspace, kind_name="orders", path=path, channel="pos")
        response = client.post("/api/v1/refunds", json=refund("r1", order_id="old-1", amount="80.00"), headers=auth)
        assert response.status_code == 201, response.text
        problem(client.post("/api/v1/refunds", json=refund("r2", order_id="old-1", amount="0.01"), headers=auth),
                409, "refund_exceeds_order")

    def test_in_a_batch_they_are_rejections_with_reasons(
        self, client: TestClient, auth: dict[str, str], context: Context
    ) -> None:
        client.post("/api/v1/orders", json=order(paid_amount="50.00"), headers=auth)
        items = [refund("r1", amount="30.00"), refund("r2", amount="30.00"), refund("r3", order_id="nope"),
                 refund("r4", amount="20.00")]
        body = client.post("/api/v1/refunds", json={"items": items}, headers=auth).json()
        assert [(r["status"], [e["code"] for e in r["errors"]]) for r in body["results"]] == [
            ("accepted", []), ("rejected", ["refund_exceeds_order"]), ("rejected", ["order_not_found"]),
            ("accepted", [])]
        with context.store.read() as session:
            assert str(session.scalar(select(LiveOrder.refunded_amount))) == "50.00"


class TestConcurrentPosts:
    def test_many_at_once_keep_each_order_once(self, app: FastAPI, auth: dict[str, str], context: Context) -> None:
        """More concurrent requests than worker threads and pooled connections, half of them replays: no
        "database is locked", no requests waiting on each other for ever, each order kept once."""

        async def post_all() -> list[int]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=auth) as client:
                responses = await asyncio.gather(*(client.post("/api/v1/orders", json=order(f"o{i % 30}"))
                                                   for i in range(60)))
            return sorted(r.status_code for r in responses)

        assert asyncio.run(asyncio.wait_for(post_all(), timeout=60)) == [200] * 30 + [201] * 30
        assert counts(context)["live_order"] == 30 and counts(context)["outbox"] == 60


    def test_each_request_of_a_group_gets_its_own_answer(
        self, app: FastAPI, auth: dict[str, str], context: Context
    ) -> None:
        """Single posts waiting for SQLite's writer are committed together (group commit): each is still
        answered with its own outcome, and a request that fails — a hook raising, a bad key, a bad body —
        fails alone."""

        def fail_on_boom(_session: Any, order_row: LiveOrder, *_args: Any) -> None:
            if order_row.order_id == "boom":
                raise RuntimeError("loyalty is down")

        app.dependency_overrides[get_live_hooks] = lambda: LiveHooks(on_order_accepted=(fail_on_boom,))
        requests = [(order(f"g{i}"), auth) for i in range(8)] + [
            (order("boom"), auth), (order("g0"), auth), (order("x1"), {"Authorization": "Bearer mo_nope_nope"}),
            (order("x2", paid_amount="-1"), auth)]

        async def post_all() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return list(await asyncio.gather(*(client.post("/api/v1/orders", json=body, headers=headers)
                                                   for body, headers in requests)))

        responses = asyncio.run(asyncio.wait_for(post_all(), timeout=60))
        app.dependency_overrides.clear()
        # g0 is posted twice: one of the two is accepted, the other is its replay (which one is up to the
        # store: PostgreSQL runs them concurrently)
        assert sorted([responses[0].status_code, responses[9].status_code]) == [200, 201]
        assert {responses[0].json()["status"], responses[9].json()["status"]} == {"accepted", "duplicate"}
        assert [r.status_code for r in responses[1:8]] == [201] * 7
        assert [r.json()["key"] for r in (*responses[:8], responses[9])] == [*(f"g{i}" for i in range(8)), "g0"]
        assert all(r.json()["index"] == 0 for r in (*responses[:8], responses[9]))
        assert [r.status_code for r in responses[8:]] == [500, responses[9].status_code, 401, 422]
        with context.store.read() as session:
            kept = set(session.scalars(select(LiveOrder.order_id)))
        assert kept == {f"g{i}" for i in range(8)}


class TestCrashSafety:
    def test_a_failure_after_writes_rolls_back_the_request(
        self, app: FastAPI, client: TestClient, auth: dict[str, str], context: Context
    ) -> None:
        def fail(*_args: Any) -> None:
            raise RuntimeError("loyalty is down")

        app.dependency_overrides[get_live_hooks] = lambda: LiveHooks(on_order_accepted=(fail,))
        before = counts(context)
        response = client.post("/api/v1/orders", json={"items": [order("o1"), order("o2")]}, headers=auth)
        assert response.status_code == 500
        assert counts(context) == before  # no order, no line, no outbox row
        app.dependency_overrides.clear()
        assert client.post("/api/v1/orders", json=order("o1"), headers=auth).status_code == 201


class TestOpenAPI:
    def test_endpoints_document_their_bodies_and_problems(self, client: TestClient) -> None:
        spec = client.get("/openapi.json").json()
        for kind in ("customers", "orders", "refunds", "events"):
            operation = spec["paths"][f"/api/v1/{kind}"]["post"]
            assert {"200", "201", "401", "403", "422"} <= set(operation["responses"])
            assert len(operation["requestBody"]["content"]["application/json"]["schema"]["oneOf"]) == 2
        assert {"404", "409"} <= set(spec["paths"]["/api/v1/refunds"]["post"]["responses"])
