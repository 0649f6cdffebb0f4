"""The loyalty contract over HTTP (issue 6, "Interface"), on every state store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.runtime import Context
from tests.factories import make_key

WHEN = "2026-03-01T10:15:00+08:00"


@pytest.fixture
def client(context: Context) -> Iterator[TestClient]:
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield client


def headers(context: Context, workspace: Workspace, *scopes: str) -> dict[str, str]:
    with context.store.transaction() as session:
        return {"Authorization": f"Bearer {make_key(session, workspace, *scopes)}"}


@pytest.fixture
def pos(context: Context, workspace: Workspace) -> dict[str, str]:
    return headers(context, workspace, "loyalty", "ingest", "read")


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    return body


def enrol(client: TestClient, auth: dict[str, str], **body: Any) -> Any:
    return client.post("/api/v1/members", json={"phone": "+8613800000001", "first_name": "Li", "last_name": "Wei",
                                                **body}, headers=auth)


class TestEnrolment:
    def test_enrol_then_enrol_again(self, client: TestClient, pos: dict[str, str]) -> None:
        first = enrol(client, pos)
        assert first.status_code == 201, first.text
        body = first.json()
        assert body["member_id"] == body["member"]["id"] and body["member"]["is_enrolled"]
        assert body["membership"]["programme_version"] == 1 and body["membership"]["status"] == "active"
        again = enrol(client, pos, phone="138 0000 0001")  # the same phone, written differently
        assert again.status_code == 200
        assert again.json()["member_id"] == body["member_id"] and again.json()["is_duplicate"]

    def test_a_channel_record_enrols_its_person(self, client: TestClient, pos: dict[str, str]) -> None:
        body = client.post("/api/v1/members", json={"channel": "pos", "source_id": "c1", "phone": "13800138001"},
                           headers=pos).json()
        order = client.post("/api/v1/orders", json={"channel": "pos", "order_id": "o1", "customer_key": "c1",
                                                    "ordered_at": WHEN, "paid_amount": "99.90"}, headers=pos)
        assert order.json()["member_id"] == body["member_id"] and order.json()["points_earned"] == 99

    def test_someone_to_enrol_is_needed(self, client: TestClient, pos: dict[str, str]) -> None:
        problem(client.post("/api/v1/members", json={"first_name": "Li"}, headers=pos), 422, "identifier_required")

    def test_enrolment_needs_the_loyalty_or_ingest_scope(self, client: TestClient, context: Context,
                                                           workspace: Workspace) -> None:
        problem(enrol(client, headers(context, workspace, "read")), 403, "missing_scope")
        assert enrol(client, headers(context, workspace, "ingest")).status_code == 201


class TestPoints:
    @pytest.fixture
    def member(self, client: TestClient, pos: dict[str, str]) -> str:
        member_id: str = client.post("/api/v1/members", json={"channel": "pos", "source_id": "c1"},
                                     headers=pos).json()["member_id"]
        order = client.post("/api/v1/orders", json={"channel": "pos", "order_id": "o1", "customer_key": "c1",
                                                    "ordered_at": WHEN, "paid_amount": "250.00"}, headers=pos)
        assert order.status_code == 201 and order.json()["points_earned"] == 250
        return member_id

    def test_balance(self, client: TestClient, pos: dict[str, str], member: str) -> None:
        body = client.get(f"/api/v1/members/{member}/points", headers=pos).json()
        assert body == {"available": 250, "pending": 0, "debt": 0, "tier": None,
                        "expiring": [{"expires_at": "2027-03-01T02:15:00Z", "points": 250}]}

    def test_redeem_replay_and_insufficient(self, client: TestClient, pos: dict[str, str], member: str) -> None:
        url = f"/api/v1/members/{member}/points/redeem"
        first = client.post(url, json={"points": 100, "reason": "voucher", "idempotency_key": "pos-1-0001"}, headers=pos)
        assert first.status_code == 200
        assert first.json()["balance"] == {"available": 150, "pending": 0, "debt": 0}
        replay = client.post(url, json={"points": 100, "reason": "voucher", "idempotency_key": "pos-1-0001"},
                             headers=pos)
        assert replay.status_code == 200 and replay.json()["is_replay"]
        assert replay.json()["movement"]["id"] == first.json()["movement"]["id"]
        body = problem(client.post(url, json={"points": 151, "reason": "", "idempotency_key": "pos-1-0002"},
                                   headers=pos), 409, "insufficient_points")
        assert body["facts"]["available"] == 150
        problem(client.post(url, json={"points": 99, "idempotency_key": "pos-1-0001"}, headers=pos), 409,
                "idempotency_key_reused")
        assert client.get(f"/api/v1/members/{member}/points", headers=pos).json()["available"] == 150

    def test_redeem_validation(self, client: TestClient, pos: dict[str, str], member: str) -> None:
        url = f"/api/v1/members/{member}/points/redeem"
        body = problem(client.post(url, json={"points": 0}, headers=pos), 422, "validation_error")
        assert {e["field"] for e in body["errors"]} == {"points", "idempotency_key"}

    def test_refund_reverses(self, client: TestClient, pos: dict[str, str], member: str) -> None:
        refund = client.post("/api/v1/refunds", json={"channel": "pos", "refund_id": "r1", "order_id": "o1",
                                                      "refunded_at": WHEN, "amount": "100.00"}, headers=pos)
        assert refund.status_code == 201 and refund.json()["points_reversed"] == 100
        assert client.get(f"/api/v1/members/{member}/points", headers=pos).json()["available"] == 150

    def test_adjust_is_for_admins(self, client: TestClient, context: Context, workspace: Workspace,
                                  pos: dict[str, str], member: str) -> None:
        url = f"/api/v1/members/{member}/points/adjust"
        body = {"points": -50, "reason": "duplicate order", "idempotency_key": "adj-1"}
        problem(client.post(url, json=body, headers=pos), 403, "missing_scope")
        admin = headers(context, workspace, "admin")
        assert client.post(url, json=body, headers=admin).json()["balance"]["available"] == 200
        assert client.post(url, json={**body, "points": 0}, headers=admin).status_code == 422
        audit = client.get("/api/v1/audit", headers=admin).json()
        assert audit[0]["action"] == "loyalty.points.adjust" and audit[0]["detail"]["points"] == -50

    def test_ledger_pages(self, client: TestClient, pos: dict[str, str], member: str) -> None:
        for n in range(3):
            client.post(f"/api/v1/members/{member}/points/redeem",
                        json={"points": 10, "idempotency_key": f"k{n}"}, headers=pos)
        first = client.get(f"/api/v1/members/{member}/points/ledger?limit=2", headers=pos).json()
        assert [m["kind"] for m in first["items"]] == ["redeem", "redeem"]
        rest = client.get(f"/api/v1/members/{member}/points/ledger?limit=2&before={first['next_cursor']}",
                          headers=pos).json()
        assert [(m["kind"], m["points"]) for m in rest["items"]] == [("redeem", 10), ("earn", 250)]

    def test_unknown_and_unenrolled_members(self, client: TestClient, pos: dict[str, str]) -> None:
        problem(client.get("/api/v1/members/nope/points", headers=pos), 404, "member_not_found")
        person = client.post("/api/v1/customers", json={"channel": "pos", "source_id": "x"}, headers=pos).json()
        problem(client.get(f"/api/v1/members/{person['member_id']}/points", headers=pos), 409, "member_not_enrolled")

    def test_liability(self, client: TestClient, pos: dict[str, str], member: str) -> None:
        body = client.get("/api/v1/loyalty/liability", headers=pos).json()
        assert body["points"] == 250 and body["value"] == "2.50"
        assert body["by_expiry_month"] == [{"month": "2027-03", "points": 250, "value": "2.50"}]


class TestProgramme:
    def test_read_and_replace(self, client: TestClient, context: Context, workspace: Workspace) -> None:
        admin = headers(context, workspace, "admin")
        current = client.get("/api/v1/loyalty/programme", headers=admin).json()
        assert current["version"] == 1 and current["programme"]["earn"]["points_per_unit"] == "1"
        changed = {**current["programme"], "earn": {**current["programme"]["earn"], "points_per_unit": "2"}}
        saved = client.put("/api/v1/loyalty/programme", json=changed, headers=admin)
        assert saved.json()["version"] == 2
        assert client.get("/api/v1/audit", headers=admin).json()[0]["action"] == "loyalty.programme.update"
        body = problem(client.put("/api/v1/loyalty/programme", json={"earn": {"rounding": "up"}}, headers=admin),
                       422, "invalid_programme")
        assert body["facts"]["errors"][0]["field"] == "earn.rounding"

    def test_openapi_documents_the_conflicts(self, client: TestClient) -> None:
        spec = client.get("/openapi.json").json()
        redeem = spec["paths"]["/api/v1/members/{member_id}/points/redeem"]["post"]["responses"]
        assert "insufficient_points" in redeem["409"]["description"]
