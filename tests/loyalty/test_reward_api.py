"""The rewards HTTP contract — on every state store: the catalogue (``/rewards``), redeeming with its
stable 409 codes and replays, a member's redemptions, cancelling and fulfilling a redemption."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.runtime import Context
from tests.factories import make_key
from tests.loyalty.test_coupon_api import problem

TOTE = {"code": "TOTE", "name": "Canvas tote", "kind": "item", "points": 100, "cash_amount": "9.90", "stock": 2,
        "per_member_limit": 3}


@pytest.fixture
def client(context: Context) -> Iterator[TestClient]:
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def keys(context: Context, workspace: Workspace) -> dict[str, dict[str, str]]:
    with context.store.transaction() as session:
        return {scope: {"Authorization": f"Bearer {make_key(session, workspace, scope)}"}
                for scope in ("admin", "loyalty", "read")}


def member_with(client: TestClient, keys: dict[str, dict[str, str]], source_id: str, held: int) -> str:
    member: str = client.post("/api/v1/members", json={"channel": "pos", "source_id": source_id},
                              headers=keys["loyalty"]).json()["member_id"]
    response = client.post(f"/api/v1/members/{member}/points/adjust", headers=keys["admin"],
                           json={"points": held, "reason": "test", "idempotency_key": f"fund-{source_id}"})
    assert response.status_code == 200, response.text
    return member


def test_the_catalogue(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    created = client.post("/api/v1/rewards", json=TOTE, headers=keys["admin"])
    assert created.status_code == 201, created.text
    assert created.json()["remaining_stock"] == 2 and created.json()["currency"] == "CNY"
    problem(client.post("/api/v1/rewards", json=TOTE, headers=keys["admin"]), 409, "reward_exists")
    problem(client.post("/api/v1/rewards", json=TOTE, headers=keys["loyalty"]), 403, "missing_scope")
    bad = problem(client.post("/api/v1/rewards", json={**TOTE, "code": "X", "kind": "coupon"}, headers=keys["admin"]),
                  422, "validation_error")
    assert "coupon_template" in bad["errors"][0]["message"]
    problem(client.post("/api/v1/rewards", json={**TOTE, "code": "X", "kind": "coupon", "coupon_template": "NONE"},
                        headers=keys["admin"]), 422, "invalid_reward")
    put = client.put("/api/v1/rewards/TOTE", json={**TOTE, "points": 120, "is_active": False}, headers=keys["admin"])
    assert put.status_code == 200 and (put.json()["version"], put.json()["points"]) == (2, 120)
    problem(client.put("/api/v1/rewards/NONE", json={**TOTE, "code": "NONE"}, headers=keys["admin"]), 404,
            "reward_not_found")
    listed = client.get("/api/v1/rewards", headers=keys["read"]).json()
    assert [r["code"] for r in listed] == ["TOTE"]
    assert client.get("/api/v1/rewards?active_only=true", headers=keys["read"]).json() == []


def test_redeem_cancel_and_fulfil(client: TestClient, keys: dict[str, dict[str, str]]) -> None:
    assert client.post("/api/v1/rewards", json=TOTE, headers=keys["admin"]).status_code == 201
    rich, poor, other = (member_with(client, keys, "c1", 1000), member_with(client, keys, "c2", 50),
                         member_with(client, keys, "c3", 1000))
    pos = keys["loyalty"]

    def redeem(member: str, key: str, quantity: int = 1, code: str = "TOTE") -> Any:
        return client.post(f"/api/v1/members/{member}/rewards/{code}/redeem", headers=pos,
                           json={"quantity": quantity, "idempotency_key": key})

    first = redeem(rich, "k1")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["balance"]["available"] == 900 and body["is_replay"] is False
    assert (body["redemption"]["cash_amount"], body["redemption"]["fulfilment_status"]) == ("9.90", "pending")
    replay = redeem(rich, "k1")
    assert replay.status_code == 200 and replay.json()["is_replay"] and replay.json()["balance"]["available"] == 900
    problem(redeem(rich, "k1", quantity=2), 409, "idempotency_key_reused")
    problem(redeem(poor, "p1"), 409, "insufficient_points")
    problem(redeem(other, "o1", quantity=2), 409, "reward_out_of_stock")
    problem(redeem(rich, "k2", quantity=3), 409, "reward_limit_reached")
    problem(redeem(rich, "k3", code="NONE"), 404, "reward_not_found")
    problem(redeem("nobody", "k4"), 404, "member_not_found")
    assert redeem(other, "o2").status_code == 201
    problem(redeem(rich, "k5"), 409, "reward_out_of_stock")

    mine = client.get(f"/api/v1/members/{rich}/rewards", headers=keys["read"]).json()["items"]
    assert [(r["reward_code"], r["points"], r["status"]) for r in mine] == [("TOTE", 100, "completed")]
    redemption = mine[0]["id"]
    problem(client.post(f"/api/v1/reward-redemptions/{redemption}/cancel", json={"reason": "x"},
                        headers=keys["read"]), 403, "missing_scope")
    cancelled = client.post(f"/api/v1/reward-redemptions/{redemption}/cancel", json={"reason": "wrong size"}, headers=pos)
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["points_returned"], cancelled.json()["redemption"]["status"]) == (100, "cancelled")
    again = client.post(f"/api/v1/reward-redemptions/{redemption}/cancel", json={"reason": "again"}, headers=pos)
    assert again.status_code == 200 and again.json()["is_replay"]
    assert client.get(f"/api/v1/members/{rich}/points", headers=keys["read"]).json()["available"] == 1000
    assert client.get("/api/v1/rewards/TOTE", headers=keys["read"]).json()["remaining_stock"] == 1

    (theirs,) = client.get(f"/api/v1/members/{other}/rewards", headers=keys["read"]).json()["items"]
    fulfil = f"/api/v1/reward-redemptions/{theirs['id']}/fulfilment"
    shipped = client.post(fulfil, json={"status": "shipped", "note": "SF1234"}, headers=pos)
    assert shipped.status_code == 200 and shipped.json()["fulfilment_status"] == "shipped"
    problem(client.post(f"/api/v1/reward-redemptions/{theirs['id']}/cancel", json={"reason": "late"}, headers=pos),
            409, "reward_redemption_not_cancellable")
    assert client.post(fulfil, json={"status": "collected"}, headers=pos).json()["fulfilment_status"] == "collected"
    problem(client.post(fulfil, json={"status": "shipped"}, headers=pos), 409, "fulfilment_not_allowed")
    problem(client.post("/api/v1/reward-redemptions/nope/cancel", json={"reason": "x"}, headers=pos), 404,
            "reward_redemption_not_found")
