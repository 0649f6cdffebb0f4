"""The profile's and the search's lake queries give the same answers on every warehouse engine (DuckDB,
PySpark): members resolved live, the lake's derived tables and facts written directly."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal

import pytest

from memberops.accounts import service as accounts
from memberops.accounts.models import Workspace
from memberops.config import Settings
from memberops.db import migrate
from memberops.identity.search import search_members
from memberops.identity.service import resolve_customer
from memberops.insight.profile import member_profile
from memberops.lake import writer
from memberops.lake.registry import records_to_arrow, table_spec
from memberops.runtime import Context
from tests.insight.test_profile import T0, lake_order, write_lake


@pytest.fixture
def engine_context(lake_settings: Settings) -> Iterator[tuple[Context, Workspace]]:
    context = Context.from_settings(lake_settings)
    migrate.upgrade(context.store)
    with context.store.transaction() as session:
        workspace = accounts.ensure_workspace(session, name="Engines brand")
    yield context, workspace
    context.close()


def snapshot(context: Context, workspace: Workspace, table: str, rows: list[dict[str, object]]) -> None:
    common = {"workspace_id": workspace.id, "batch_id": "run", "ingested_at": T0}
    spec = table_spec(table)
    writer.replace_snapshot(context.settings.lake_path, spec, workspace.id,
                            records_to_arrow(spec, [{**common, **row} for row in rows]))


def test_profile_and_search_on_every_engine(engine_context: tuple[Context, Workspace]) -> None:
    context, workspace = engine_context
    with context.store.transaction() as session:
        ana = resolve_customer(session, workspace, channel="crm", source_id="r1",
                               identifiers={"phone": "13800138001"}).member.id
        resolve_customer(session, workspace, channel="pos", source_id="p1", identifiers={"phone": "13800138001"})
        bo = resolve_customer(session, workspace, channel="crm", source_id="r2", identifiers={}).member.id
    write_lake(context, workspace, "identity_records", [
        {"channel": "crm", "source_id": "r1", "member_card_no": "LS001", "email": "ana@example.com"},
        {"channel": "crm", "source_id": "r2", "member_card_no": "LS002"},
    ])
    snapshot(context, workspace, "identity_map", [
        {"channel": "crm", "source_id": "r1", "member_id": ana}, {"channel": "pos", "source_id": "p1", "member_id": ana},
        {"channel": "crm", "source_id": "r2", "member_id": bo}])
    snapshot(context, workspace, "golden_records", [
        {"member_id": ana, "full_name": "Ana Lima", "phone": "+8613800138001", "birthday": date(1990, 5, 1)},
        {"member_id": bo, "first_name": "Bo", "last_name": "Chen"}])
    write_lake(context, workspace, "orders", [lake_order("o1", "r1", 1, "100.00"), lake_order("o2", "p1", 3, "50.00", "pos"),
                                              lake_order("o3", "r2", 2, "70.00")])
    write_lake(context, workspace, "order_items", [
        {"channel": "crm", "order_id": "o1", "line_no": 1, "sku": "A", "category": "feeding", "quantity": 2,
         "amount": Decimal("100.00")}])
    write_lake(context, workspace, "refunds", [
        {"channel": "crm", "refund_id": "rf1", "order_id": "o1", "refunded_at": T0 + timedelta(days=4),
         "amount": Decimal("30.00")}])
    write_lake(context, workspace, "events", [
        {"channel": "pos", "event_id": "e1", "type": "store_visit", "customer_key": "p1",
         "occurred_at": T0 + timedelta(days=2)}])
    warehouse = context.warehouse()

    with context.store.read() as session:
        profile = member_profile(session, warehouse, workspace.id, ana)
        by_card = search_members(session, warehouse, workspace.id, "ls002")
        by_name = search_members(session, warehouse, workspace.id, "CHEN")
        by_phone = search_members(session, warehouse, workspace.id, "138 0013 8001")

    assert [(o.order_id, o.refunded_amount) for o in profile.recent_orders] == [
        ("o2", Decimal("0.00")), ("o1", Decimal("30.00"))]
    assert [(line.sku, line.quantity) for line in profile.recent_orders[1].items] == [("A", 2)]
    assert [e.event_id for e in profile.recent_events] == ["e1"]
    # the live path records an identifier value once per member (first seen on crm); the lake adds the rest
    assert {(k.type, k.channel) for k in profile.identifier_types} == {
        ("phone", "crm"), ("email", "crm"), ("member_card_no", "crm")}
    assert profile.golden is not None and profile.golden["birthday"] == date(1990, 5, 1)
    assert [(m.member_id, m.matched_on, m.full_name) for m in by_card] == [(bo, "member_card_no", "Bo Chen")]
    assert [(m.member_id, m.matched_on) for m in by_name] == [(bo, "name")]
    assert [(m.member_id, m.matched_on, m.full_name) for m in by_phone] == [(ana, "phone", "Ana Lima")]
