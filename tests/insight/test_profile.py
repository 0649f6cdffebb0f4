"""The 360° profile over HTTP, on every state store: a small brand imported and resolved, facts in the
lake and facts posted live (not exported yet), merges, traits once computed, and the problems."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from memberops.accounts.models import Workspace
from memberops.api.app import create_app
from memberops.audit.service import Actor
from memberops.identity.resolve import resolve_identities
from memberops.ingest.batch import import_file
from memberops.insight import service as insight
from memberops.insight.models import TraitChange
from memberops.lake import writer
from memberops.lake.export import export_outbox
from memberops.lake.registry import records_to_arrow, table_spec
from memberops.runtime import Context
from tests.factories import make_key

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
CUSTOMERS = "source_id,phone,email,member_card_no,full_name,first_name,last_name\n"


def import_customers(context: Context, workspace: Workspace, tmp_path: Path, name: str, rows: str,
                     channel: str = "crm") -> None:
    path = tmp_path / name
    path.write_text(CUSTOMERS + rows)
    import_file(context, workspace, kind_name="customers", path=path, channel=channel)


def resolve(context: Context, workspace: Workspace) -> dict[str, str]:
    """Run OneID; ``{"channel/source_id": member_id}``."""
    resolve_identities(context, workspace, actor=Actor.cli())
    with context.store.read() as session:
        from memberops.identity.service import links_of, list_members

        return {f"{link.channel}/{link.source_id}": member.id
                for member in list_members(session, workspace.id, limit=1000)
                for link in links_of(session, member.id)}


def write_lake(context: Context, workspace: Workspace, table: str, rows: list[dict[str, Any]]) -> None:
    common = {"workspace_id": workspace.id, "batch_id": "test", "ingested_at": T0}
    spec = table_spec(table)
    writer.append(context.settings.lake_path, spec, records_to_arrow(spec, [{**common, **r} for r in rows]), f"test-{table}")


def lake_order(order_id: str, customer: str, days: int, paid: str, channel: str = "crm") -> dict[str, Any]:
    return {"channel": channel, "order_id": order_id, "customer_key": customer, "ordered_at": T0 + timedelta(days=days),
            "status": "paid", "paid_amount": Decimal(paid), "currency": "CNY"}


@pytest.fixture
def client(context: Context) -> Iterator[TestClient]:
    with TestClient(create_app(context)) as test_client:
        yield test_client


@pytest.fixture
def keys(context: Context, workspace: Workspace) -> dict[str, dict[str, str]]:
    with context.store.transaction() as session:
        return {scope: {"Authorization": f"Bearer {make_key(session, workspace, scope, name=scope)}"}
                for scope in ("read", "ingest")}


@pytest.fixture
def brand(context: Context, workspace: Workspace, tmp_path: Path) -> dict[str, str]:
    """Ana (crm r1 + pos p1, one phone), Bo (crm r2); Ana's orders, items, a refund and events in the lake."""
    import_customers(context, workspace, tmp_path, "crm.csv",
                     "r1,138 0013 8001,ana@example.com,LS001,Ana Lima,Ana,Lima\n"
                     "r2,13900139000,bo@example.com,LS002,Bo Chen,Bo,Chen\n")
    import_customers(context, workspace, tmp_path, "pos.csv", "p1,+86 138-0013-8001,,,,,\n", channel="pos")
    members = resolve(context, workspace)
    write_lake(context, workspace, "orders", [
        lake_order("o1", "r1", 1, "100.00"), lake_order("o2", "p1", 3, "50.00", channel="pos"),
        lake_order("o3", "r2", 2, "70.00"),  # Bo's
    ])
    write_lake(context, workspace, "order_items", [
        {"channel": "crm", "order_id": "o1", "line_no": 1, "sku": "SKU-A", "category": "feeding", "quantity": 2,
         "amount": Decimal("100.00")},
    ])
    write_lake(context, workspace, "refunds", [
        {"channel": "crm", "refund_id": "rf1", "order_id": "o1", "refunded_at": T0 + timedelta(days=4),
         "amount": Decimal("30.00")},
    ])
    write_lake(context, workspace, "events", [
        {"channel": "pos", "event_id": "e1", "type": "store_visit", "customer_key": "p1",
         "occurred_at": T0 + timedelta(days=2), "properties": '{"store": "SH01"}'},
        {"channel": "crm", "event_id": "e2", "type": "page_view", "customer_key": "r2",
         "occurred_at": T0 + timedelta(days=2)},
    ])
    return {"ana": members["crm/r1"], "bo": members["crm/r2"]}


