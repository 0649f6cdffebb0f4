"""The coupon and benefit HTTP contract, and coupons on live orders and refunds — on every state store."""

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
TEMPLATE = {"code": "SPRING-20", "name": "Spring 20 off",
            "terms": {"kind": "amount_off", "amount_off": "20", "valid_days": 30, "min_spend": "50"}}


@pytest.fixture
def client(context: Context) -> Iterator[TestClient]:
    with TestClient(create_app(context), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def keys(context: Context, workspace: Workspace) -> dict[str, dict[str, str]]:
    with context.store.transaction() as session:
        return {scope: {"Authorization": f"Bearer {make_key(session, workspace, scope)}"}
                for scope in ("admin", "loyalty", "ingest", "read")}


@pytest.fixture
def member_id(client: TestClient, keys: dict[str, dict[str, str]]) -> str:
    response = client.post("/api/v1/customers", headers=keys["ingest"],
                           json={"channel": "pos", "source_id": "c1", "phone": "+86 138 0013 8000"})
    assert response.status_code == 201, response.text
    return str(response.json()["member_id"])


@pytest.fixture
def coupon_code(client: TestClient, keys: dict[str, dict[str, str]], member_id: str) -> str:
    assert client.post("/api/v1/coupon-templates", headers=keys["admin"], json=TEMPLATE).status_code == 201
    response = client.post("/api/v1/coupons/issue", headers=keys["loyalty"],
                           json={"template": "SPRING-20", "member_id": member_id, "idempotency_key": "issue-1"})
    assert response.status_code == 201, response.text
    return str(response.json()["code"])


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["detail"]
    return body


def redeem_body(member_id: str, **fields: Any) -> dict[str, Any]:
    return {"member_id": member_id, "channel": "pos", "store_id": "S1", "amount": "120.00", "order_id": "o1", **fields}


class TestTemplates:
    def test_admin_writes_others_read(self, client: TestClient, keys: dict[str, dict[str, str]]) -> None:
        problem(client.post("/api/v1/coupon-templates", headers=keys["loyalty"], json=TEMPLATE), 403, "missing_scope")
        created = client.post("/api/v1/coupon-templates", headers=keys["admin"], json=TEMPLATE)
        assert created.status_code == 201 and created.json()["version"] == 1
        problem(client.post("/api/v1/coupon-templates", headers=keys["admin"], json=TEMPLATE), 409,
                "coupon_template_exists")
        changed = client.patch("/api/v1/coupon-templates/SPRING-20", headers=keys["admin"],
                               json={"terms": {**TEMPLATE["terms"], "amount_off": "25"}})  # type: ignore[dict-item]
        assert changed.json()["version"] == 2 and changed.json()["terms"]["amount_off"] == "25"
        listed = client.get("/api/v1/coupon-templates", headers=keys["read"]).json()
        assert [t["code"] for t in listed] == ["SPRING-20"]
        problem(client.get("/api/v1/coupon-templates/NOPE", headers=keys["read"]), 404, "coupon_template_not_found")

    def test_bad_terms_name_the_field(self, client: TestClient, keys: dict[str, dict[str, str]]) -> None:
        body = {**TEMPLATE, "terms": {"kind": "percent_off", "valid_days": 3}}
        errors = problem(client.post("/api/v1/coupon-templates", headers=keys["admin"], json=body), 422,
                         "validation_error")["errors"]
        assert "needs percent_off" in errors[0]["message"] and errors[0]["field"] == "terms"


class TestIssueAndRedeem:
    def test_issue_replay_is_the_same_coupon(self, client: TestClient, keys: dict[str, dict[str, str]],
                                             member_id: str, coupon_code: str) -> None:
        again = client.post("/api/v1/coupons/issue", headers=keys["loyalty"],
                            json={"template": "SPRING-20", "member_id": member_id, "idempotency_key": "issue-1"})
        assert again.status_code == 200 and again.json()["code"] == coupon_code
        problem(client.post("/api/v1/coupons/issue", headers=keys["loyalty"],
                            json={"template": "SPRING-20", "member_id": "nobody", "idempotency_key": "x"}),
                404, "member_not_found")

    def test_redeem_once_replay_then_409_with_the_reason(
        self, client: TestClient, keys: dict[str, dict[str, str]], member_id: str, coupon_code: str
    ) -> None:
        url = f"/api/v1/coupons/{coupon_code.lower()}/redeem"
        first = client.post(url, headers=keys["loyalty"], json=redeem_body(member_id))
        assert first.status_code == 200, first.text
        assert first.json()["discount"] == "20.00" and first.json()["is_replay"] is False
        replay = client.post(url, headers=keys["loyalty"], json=redeem_body(member_id))
        assert replay.status_code == 200 and replay.json()["is_replay"] is True
        body = problem(client.post(url, headers=keys["loyalty"], json=redeem_body(member_id, order_id="o2")), 409,
                       "coupon_not_redeemable")
        assert body["facts"]["reason"] == "already_redeemed"
        coupon = client.get(f"/api/v1/coupons/{coupon_code}", headers=keys["read"]).json()
        assert coupon["status"] == "redeemed" and coupon["template_code"] == "SPRING-20"

    def test_below_minimum_spend_and_wrong_scope(
        self, client: TestClient, keys: dict[str, dict[str, str]], member_id: str, coupon_code: str
    ) -> None:
        url = f"/api/v1/coupons/{coupon_code}/redeem"
        body = problem(client.post(url, headers=keys["loyalty"], json=redeem_body(member_id, amount="49.99")), 409,
                       "coupon_not_redeemable")
        assert body["facts"]["reason"] == "below_minimum_spend"
        problem(client.post(url, headers=keys["read"], json=redeem_body(member_id)), 403, "missing_scope")
        problem(client.post(url, headers=keys["loyalty"], json=redeem_body(member_id, order_id=None)), 422,
                "validation_error")
        problem(client.post("/api/v1/coupons/NOPE/redeem", headers=keys["loyalty"], json=redeem_body(member_id)), 404,
                "coupon_not_found")

    def test_member_coupons_and_void(self, client: TestClient, keys: dict[str, dict[str, str]], member_id: str,
                                     coupon_code: str) -> None:
        listed = client.get(f"/api/v1/members/{member_id}/coupons", headers=keys["loyalty"]).json()["items"]
        assert [c["code"] for c in listed] == [coupon_code]
        voided = client.post(f"/api/v1/coupons/{coupon_code}/void", headers=keys["admin"], json={"reason": "mistake"})
        assert voided.json()["status"] == "voided"
        body = problem(client.post(f"/api/v1/coupons/{coupon_code}/redeem", headers=keys["loyalty"],
                                   json=redeem_body(member_id)), 409, "coupon_not_redeemable")
        assert body["facts"]["reason"] == "voided"
        assert client.get(f"/api/v1/members/{member_id}/coupons?status=issued", headers=keys["read"]).json() == {"items": []}

    def test_quote_prices_a_basket_and_redeems_nothing(
        self, client: TestClient, keys: dict[str, dict[str, str]], member_id: str, coupon_code: str
    ) -> None:
        gift = {"code": "TOTE", "name": "Free tote", "shared_code": "TOTEBAG",
                "terms": {"kind": "gift", "gift_sku": "TOTE-1", "valid_days": 30, "stacking": "stackable",
                          "max_per_order": 2}}
        assert client.post("/api/v1/coupon-templates", headers=keys["admin"], json=gift).status_code == 201
        body = {"member_id": member_id, "channel": "pos", "store_id": "S1", "amount": "150.00",
                "items": [{"sku": "TOTE-1", "quantity": 1, "amount": "30.00"}],
                "coupon_codes": [coupon_code, "totebag", "NOPE"]}
        quoted = client.post("/api/v1/coupons/quote", headers=keys["loyalty"], json=body)
        assert quoted.status_code == 200, quoted.text
        result = quoted.json()
        assert [(c["applies"], c["discount"], c["reason"]) for c in result["coupons"]] == [
            (True, "20.00", None), (False, "0.00", "not_stackable"), (False, "0.00", "coupon_not_found")]
        alone = client.post("/api/v1/coupons/quote", headers=keys["loyalty"], json={**body, "coupon_codes": ["TOTEBAG"]})
        assert alone.json()["total_discount"] == "30.00" and alone.json()["coupons"][0]["gift_sku"] == "TOTE-1"
        assert client.get(f"/api/v1/coupons/{coupon_code}", headers=keys["read"]).json()["status"] == "issued"
        held = client.get(f"/api/v1/members/{member_id}/coupons", headers=keys["read"]).json()["items"]
        assert [c["code"] for c in held] == [coupon_code]  # the shared code's coupon was not kept either

    def test_openapi_documents_the_409(self, client: TestClient) -> None:
        spec = client.get("/openapi.json").json()
        responses = spec["paths"]["/api/v1/coupons/{code}/redeem"]["post"]["responses"]
        assert "coupon_not_redeemable" in responses["409"]["description"]


def live_order(order_id: str = "o1", **fields: Any) -> dict[str, Any]:
    return {"channel": "pos", "order_id": order_id, "customer_key": "c1", "store_id": "S1", "ordered_at": WHEN,
            "gross_amount": "120.00", "discount_amount": "20.00", "paid_amount": "100.00", **fields}


class TestLiveOrders:
    def test_an_order_redeems_its_coupons_and_a_full_refund_restores_them(
        self, client: TestClient, keys: dict[str, dict[str, str]], member_id: str, coupon_code: str
    ) -> None:
        posted = client.post("/api/v1/orders", headers=keys["ingest"], json=live_order(coupon_codes=[coupon_code]))
        assert posted.status_code == 201 and posted.json()["warnings"] == []
        coupon = client.get(f"/api/v1/coupons/{coupon_code}", headers=keys["read"]).json()
        assert coupon["status"] == "redeemed"
        refund = {"channel": "pos", "order_id": "o1", "refunded_at": WHEN}
        assert client.post("/api/v1/refunds", headers=keys["ingest"],
                           json={**refund, "refund_id": "r1", "amount": "40.00"}).status_code == 201
        assert client.get(f"/api/v1/coupons/{coupon_code}", headers=keys["read"]).json()["status"] == "redeemed"
        assert client.post("/api/v1/refunds", headers=keys["ingest"],
                           json={**refund, "refund_id": "r2", "amount": "60.00"}).status_code == 201
        restored = client.get(f"/api/v1/coupons/{coupon_code}", headers=keys["read"]).json()
        assert restored["status"] == "issued" and restored["restored_count"] == 1
        again = client.post(f"/api/v1/coupons/{coupon_code}/redeem", headers=keys["loyalty"],
                            json=redeem_body(member_id, order_id="o2"))
        assert again.status_code == 200

    def test_a_code_that_does_not_apply_is_a_warning_and_the_order_is_kept(
        self, client: TestClient, keys: dict[str, dict[str, str]], member_id: str, coupon_code: str
    ) -> None:
        first = client.post("/api/v1/orders", headers=keys["ingest"], json=live_order("o1", coupon_codes=[coupon_code]))
        assert first.status_code == 201
        second = client.post("/api/v1/orders", headers=keys["ingest"],
                             json=live_order("o2", coupon_codes=[coupon_code, "UNKNOWN1"]))
        assert second.status_code == 201, second.text
        warnings = second.json()["warnings"]
        assert [(w["field"], w["code"]) for w in warnings] == [("coupon_codes.0", "coupon_not_redeemable"),
                                                              ("coupon_codes.1", "coupon_not_redeemable")]
        assert warnings[0]["message"].startswith("already_redeemed:")
        assert warnings[1]["message"].startswith("coupon_not_found:")
        replay = client.post("/api/v1/orders", headers=keys["ingest"], json=live_order("o1", coupon_codes=[coupon_code]))
        assert replay.status_code == 200 and replay.json()["status"] == "duplicate"

    def test_an_order_of_an_unknown_customer_keeps_its_codes_unredeemed(
        self, client: TestClient, keys: dict[str, dict[str, str]], coupon_code: str
    ) -> None:
        posted = client.post("/api/v1/orders", headers=keys["ingest"],
                             json=live_order(customer_key="stranger", coupon_codes=[coupon_code]))
        assert posted.status_code == 201
        assert posted.json()["warnings"][0]["message"].startswith("unknown_member:")
        assert client.get(f"/api/v1/coupons/{coupon_code}", headers=keys["read"]).json()["status"] == "issued"

    def test_a_batch_reports_each_order(self, client: TestClient, keys: dict[str, dict[str, str]], member_id: str,
                                        coupon_code: str) -> None:
        batch = {"items": [live_order("o1", coupon_codes=[coupon_code]), live_order("o2", coupon_codes=[coupon_code])]}
        results = client.post("/api/v1/orders", headers=keys["ingest"], json=batch).json()["results"]
        assert [r["status"] for r in results] == ["accepted", "accepted"]
        assert results[0]["warnings"] == [] and results[1]["warnings"][0]["message"].startswith("already_redeemed")
