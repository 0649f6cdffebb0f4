"""The points backfill follows the workspace's stored insight settings: which order statuses are no
purchase (``uncounted_statuses``) is what ``insight config set`` stored, not the default."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from memberops.accounts.models import Workspace
from memberops.audit.service import Actor
from memberops.insight import config_store
from memberops.loyalty.backfill import backfill_points
from memberops.runtime import Context
from tests.insight.lake import Brand
from tests.loyalty.factories import enrol, set_programme

NOW = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)
JOINED = datetime(2025, 3, 1, tzinfo=UTC)


def _brand(workspace: Workspace, member_id: str) -> Brand:
    brand = Brand(workspace_id=workspace.id)
    brand.person(member_id, channel="pos", source_id="c1")
    for order_id, status in (("paid-1", "paid"), ("created-1", "created"), ("cancelled-1", "cancelled")):
        brand.orders.append({**brand._common(), "channel": "pos", "order_id": order_id, "customer_key": "c1",
                             "store_id": None, "ordered_at": datetime(2025, 6, 3, 3, 0, tzinfo=UTC), "status": status,
                             "gross_amount": Decimal("100.00"), "discount_amount": Decimal(0),
                             "shipping_amount": Decimal(0), "paid_amount": Decimal("100.00"), "currency": "CNY",
                             "coupon_codes": None})
    return brand


class TestUncountedStatuses:
    def test_the_default_leaves_out_created_and_cancelled(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, earn={"points_per_unit": "1", "pending_days": 0})
            member = enrol(session, workspace, "c1", now=JOINED)
        _brand(workspace, member).write(context.settings.lake_path)

        assert backfill_points(context, workspace, now=NOW).orders == 1

    def test_the_stored_settings_decide(self, context: Context, workspace: Workspace) -> None:
        with context.store.transaction() as session:
            set_programme(session, workspace, earn={"points_per_unit": "1", "pending_days": 0})
            member = enrol(session, workspace, "c1", now=JOINED)
            config_store.update(session, workspace.id, {"uncounted_statuses": ["cancelled"]}, actor=Actor.cli())
        _brand(workspace, member).write(context.settings.lake_path)

        summary = backfill_points(context, workspace, now=NOW)

        assert summary.orders == 2 and summary.points_earned == 200  # "created" counts now; "cancelled" never