class TestProfile:
    def test_golden_record_identities_and_facts(self, client: TestClient, keys: dict[str, dict[str, str]],
                                                brand: dict[str, str]) -> None:
        response = client.get(f"/api/v1/members/{brand['ana']}", headers=keys["read"])

        assert response.status_code == 200
        body = response.json()
        assert body["id"] == brand["ana"] and body["merged_from"] is None
        assert {"is_enrolled", "enrolled_at", "created_at"} <= set(body)  # the fields MemberProfile always had
        assert body["golden"]["phone"] == "+8613800138001" and body["golden"]["full_name"] == "Ana Lima"
        assert {(i["channel"], i["source_id"]) for i in body["identities"]} == {("crm", "r1"), ("pos", "p1")}
        assert {"type": "member_card_no", "channel": "crm"} in body["identifier_types"]
        assert [o["order_id"] for o in body["recent_orders"]] == ["o2", "o1"]  # newest first; not Bo's o3
        o1 = body["recent_orders"][1]
        assert o1["refunded_amount"] == "30.00" and o1["paid_amount"] == "100.00"
        assert o1["items"] == [{"sku": "SKU-A", "category": "feeding", "quantity": 2, "amount": "100.00"}]
        assert [e["event_id"] for e in body["recent_events"]] == ["e1"]
        assert body["recent_events"][0]["properties"] == {"store": "SH01"}
        assert [r["refund_id"] for r in body["recent_refunds"]] == ["rf1"]
        assert body["traits"] is None and body["rfm"] is None and body["loyalty"] is None

    def test_timeline_is_newest_first(self, client: TestClient, keys: dict[str, dict[str, str]],
                                      brand: dict[str, str]) -> None:
        timeline = client.get(f"/api/v1/members/{brand['ana']}", headers=keys["read"]).json()["timeline"]

        assert [(t["kind"], t["at"][:10]) for t in timeline] == [
            ("refund", "2026-03-05"), ("order", "2026-03-04"), ("event", "2026-03-03"), ("order", "2026-03-02")]
        assert timeline[1]["title"].startswith("Order o2")
        assert "2 × SKU-A (feeding)" in timeline[3]["detail"]

    def test_live_facts_show_before_they_reach_the_lake_and_count_once(
        self, client: TestClient, context: Context, keys: dict[str, dict[str, str]], brand: dict[str, str]
    ) -> None:
        later = (T0 + timedelta(days=10)).isoformat()
        posted = [
            client.post("/api/v1/orders", headers=keys["ingest"], json={
                "channel": "pos", "order_id": "live-1", "customer_key": "p1", "ordered_at": later,
                "paid_amount": "20.00", "items": [{"line_no": 1, "sku": "SKU-B", "quantity": 1, "amount": "20.00"}]}),
            client.post("/api/v1/refunds", headers=keys["ingest"], json={
                "channel": "pos", "refund_id": "live-r", "order_id": "live-1", "refunded_at": later, "amount": "5.00"}),
            client.post("/api/v1/events", headers=keys["ingest"], json={
                "channel": "pos", "event_id": "live-e", "type": "coupon_claim", "customer_key": "p1",
                "occurred_at": later}),
        ]
        assert [p.status_code for p in posted] == [201, 201, 201]

        before = client.get(f"/api/v1/members/{brand['ana']}", headers=keys["read"]).json()
        export_outbox(context.store, context.settings.lake_path)
        after = client.get(f"/api/v1/members/{brand['ana']}", headers=keys["read"]).json()

        for body in (before, after):  # in the state store only, then in both: each fact once
            assert [o["order_id"] for o in body["recent_orders"]] == ["live-1", "o2", "o1"]
            assert body["recent_orders"][0]["refunded_amount"] == "5.00"
            assert [e["event_id"] for e in body["recent_events"]] == ["live-e", "e1"]
            assert [r["refund_id"] for r in body["recent_refunds"]] == ["live-r", "rf1"]
        assert before["recent_orders"][0]["source"] == "live"
        assert before["recent_events"][0]["source"] == "live" and after["recent_events"][0]["source"] == "lake"

    def test_the_loyalty_card_shows_membership_points_and_coupons(
        self, client: TestClient, context: Context, workspace: Workspace, keys: dict[str, dict[str, str]],
        brand: dict[str, str],
    ) -> None:
        with context.store.transaction() as session:
            loyalty = {"Authorization": f"Bearer {make_key(session, workspace, 'loyalty', name='pos')}"}
        enrolled = client.post("/api/v1/members", headers=loyalty, json={"phone": "+8613800138001"})
        assert enrolled.status_code in (200, 201) and enrolled.json()["member_id"] == brand["ana"]
        order = client.post("/api/v1/orders", headers=keys["ingest"], json={
            "channel": "pos", "order_id": "live-9", "customer_key": "p1", "ordered_at": datetime.now(UTC).isoformat(),
            "paid_amount": "120.00"})
        assert order.status_code == 201 and order.json()["points_earned"] == 120

        body = client.get(f"/api/v1/members/{brand['ana']}", headers=keys["read"]).json()
        assert body["loyalty"]["status"] == "active"
        assert body["loyalty"]["points_available"] + body["loyalty"]["points_pending"] == 120
        bo = client.get(f"/api/v1/members/{brand['bo']}", headers=keys["read"]).json()
        assert bo["loyalty"] is None  # not a member of the programme

    def test_absorbed_id_answers_with_the_survivor(self, client: TestClient, context: Context, workspace: Workspace,
                                                   keys: dict[str, dict[str, str]], brand: dict[str, str],
                                                   tmp_path: Path) -> None:
        # a new record carries Ana's phone and Bo's e-mail: they were one person all along
        import_customers(context, workspace, tmp_path, "web.csv", "w1,13800138001,bo@example.com,,,,\n", channel="web")
        members = resolve(context, workspace)
        survivor = members["crm/r1"]
        assert members["crm/r2"] == survivor
        absorbed = ({brand["ana"], brand["bo"]} - {survivor}).pop()

        response = client.get(f"/api/v1/members/{absorbed}", headers=keys["read"])

        assert response.status_code == 200
        body = response.json()
        assert body["id"] == survivor and body["merged_from"] == absorbed
        assert response.headers["content-location"] == f"/api/v1/members/{survivor}"
        assert {o["order_id"] for o in body["recent_orders"]} == {"o1", "o2", "o3"}  # both people's orders
        assert [c["kind"] for c in body["identity_changes"]] == ["merge"]
        assert body["identity_changes"][0]["other_member_id"] == absorbed
        assert any(t["kind"] == "identity" and absorbed in t["title"] for t in body["timeline"])
        own = client.get(f"/api/v1/members/{survivor}", headers=keys["read"])
        assert own.json()["merged_from"] is None and "content-location" not in own.headers

    def test_traits_tags_and_their_changes(self, client: TestClient, context: Context, workspace: Workspace,
                                           keys: dict[str, dict[str, str]], brand: dict[str, str]) -> None:
        values: dict[str, Any] = {"rfm_r": 5, "rfm_f": 4, "rfm_m": 3, "rfm_score": "543", "rfm_segment": "Loyal",
                                  "lifecycle_stage": "active", "aipl_stage": "purchased", "clv": 812.5,
                                  "p_alive": 0.93, "orders": 2}
        traits = pa.table({"member_id": [brand["ana"]],
                           **{name: [values.get(name)] for name in insight.SERVING_TRAITS},
                           "tags": pa.array([["high_value"]], pa.list_(pa.string()))})
        computed = T0 + timedelta(days=20)
        with context.store.transaction() as session:
            insight.save_serving_traits(session, workspace.id, traits, computed)
            session.add(TraitChange(workspace_id=workspace.id, run_id="run-1", member_id=brand["ana"],
                                    kind="rfm_segment", from_value="Promising", to_value="Loyal", changed_at=computed))

        body = client.get(f"/api/v1/members/{brand['ana']}", headers=keys["read"]).json()

        assert body["rfm"] == {"r": 5, "f": 4, "m": 3, "score": "543", "segment": "Loyal"}
        assert body["lifecycle"] == {"stage": "active", "aipl_stage": "purchased"}
        assert body["clv"]["clv"] == 812.5 and body["clv"]["p_alive"] == 0.93
        assert body["tags"] == ["high_value"] and body["traits"]["orders"] == 2
        assert body["timeline"][0] == {"at": body["timeline"][0]["at"], "kind": "trait",
                                       "title": "RFM segment: Promising → Loyal", "detail": "", "channel": ""}


class TestProblems:
    def test_unknown_member_is_404(self, client: TestClient, keys: dict[str, dict[str, str]]) -> None:
        response = client.get("/api/v1/members/no-such-member", headers=keys["read"])

        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "member_not_found"

    def test_needs_the_read_scope(self, client: TestClient, keys: dict[str, dict[str, str]]) -> None:
        response = client.get("/api/v1/members/anything", headers=keys["ingest"])

        assert response.status_code == 403 and response.json()["code"] == "missing_scope"

    def test_other_workspace_cannot_see_the_member(self, client: TestClient, context: Context,
                                                   brand: dict[str, str]) -> None:
        from memberops.accounts import service as accounts

        with context.store.transaction() as session:
            other = accounts.ensure_workspace(session, "other", name="Other brand")
            key = make_key(session, other, "read")

        response = client.get(f"/api/v1/members/{brand['ana']}", headers={"Authorization": f"Bearer {key}"})

        assert response.status_code == 404

